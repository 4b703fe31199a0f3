//! What the benches share: Python peers, process memory, scratch folders.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

pub fn scratch_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sidx-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Runs a Python peer script and returns the JSON objects it printed, one per line.
pub fn python_peer<T: serde::de::DeserializeOwned>(
    python: &Path,
    script: &Path,
    args: &[String],
) -> Result<Vec<T>> {
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            serde_json::from_str(l).with_context(|| format!("{} printed {l:?}", script.display()))
        })
        .collect()
}

/// A field of `/proc/<pid>/status` in KiB (`pid` may be `self`), e.g. `VmRSS`.
pub fn proc_status_kib(pid: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
