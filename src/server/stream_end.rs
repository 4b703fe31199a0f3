//! How a client-streaming call's request stream ended. tonic's decoder
//! reports a client's RST_STREAM(CANCEL) on a request stream as a clean end
//! of stream, so a handler cannot tell "the client is done" from "the client
//! gave up". This layer watches the HTTP body underneath and records which
//! it was; `ApplyCatalogUpdate` applies a stream only when it ended cleanly.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tonic::codegen::Bytes;
use tower::{Layer, Service};

/// What the request body did last.
#[derive(Debug, Default)]
pub struct StreamEnd(AtomicU8);

const OPEN: u8 = 0;
const CLEAN: u8 = 1;
const BROKEN: u8 = 2;

impl StreamEnd {
    /// The client half-closed the stream (END_STREAM): every message arrived.
    pub fn ended_cleanly(&self) -> bool {
        self.0.load(Ordering::SeqCst) == CLEAN
    }
}

/// Paths whose request streams are watched.
fn watched(path: &str) -> bool {
    path.ends_with("/ApplyCatalogUpdate")
}

#[derive(Clone, Copy, Debug, Default)]
pub struct StreamEndLayer;

impl<S> Layer<S> for StreamEndLayer {
    type Service = StreamEndService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        StreamEndService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct StreamEndService<S> {
    inner: S,
}

impl<S> Service<http::Request<tonic::body::Body>> for StreamEndService<S>
where
    S: Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if !watched(req.uri().path()) {
            return self.inner.call(req);
        }
        let end = Arc::new(StreamEnd::default());
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(Arc::clone(&end));
        let body = tonic::body::Body::new(Tracked { inner: body, end });
        self.inner.call(http::Request::from_parts(parts, body))
    }
}

/// A body that records how it ended in its [`StreamEnd`].
struct Tracked {
    inner: tonic::body::Body,
    end: Arc<StreamEnd>,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                // Only a body that never failed can end cleanly.
                let _ =
                    self.end
                        .0
                        .compare_exchange(OPEN, CLEAN, Ordering::SeqCst, Ordering::SeqCst);
            }
            Poll::Ready(Some(Err(_))) => self.end.0.store(BROKEN, Ordering::SeqCst),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let ended = self.inner.is_end_stream();
        if ended {
            let _ = self
                .end
                .0
                .compare_exchange(OPEN, CLEAN, Ordering::SeqCst, Ordering::SeqCst);
        }
        ended
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
