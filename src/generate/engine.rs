//! The generator engine: the model on its own thread, fed by a bounded queue;
//! requests waiting together run as one batch (one model call per beam step
//! for all of them). Requests are validated into prompts ([`super::validate`])
//! on the caller's thread, against the index version they pin; the search
//! uses that same version from first step to last.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::GenerateError;
use super::beam::{BeamConfig, Generated, beam_search};
use super::health::{AliveGuard, ModelHealth};
use super::limits::GeneratorLimits;
use super::model::BatchModel;
use super::runtime::Device;
use super::sidecar::Sidecar;
use super::validate::{GenerationRequest, ValidRequest};
use crate::index::{Index, TokenId};

/// One returned item (or, unconstrained, an invalid SID with an empty item id).
#[derive(Clone, Debug, PartialEq)]
pub struct ResultItem {
    pub item_id: String,
    pub sid: Vec<TokenId>,
    pub score: f32,
}

/// The answer to one request.
#[derive(Clone, Debug, Default)]
pub struct GenerationResponse {
    /// Best first: the items of the top-k SIDs (a shared SID gives all its items).
    pub items: Vec<ResultItem>,
    /// Distinct SIDs the items come from.
    pub sids: usize,
    /// Returned SIDs that no item has (unconstrained only).
    pub invalid_sids: usize,
    pub index_version: u64,
    /// Requests in the batch this one ran in.
    pub batch_size: usize,
    pub steps: usize,
    pub queue_time: Duration,
    pub model_time: Duration,
    pub search_time: Duration,
}

type Reply = Box<dyn FnOnce(Result<GenerationResponse, GenerateError>) + Send>;

struct Job {
    index: Arc<Index>,
    request: ValidRequest,
    enqueued: Instant,
    reply: Reply,
}

/// A running generator.
pub struct Generator {
    queue: Option<SyncSender<Job>>,
    waiting: Arc<AtomicUsize>,
    /// The last index version found to fit the model.
    checked_version: AtomicU64,
    thread: Option<JoinHandle<()>>,
    health: Arc<ModelHealth>,
    sidecar: Sidecar,
    device: Device,
    limits: GeneratorLimits,
}

impl Generator {
    /// Checks `model` against `index`, runs one warm-up search, then starts the
    /// model thread. Fails here — at start-up — when the two don't fit.
    pub fn start(
        model: impl BatchModel + 'static,
        index: &Index,
        limits: GeneratorLimits,
    ) -> Result<Self, GenerateError> {
        Self::start_boxed(Box::new(model), index, limits)
    }

    /// [`Generator::start`] for a model chosen at run time.
    pub fn start_boxed(
        mut model: Box<dyn BatchModel>,
        index: &Index,
        limits: GeneratorLimits,
    ) -> Result<Self, GenerateError> {
        let sidecar = model.sidecar().clone();
        sidecar
            .check_index(index)
            .map_err(GenerateError::IndexMismatch)?;
        let warmup = BeamConfig {
            beam: 2,
            top_k: 1,
            constrained: true,
            max_len: 1,
        };
        let mut prompt = sidecar.prompt(std::iter::empty(), index.max_sid_len());
        if prompt.is_empty() {
            prompt.push(i64::from(sidecar.sep_id));
        }
        let warm = beam_search(index, &mut *model.batch(vec![prompt]), &[warmup]);
        warm.map_err(|e| GenerateError::Model {
            path: model.source().to_path_buf(),
            problem: format!("warm-up search failed: {e}"),
        })?;
        let device = model.device();
        let (tx, rx) = sync_channel(limits.queue.max(1));
        let waiting = Arc::new(AtomicUsize::new(0));
        let health = Arc::new(ModelHealth::default());
        let thread = {
            let waiting = Arc::clone(&waiting);
            let alive = AliveGuard::new(Arc::clone(&health));
            let max_batch = limits.max_batch.max(1);
            std::thread::Builder::new()
                .name("sidx-generator".into())
                .spawn(move || {
                    let _alive = alive;
                    run_model(model, rx, waiting, max_batch)
                })
                .map_err(|e| {
                    GenerateError::Runtime(format!("cannot start the model thread: {e}"))
                })?
        };
        Ok(Generator {
            queue: Some(tx),
            waiting,
            checked_version: AtomicU64::new(index.version()),
            thread: Some(thread),
            health,
            sidecar,
            device,
            limits,
        })
    }

    pub fn sidecar(&self) -> &Sidecar {
        &self.sidecar
    }

    /// The provider that runs the model.
    pub fn device(&self) -> Device {
        self.device
    }

    pub fn limits(&self) -> &GeneratorLimits {
        &self.limits
    }

    /// Whether the model thread is still taking requests (false once it
    /// stopped, e.g. after a panic inside the runtime).
    pub fn is_running(&self) -> bool {
        self.health.is_alive()
    }

