//! A process-wide concurrency limit with load shedding: a request that finds
//! every permit taken is answered at once with RESOURCE_EXHAUSTED instead of
//! waiting in an unbounded queue. (tonic's own limit is per connection.)
//! Health checks, reflection and long-lived streams are not counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::Semaphore;
use tower::{Layer, Service};

use super::metrics::Metrics;

/// Paths that bypass the limit: probes must answer under load, and streams
/// would hold a permit for their whole life.
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.")
        || path.starts_with("/grpc.reflection.")
        || path.ends_with("/WatchVersions")
        || path.ends_with("/FetchVersion")
}

/// Sheds requests beyond `permits` concurrent ones.
#[derive(Clone)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl ShedLayer {
    pub fn new(max_concurrent: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent)),
            metrics,
        }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;
    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            permits: self.permits.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for Shed<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let t0 = Instant::now();
        // The clone is the one made ready by poll_ready's contract: swap it in.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if exempt(req.uri().path()) {
            return Box::pin(inner.call(req));
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Box::pin(async move {
                let response = inner.call(req).await;
                drop(permit);
                response
            }),
            Err(_) => {
                let method = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
                self.metrics
                    .observe(&method, tonic::Code::ResourceExhausted, t0.elapsed());
                let status = tonic::Status::resource_exhausted(
                    "server is at its concurrency limit; retry with backoff",
                );
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
