//! `sidx.v1.GeneratorService`: requests checked and queued for the model
//! thread of a [`Generator`], each pinned to the index version current when
//! it arrived; generator errors mapped to gRPC codes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use super::IndexState;
use super::convert::{sid_msg, stats_msg};
use super::validate;
use crate::generate::{GenerateError, Generator};
use crate::proto::v1::generator_service_server::GeneratorService;
use crate::proto::v1::{
    GenerateRequest, GenerateResponse, GeneratedItem, StatsRequest, StatsResponse,
};

/// The service name health reports under.
pub const GENERATOR_SERVICE_NAME: &str = "sidx.v1.GeneratorService";

pub struct GeneratorServiceImpl {
    state: Arc<IndexState>,
    generator: Arc<Generator>,
}

impl GeneratorServiceImpl {
    pub fn new(state: Arc<IndexState>, generator: Arc<Generator>) -> Self {
        GeneratorServiceImpl { state, generator }
    }

    async fn run(&self, msg: GenerateRequest) -> Result<GenerateResponse, Status> {
        let index = self
            .state
            .current()
            .ok_or_else(|| Status::unavailable("no index version loaded yet"))?;
        let req = validate::generate(msg, self.state.config.request_timeout())?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.generator.submit(Arc::clone(&index), req, move |r| {
            let _ = tx.send(r);
        })?;
        let r = rx.await.map_err(|_| GenerateError::Stopped)??;
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
        req: Request<GenerateRequest>,
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

    async fn stats(&self, _req: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        let t0 = Instant::now();
        let r = self
            .state
            .current()
            .map(|index| stats_msg(&index, &self.state))
            .ok_or_else(|| Status::unavailable("no index version loaded yet"));
        let code = r.as_ref().map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        self.state.metrics.observe("Stats", code, t0.elapsed());
        r.map(Response::new)
    }
}