    /// The model thread's health, with listeners told of each change.
    pub fn health(&self) -> &ModelHealth {
        &self.health
    }

    /// Requests waiting for or inside the model.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Checks `req` against `index` (pinned for the whole search) and queues
    /// it; `reply` is called on the model thread with the result. Errors
    /// about the request itself come back here, before queueing.
    pub fn submit(
        &self,
        index: Arc<Index>,
        req: GenerationRequest,
        reply: impl FnOnce(Result<GenerationResponse, GenerateError>) + Send + 'static,
    ) -> Result<(), GenerateError> {
        let request = self.validate(&index, req)?;
        let queue = self.queue.as_ref().ok_or(GenerateError::Stopped)?;
        let job = Job {
            index,
            request,
            enqueued: Instant::now(),
            reply: Box::new(reply),
        };
        self.waiting.fetch_add(1, Ordering::Relaxed);
        queue.try_send(job).map_err(|e| {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            match e {
                TrySendError::Full(_) => GenerateError::Overloaded(self.limits.queue),
                TrySendError::Disconnected(_) => GenerateError::Stopped,
            }
        })
    }

    /// Runs one request and waits for it.
    pub fn generate(
        &self,
        index: Arc<Index>,
        req: GenerationRequest,
    ) -> Result<GenerationResponse, GenerateError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.submit(index, req, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv().map_err(|_| GenerateError::Stopped)?
    }

    fn validate(
        &self,
        index: &Index,
        req: GenerationRequest,
    ) -> Result<ValidRequest, GenerateError> {
        if self.checked_version.load(Ordering::Relaxed) != index.version() {
            self.sidecar
                .check_index(index)
                .map_err(GenerateError::IndexMismatch)?;
            self.checked_version
                .store(index.version(), Ordering::Relaxed);
        }
        Ok(ValidRequest::new(&self.limits, &self.sidecar, index, &req)?)
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        // Closing the queue ends the model thread once queued requests are answered.
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The model thread: waits for a request, adds whatever else is queued (up
/// to `max_batch`), and searches each group that shares an index version.
fn run_model(
    mut model: Box<dyn BatchModel>,
    rx: Receiver<Job>,
    waiting: Arc<AtomicUsize>,
    max_batch: usize,
) {
    while let Ok(first) = rx.recv() {
        // How the health tests kill the model thread as a runtime crash would.
        if crate::failpoint::hit("model-thread-panic") {
            panic!("failpoint model-thread-panic");
        }
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let (expired, live): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|j| j.request.deadline.is_some_and(|d| d <= now));
        for j in expired {
            waiting.fetch_sub(1, Ordering::Relaxed);
            (j.reply)(Err(GenerateError::DeadlineExceeded(now - j.enqueued)));
        }
        let mut groups: Vec<Vec<Job>> = Vec::new();
        for j in live {
            match groups
                .iter_mut()
                .find(|g| Arc::ptr_eq(&g[0].index, &j.index))
            {
                Some(g) => g.push(j),
                None => groups.push(vec![j]),
            }
        }
        for group in groups {
            let n = group.len();
            run_group(model.as_mut(), group, now);
            waiting.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

fn run_group(model: &mut dyn BatchModel, mut group: Vec<Job>, started: Instant) {
    let index = Arc::clone(&group[0].index);
    let configs: Vec<BeamConfig> = group.iter().map(|j| j.request.config).collect();
    let prompts: Vec<Vec<i64>> = group
        .iter_mut()
        .map(|j| std::mem::take(&mut j.request.prompt))
        .collect();
    let searched = beam_search(&index, &mut *model.batch(prompts), &configs);
    match searched {
        Ok(search) => {
            for (job, result) in group.into_iter().zip(search.results) {
                let response = GenerationResponse {
                    items: result_items(&index, &result.sids),
                    sids: result.sids.len(),
                    invalid_sids: result.invalid,
                    index_version: index.version(),
                    batch_size: configs.len(),
                    steps: search.steps,
                    queue_time: started - job.enqueued,
                    model_time: search.model_time,
                    search_time: search.search_time,
                };
                (job.reply)(Ok(response));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "generation failed");
            for job in group {
                (job.reply)(Err(GenerateError::Inference(e.to_string())));
            }
        }
    }
}

/// The items of each SID, best SID first; an invalid SID has an empty item id.
fn result_items(index: &Index, sids: &[Generated]) -> Vec<ResultItem> {
    let mut out = Vec::new();
    for g in sids {
        match g.node {
            Some(node) => out.extend(index.node_items(node).map(|id| ResultItem {
                item_id: id.to_string(),
                sid: g.sid.clone(),
                score: g.score,
            })),
            None => out.push(ResultItem {
                item_id: String::new(),
                sid: g.sid.clone(),
                score: g.score,
            }),
        }
    }
    out
}
