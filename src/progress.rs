//! Progress bars for long phases: drawn on stderr when it is a terminal,
//! silent otherwise (CI logs, pipes) and in tests.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Hands out progress bars, or hidden ones when progress is not wanted.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    visible: bool,
}

impl Progress {
    /// Never draws anything.
    pub fn hidden() -> Self {
        Self { visible: false }
    }

    /// Draws on stderr if, and only if, stderr is a terminal.
    pub fn stderr() -> Self {
        Self {
            visible: std::io::stderr().is_terminal(),
        }
    }

    /// A bar of `len` steps labelled `what`.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        if !self.visible {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(what.to_owned());
        bar
    }

    /// A one-line status message (through `tracing`, so it follows the log level).
    pub fn note(&self, msg: &str) {
        tracing::info!("{msg}");
    }
}
