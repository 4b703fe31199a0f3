//! Device-resident decoding: the KV cache and the logits stay in the
//! execution provider's memory from step to step, and only what the search
//! reads crosses to the host.
//!
//! The decoder runs with ONNX Runtime's I/O binding, its `present.*` and
//! `logits` outputs bound to the provider's memory. Two small graphs, built
//! in memory at load with ONNX Runtime's model editor and run on the same
//! provider, do the rest:
//!
//! * **cache gather** — `Gather(axis 0)` of every cache tensor by a row
//!   list: the self-attention cache by beam parent each step (and an
//!   encoder–decoder's cross-attention cache by request), device to device;
//! * **score head** — the last position's log-sum-exp over the whole
//!   vocabulary, in f32 whatever the graph's type, subtracted from the SID
//!   token columns and end-of-SID: `rows × (SID tokens + 1)` floats are all
//!   that reach the host.
//!
//! A second graph rather than a `beam_idx` input spliced into the user's
//! decoder: every export (merged, split, optimum's or torch's) loads as it
//! is, and one graph serves both caches of an encoder–decoder. On the CPU
//! provider the same code binds to CPU memory, so it is tested everywhere.

use ort::editor::{Graph, Model, Node, ONNX_DOMAIN, Opset};
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::operator::Attribute;
use ort::session::Session;
use ort::session::builder::SessionBuilder;
use ort::value::{
    DynValue, Outlet, Shape, SymbolicDimensions, Tensor, TensorElementType, ValueType,
};

use super::float::Float;
use super::runtime::{Decoding, Device, RuntimeOptions, session_builder};
use super::scores::ScoreSlice;
use super::sidecar::Sidecar;

/// The ONNX opset of the helper graphs.
const OPSET: u32 = 17;
/// `TensorProto.DataType.FLOAT`: `Cast`'s `to` (not ort's enum discriminant).
const ONNX_FLOAT: i64 = 1;

/// The helper graphs and the memory the cache lives in.
pub(super) struct Resident {
    /// Gathers `tensors` cache tensors by one row list; `None` without a cache.
    gather: Option<Session>,
    tensors: usize,
    score: Session,
    /// SID token columns + end-of-SID: the width of a score row.
    width: usize,
    /// Logits columns the sidecar declares.
    vocab: usize,
    memory: MemoryInfo<'static>,
}

/// What the helper graphs are built for.
pub(super) struct ResidentSpec<'a> {
    /// Cache tensors gathered together, and their element type.
    pub cache: Option<(usize, Float)>,
    pub logits_type: Float,
    /// Logits `[rows, seq, vocab]` (3) or `[rows, vocab]` (2).
    pub logits_rank: usize,
    /// The logits columns of a score row, in order.
    pub columns: &'a [i64],
    /// The logits' width (the sidecar's `vocab_size`).
    pub vocab: usize,
}

fn element(f: Float) -> TensorElementType {
    match f {
        Float::F32 => TensorElementType::Float32,
        Float::F16 => TensorElementType::Float16,
        Float::BF16 => TensorElementType::Bfloat16,
    }
}

fn outlet(name: &str, ty: TensorElementType, rank: usize) -> Outlet {
    Outlet::new(
        name,
        ValueType::Tensor {
            ty,
            shape: Shape::new(vec![-1; rank]),
            dimension_symbols: SymbolicDimensions::empty(rank),
        },
    )
}

/// An int64 initializer tensor of `values`.
fn int64s(values: &[i64]) -> Result<Tensor<i64>, ort::Error> {
    let mut t = Tensor::<i64>::new(&Allocator::default(), [values.len()])?;
    t.extract_tensor_mut().1.copy_from_slice(values);
    Ok(t)
}

fn session(graph: Graph, builder: SessionBuilder) -> Result<Session, ort::Error> {
    let mut model = Model::new([Opset::new(ONNX_DOMAIN, OPSET)?])?;
    model.set_graph(graph)?;
    model.into_session(&builder)
}

/// `out.k = Gather(in.k, rows, axis 0)` for `k < tensors`.
fn gather_graph(tensors: usize, ty: Float) -> Result<Graph, ort::Error> {
    let mut g = Graph::new()?;
    let ty = element(ty);
    let mut inputs = vec![outlet("rows", TensorElementType::Int64, 1)];
    inputs.extend((0..tensors).map(|k| outlet(&format!("in.{k}"), ty, 4)));
    g.set_inputs(inputs)?;
    g.set_outputs((0..tensors).map(|k| outlet(&format!("out.{k}"), ty, 4)))?;
    for k in 0..tensors {
        g.add_node(Node::new(
            "Gather",
            ONNX_DOMAIN,
            format!("gather.{k}"),
            [format!("in.{k}"), "rows".into()],
            [format!("out.{k}")],
            [Attribute::new("axis", 0i64)?],
        )?)?;
    }
    Ok(g)
}

