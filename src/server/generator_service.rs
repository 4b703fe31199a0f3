//! `sidx.v1.GeneratorService`: requests checked and queued for the model
//! thread of a [`Generator`], each pinned to the index version current when
//! it arrived; generator errors mapped to gRPC codes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use super::IndexState;
use super::index_service::sid_msg;
use crate::generate::{GenerateError, GenerateRequest, Generator, History};
use crate::proto::v1::generator_service_server::GeneratorService;
use crate::proto::v1::{GenerateRequest as GenerateMsg, GenerateResponse, GeneratedItem};

/// The service name health reports under.
pub const GENERATOR_SERVICE_NAME: &str = "sidx.v1.GeneratorService";

/// The gRPC code of a generator error.
pub fn generate_status(e: GenerateError) -> Status {
    let msg = e.to_string();
    match e {
        GenerateError::InvalidArgument { .. } => Status::invalid_argument(msg),
        GenerateError::IndexMismatch(_) => Status::failed_precondition(msg),
        GenerateError::Overloaded(_) => Status::resource_exhausted(msg),
        GenerateError::DeadlineExceeded(_) => Status::deadline_exceeded(msg),
        GenerateError::Stopped => Status::unavailable(msg),
        GenerateError::Runtime(_)
        | GenerateError::Model { .. }
        | GenerateError::Sidecar { .. }
        | GenerateError::Inference(_) => Status::internal(msg),
    }
}

pub struct GeneratorServiceImpl {
    state: Arc<IndexState>,
    generator: Arc<Generator>,
}

impl GeneratorServiceImpl {
    pub fn new(state: Arc<IndexState>, generator: Arc<Generator>) -> Self {
        GeneratorServiceImpl { state, generator }
    }

    async fn run(&self, msg: GenerateMsg) -> Result<GenerateResponse, Status> {
        let index = self
            .state
            .current()
            .ok_or_else(|| Status::unavailable("no index version loaded yet"))?;
        let history = match (
            msg.history_item_ids.is_empty(),
            msg.history_token_ids.is_empty(),
        ) {
            (false, true) => History::Items(msg.history_item_ids),
            (true, false) => History::Tokens(msg.history_token_ids),
            (true, true) => {
                return Err(Status::invalid_argument(
                    "history_item_ids: empty (give history_item_ids or history_token_ids)",
                ));
            }
            (false, false) => {
                return Err(Status::invalid_argument(
                    "history_token_ids: give history_item_ids or history_token_ids, not both",
                ));
            }
        };
        let wait = match msg.deadline_ms {
            0 => self.state.config.request_timeout(),
            ms => Duration::from_millis(u64::from(ms)),
        };
        let req = GenerateRequest {
            history,
            beam: msg.beam_width.map(|b| b as usize),
            top_k: msg.top_k.map(|k| k as usize),
            constrained: msg.constrained.unwrap_or(true),
            deadline: Some(Instant::now() + wait),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.generator
            .submit(Arc::clone(&index), req, move |r| {
                let _ = tx.send(r);
            })
            .map_err(generate_status)?;
        let r = rx
            .await
            .map_err(|_| generate_status(GenerateError::Stopped))?
            .map_err(generate_status)?;
        let m = &self.state.metrics;
        m.generated_sids.fetch_add(r.sids as u64, Ordering::Relaxed);
        m.generated_invalid_sids
            .fetch_add(r.invalid_sids as u64, Ordering::Relaxed);
        // Batch-wide figures are shared by the batch's requests: count them once per request's share.
        let share = |d: Duration| (d.as_nanos() / r.batch_size.max(1) as u128) as u64;
        m.generator_steps
            .fetch_add(r.steps as u64, Ordering::Relaxed);
        m.generator_queue_ns
            .fetch_add(r.queue_time.as_nanos() as u64, Ordering::Relaxed);
        m.generator_model_ns
            .fetch_add(share(r.model_time), Ordering::Relaxed);
        m.generator_search_ns
            .fetch_add(share(r.search_time), Ordering::Relaxed);
        let items = r
            .items
            .into_iter()
            .map(|it| GeneratedItem {
                sid: Some(sid_msg(&index, &it.sid)),
                item_id: it.item_id,
                score: it.score,
            })
            .collect();
        Ok(GenerateResponse {
            items,
            invalid_sids: r.invalid_sids as u32,
            index_version: r.index_version,
            batch_size: r.batch_size as u32,
            steps: r.steps as u32,
        })
    }
}

#[tonic::async_trait]
impl GeneratorService for GeneratorServiceImpl {
    async fn generate(
        &self,
        req: Request<GenerateMsg>,
    ) -> Result<Response<GenerateResponse>, Status> {
        let t0 = Instant::now();
        let r = self.run(req.into_inner()).await;
        let code = r.as_ref().map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        self.state.metrics.observe("Generate", code, t0.elapsed());
        if let Err(s) = &r {
            tracing::debug!(code = ?s.code(), message = s.message(), "Generate failed");
        }
        r.map(Response::new)
    }
}
