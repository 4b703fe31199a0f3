//! The ONNX Runtime library (loaded at run time, `ort`'s `load-dynamic`) and
//! the execution providers. Everything here fails with an error naming the
//! library, the device or the model — never a panic at first request.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::ep;
use ort::session::Session;
use ort::session::builder::SessionBuilder;

use super::GenerateError;

/// The library `scripts/fetch-onnxruntime.sh` extracts.
pub const LIBRARY_NAME: &str = "libonnxruntime.so.1.31.1";

/// Where a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// The CUDA execution provider on this GPU ordinal.
    Cuda(u32),
}

impl std::str::FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("unknown device {s:?} (expected cpu, cuda or cuda:N)")),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Where the decoder's KV cache and logits live between steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Decoding {
    /// Resident on CUDA; host on the CPU provider, whose "device memory" is
    /// host memory already and whose own log-sum-exp kernel is slower than
    /// sidx's (BENCHMARKS.md, issue 14).
    #[default]
    Auto,
    /// In the execution provider's memory: outputs bound there, the cache
    /// gathered by beam parent there, only the SID columns' log-probabilities
    /// copied to the host (the `resident` module).
    Resident,
    /// Copied to the host after every step and gathered there; the
    /// log-softmax of the SID columns computed on the host.
    Host,
}

impl Decoding {
    /// The decoding `Auto` stands for on `device`.
    pub fn on(self, device: Device) -> Decoding {
        match (self, device) {
            (Decoding::Auto, Device::Cuda(_)) => Decoding::Resident,
            (Decoding::Auto, Device::Cpu) => Decoding::Host,
            (chosen, _) => chosen,
        }
    }
}

impl std::str::FromStr for Decoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Decoding::Auto),
            "resident" => Ok(Decoding::Resident),
            "host" => Ok(Decoding::Host),
            _ => Err(format!(
                "unknown decoding {s:?} (expected auto, resident or host)"
            )),
        }
    }
}

impl std::fmt::Display for Decoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decoding::Auto => "auto",
            Decoding::Resident => "resident",
            Decoding::Host => "host",
        })
    }
}

/// How sessions are created.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// The ONNX Runtime library; `None` = `ORT_DYLIB_PATH` when set, else
    /// `lib/` next to the executable, else `.ort/lib` in the working directory.
    pub library: Option<PathBuf>,
    pub device: Device,
    /// With CUDA: run on CPU when the CUDA provider can't be registered,
    /// instead of failing.
    pub allow_cpu_fallback: bool,
    /// Intra-op threads (0 = ONNX Runtime's default).
    pub threads: usize,
    /// Where the cache and logits stay between steps.
    pub decoding: Decoding,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            library: None,
            device: Device::Cpu,
            allow_cpu_fallback: false,
            threads: 0,
            decoding: Decoding::Auto,
        }
    }
}

/// The library path: the explicit one, else `ORT_DYLIB_PATH` when set (either
/// must exist), else the first default location that does.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, GenerateError> {
    let chosen = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from));
    let candidates = match chosen {
        Some(p) => vec![p],
        None => default_candidates(),
    };
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(GenerateError::Runtime(format!(
        "ONNX Runtime library not found (tried {}); run scripts/fetch-onnxruntime.sh or set ORT_DYLIB_PATH",
        tried.join(", ")
    )))
}

/// `lib/` beside the executable (a container image), then `.ort/lib` (a checkout).
fn default_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.push(dir.join("lib").join(LIBRARY_NAME));
        out.push(dir.join("..").join("lib").join(LIBRARY_NAME));
    }
    out.push(PathBuf::from(".ort/lib").join(LIBRARY_NAME));
    out
}

/// The process's one ONNX Runtime environment, loading the library on first use.
pub fn environment(library: Option<&Path>) -> Result<&'static Environment, GenerateError> {
    static ENV: OnceLock<(PathBuf, Environment)> = OnceLock::new();
    static INIT: Mutex<()> = Mutex::new(());
    if let Some((_, env)) = ENV.get() {
        return Ok(env);
    }
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, env)) = ENV.get() {
        return Ok(env);
    }
    let path = find_library(library)?;
    let env = ort::init_from(&path)
        .map_err(|e| GenerateError::Runtime(format!("{}: {e}", path.display())))?
        .with_name("sidx")
        .build()
        .map_err(|e| GenerateError::Runtime(format!("{}: {e}", path.display())))?;
    tracing::info!(library = %path.display(), "ONNX Runtime loaded");
    Ok(&ENV.get_or_init(|| (path, env)).1)
}

/// A session builder for `device`: its provider registered (failing, not
/// falling back, when it can't be) and the configured threads.
pub(super) fn session_builder(
    opts: &RuntimeOptions,
    device: Device,
) -> Result<SessionBuilder, ort::Error> {
    let env = environment(opts.library.as_deref()).map_err(|e| ort::Error::new(e.to_string()))?;
    let mut b = Session::builder(env)?;
    if opts.threads > 0 {
        b = b.with_intra_threads(opts.threads)?;
    }
    if let Device::Cuda(ordinal) = device {
        let cuda = ep::CUDA::default()
            .with_device_id(ordinal as i32)
            .build()
            .error_on_failure();
        // `error_on_failure`: no silent fallback when the provider can't be
        // registered. (Shape arithmetic nodes still run on CPU by ONNX
        // Runtime's own placement, so CPU fallback of nodes stays allowed.)
        b = b.with_execution_providers([cuda])?;
    }
    Ok(b)
}

/// Opens `model` on the configured device; returns the session and the
/// provider that really runs it.
pub fn open_session(
    model: &Path,
    opts: &RuntimeOptions,
) -> Result<(Session, Device), GenerateError> {
    environment(opts.library.as_deref())?;
    let fail = |e: ort::Error| GenerateError::Model {
        path: model.to_path_buf(),
        problem: e.to_string(),
    };
    if !model.is_file() {
        return Err(GenerateError::Model {
            path: model.to_path_buf(),
            problem: "no such file".into(),
        });
    }
    let open = |device| session_builder(opts, device).and_then(|mut b| b.commit_from_file(model));
    match opts.device {
        Device::Cpu => Ok((open(Device::Cpu).map_err(fail)?, Device::Cpu)),
        Device::Cuda(ordinal) => match open(opts.device) {
            Ok(session) => Ok((session, opts.device)),
            Err(e) if opts.allow_cpu_fallback => {
                tracing::warn!(error = %e, "CUDA execution provider unavailable; running on CPU (--allow-cpu-fallback)");
                Ok((open(Device::Cpu).map_err(fail)?, Device::Cpu))
            }
            Err(e) => Err(GenerateError::Runtime(format!(
                "CUDA execution provider on cuda:{ordinal} unavailable for {}: {e} \
                 (the provider libraries must sit next to the ONNX Runtime library; \
                 pass --allow-cpu-fallback to run on CPU instead)",
                model.display()
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_decoding_is_resident_on_cuda_and_host_on_cpu() {
        assert_eq!(Decoding::Auto.on(Device::Cuda(1)), Decoding::Resident);
        assert_eq!(Decoding::Auto.on(Device::Cpu), Decoding::Host);
        for d in [Decoding::Resident, Decoding::Host] {
            assert_eq!(d.on(Device::Cpu), d);
            assert_eq!(d.to_string().parse::<Decoding>(), Ok(d));
        }
        assert!(
            "gpu"
                .parse::<Decoding>()
                .unwrap_err()
                .contains("auto, resident or host")
        );
    }
}