/// Adds node `op` whose one output, and the node itself, are named `out`.
fn op<I: AsRef<str>>(
    g: &mut Graph,
    op: &str,
    out: &str,
    inputs: impl AsRef<[I]>,
    attributes: impl IntoIterator<Item = Attribute>,
) -> Result<(), ort::Error> {
    g.add_node(Node::new(op, ONNX_DOMAIN, out, inputs, [out], attributes)?)
}

/// `scores = x[columns] − ReduceLogSumExp(x)`, `x` the last position's
/// logits in f32. A contiguous run of SID columns is sliced (ONNX Runtime's
/// CPU `Gather` on the last axis copies element by element: 8 ns a column,
/// more than the model at batch 8 × beam 20 over 7,400 columns); a listed
/// set is gathered.
fn score_graph(spec: &ResidentSpec<'_>) -> Result<Graph, ort::Error> {
    let mut g = Graph::new()?;
    let rank = spec.logits_rank;
    g.set_inputs([outlet("logits", element(spec.logits_type), rank)])?;
    g.set_outputs([outlet("scores", TensorElementType::Float32, rank)])?;
    let slice = |g: &mut Graph, name: &str, input: &str, start: i64, end: i64, axis: i64| {
        for (part, v) in [("start", start), ("end", end), ("axis", axis)] {
            g.add_initializer(format!("{name}.{part}"), int64s(&[v])?, false)?;
        }
        let inputs = [
            input.to_string(),
            format!("{name}.start"),
            format!("{name}.end"),
            format!("{name}.axis"),
        ];
        op(g, "Slice", name, inputs, [])
    };
    let mut x = "logits".to_string();
    if rank == 3 {
        slice(&mut g, "last", "logits", -1, i64::MAX, 1)?;
        x = "last".into();
    }
    if spec.logits_type != Float::F32 {
        let to = Attribute::new("to", ONNX_FLOAT)?;
        op(&mut g, "Cast", "wide", [x.as_str()], [to])?;
        x = "wide".into();
    }
    let axes = Attribute::new("axes", vec![-1i64])?;
    let keep = Attribute::new("keepdims", 1i64)?;
    op(&mut g, "ReduceLogSumExp", "lse", [x.as_str()], [axes, keep])?;
    let (sid, eos) = spec.columns.split_at(spec.columns.len().saturating_sub(1));
    let contiguous = sid.windows(2).all(|w| w[1] == w[0] + 1);
    match (sid.first(), eos.first()) {
        (Some(&first), Some(&eos)) if contiguous => {
            slice(&mut g, "sid", &x, first, first + sid.len() as i64, -1)?;
            slice(&mut g, "eos", &x, eos, eos + 1, -1)?;
            let axis = Attribute::new("axis", -1i64)?;
            op(&mut g, "Concat", "picked", ["sid", "eos"], [axis])?;
        }
        _ => {
            g.add_initializer("columns", int64s(spec.columns)?, false)?;
            let axis = Attribute::new("axis", -1i64)?;
            op(&mut g, "Gather", "picked", [x.as_str(), "columns"], [axis])?;
        }
    }
    op(&mut g, "Sub", "scores", ["picked", "lse"], [])?;
    Ok(g)
}

/// The memory a provider's outputs stay in.
pub(super) fn device_memory(device: Device) -> Result<MemoryInfo<'static>, ort::Error> {
    let (place, ordinal) = match device {
        Device::Cpu => (AllocationDevice::CPU, 0),
        Device::Cuda(n) => (AllocationDevice::CUDA, n as i32),
    };
    MemoryInfo::new(place, ordinal, AllocatorType::Device, MemoryType::Default)
}

impl Resident {
    /// The helper graphs of a model whose cache (`tensors`, element type)
    /// and logits (element type, rank) are these — `None` when `opts` asks
    /// for host decoding. A failure names the device and the way out; it
    /// never falls back silently.
    pub(super) fn for_model(
        opts: &RuntimeOptions,
        device: Device,
        cache: Option<(usize, Float)>,
        (logits_type, logits_rank): (Float, usize),
        sidecar: &Sidecar,
    ) -> Result<Option<Self>, String> {
        if opts.decoding.on(device) == Decoding::Host {
            return Ok(None);
        }
        let slice = ScoreSlice::of(sidecar);
        let spec = ResidentSpec {
            cache,
            logits_type,
            logits_rank,
            columns: &slice.columns(),
            vocab: slice.vocab(),
        };
        // One thread each: a second and third intra-op pool would spin
        // beside the decoder's on the same cores after every run.
        let helper = RuntimeOptions {
            threads: 1,
            ..opts.clone()
        };
        Resident::new(&spec, device, || session_builder(&helper, device))
            .map(Some)
            .map_err(|e| {
                format!(
                    "device-resident decoding on {device}: its helper graphs failed to build: {e} \
                     (--decoding host copies the cache to the host instead)"
                )
            })
    }

    /// Where the cache of a model decoded by `resident` on `device` lives.
    pub(super) fn memory_of(resident: Option<&Resident>, device: Device) -> String {
        match resident {
            Some(_) => format!("{device} (device-resident)"),
            None => "host (copied every step)".into(),
        }
    }

    /// Builds the helper graphs on the provider that `builder` registers
    /// (called once per graph).
    pub(super) fn new(
        spec: &ResidentSpec<'_>,
        device: Device,
        builder: impl Fn() -> Result<SessionBuilder, ort::Error>,
    ) -> Result<Self, ort::Error> {
        let gather = match spec.cache {
            Some((tensors, ty)) => Some(session(gather_graph(tensors, ty)?, builder()?)?),
            None => None,
        };
        Ok(Resident {
            gather,
            tensors: spec.cache.map_or(0, |c| c.0),
            score: session(score_graph(spec)?, builder()?)?,
            width: spec.columns.len(),
            vocab: spec.vocab,
            memory: device_memory(device)?,
        })
    }

    /// Rows `rows` (in that order) of each tensor of `cache`, left in device memory.
    pub(super) fn gather(
        &mut self,
        cache: &[DynValue],
        rows: Vec<i64>,
    ) -> Result<Vec<DynValue>, ort::Error> {
        let session = self
            .gather
            .as_mut()
            .ok_or_else(|| ort::Error::new("the model has no cache to gather"))?;
        if cache.len() != self.tensors {
            return Err(ort::Error::new(format!(
                "{} cache tensors to gather, the gather graph takes {}",
                cache.len(),
                self.tensors
            )));
        }
        let rows = Tensor::from_array(([rows.len()], rows))?.into_dyn();
        let mut inputs: Vec<(String, &DynValue)> = vec![("rows".into(), &rows)];
        inputs.extend(
            cache
                .iter()
                .enumerate()
                .map(|(k, v)| (format!("in.{k}"), v)),
        );
        let names: Vec<String> = (0..cache.len()).map(|k| format!("out.{k}")).collect();
        run_bound(session, &inputs, &names, &self.memory)
    }

    /// Runs `session` with `inputs` bound, the `kept` outputs left in device
    /// memory and returned in that order.
    pub(super) fn run(
        &self,
        session: &mut Session,
        inputs: &[(String, &DynValue)],
        kept: &[String],
    ) -> Result<Vec<DynValue>, ort::Error> {
        run_bound(session, inputs, kept, &self.memory)
    }

    /// The score rows of `logits` (`rows` of them), on the host.
    pub(super) fn scores(
        &mut self,
        logits: &DynValue,
        rows: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), ort::Error> {
        let shape = match logits.dtype() {
            ValueType::Tensor { shape, .. } => shape.clone(),
            other => {
                return Err(ort::Error::new(format!(
                    "logits are a {other:?}, not a tensor"
                )));
            }
        };
        if shape.first().copied() != Some(rows as i64)
            || shape.last().copied() != Some(self.vocab as i64)
        {
            return Err(ort::Error::new(format!(
                "logits of shape {shape:?} for {rows} rows, expected rows of vocab_size {}",
                self.vocab
            )));
        }
        let outputs = self.score.run(ort::inputs!["logits" => logits])?;
        let (shape, data) = outputs["scores"].try_extract_tensor::<f32>()?;
        if data.len() != rows * self.width {
            return Err(ort::Error::new(format!(
                "score head returned shape {shape:?} for {rows} rows of {} columns \
                 (do the logits have vocab_size columns?)",
                self.width
            )));
        }
        out.clear();
        out.extend_from_slice(data);
        Ok(())
    }
}

fn run_bound(
    session: &mut Session,
    inputs: &[(String, &DynValue)],
    kept: &[String],
    memory: &MemoryInfo,
) -> Result<Vec<DynValue>, ort::Error> {
    let mut binding = session.create_binding()?;
    for (name, value) in inputs {
        binding.bind_input(name.as_str(), *value)?;
    }
    for name in kept {
        binding.bind_output_to_device(name.as_str(), memory)?;
    }
    let mut outputs = session.run_binding(&binding)?;
    kept.iter()
        .map(|name| {
            outputs
                .remove(name)
                .ok_or_else(|| ort::Error::new(format!("the model returned no {name}")))
        })
        .collect()
}
