//! `sidx.v1.IndexService`: the index module behind tonic. Queries read the
//! served version in place; admin RPCs publish a new version on a blocking
//! thread, then swap it in — requests in flight keep the `Arc` they started
//! with. A caller that goes away before an admin job's commit point (a
//! cancelled call, a deadline, a dropped connection, a drain) publishes nothing.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::{Stream, StreamExt, wrappers::WatchStream};
use tonic::{Request, Response, Status, Streaming};

use super::convert::{sid_msg, stats_msg, token_msg, version_info};
use super::state::IndexState;
use super::stream_end::StreamEnd;
use super::validate::{self, AnswerForm, UpdateRequest};
use crate::index::{
    CancelToken, Index, IndexError, IndexStore, Manifest, NextTokens as NextTokensAnswer,
    build_from_sid_file,
};
use crate::proto::v1::index_service_server::IndexService;
use crate::proto::v1::*;

/// The gRPC name of the service, for health reporting.
pub const SERVICE_NAME: &str = "sidx.v1.IndexService";

/// Bytes of one FetchVersion chunk; a stream holds at most two.
const CHUNK: usize = 1 << 20;

pub struct IndexServiceImpl {
    state: Arc<IndexState>,
}

/// Which credential an RPC needs.
#[derive(Clone, Copy)]
enum Access {
    Admin,
    Replication,
}

/// Cancels its token when dropped: a handler future dropped by tonic (the
/// client reset the call, a deadline passed, the server is draining) stops
/// the admin job it started before the job's commit point.
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl IndexServiceImpl {
    pub fn new(state: Arc<IndexState>) -> Self {
        Self { state }
    }

    fn index(&self) -> Result<Arc<Index>, Status> {
        self.state
            .current()
            .ok_or_else(|| match self.state.refused() {
                Some(r) => Status::unavailable(format!(
                    "no index version is served: version {} was refused ({})",
                    r.version, r.reason
                )),
                None => Status::unavailable("no index version is loaded yet"),
            })
    }

    fn authorize<T>(&self, req: &Request<T>, access: Access) -> Result<(), Status> {
        let config = &self.state.config;
        let accepted: Vec<&str> = match access {
            Access::Admin => match &config.admin_token {
                Some(t) => vec![t.as_str()],
                None => {
                    return Err(Status::permission_denied(
                        "admin RPCs are disabled: the server has no admin token configured",
                    ));
                }
            },
            Access::Replication => match &config.replication_token {
                // The admin token opens replication too.
                Some(t) => [Some(t), config.admin_token.as_ref()]
                    .into_iter()
                    .flatten()
                    .map(String::as_str)
                    .collect(),
                None => return Ok(()),
            },
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(g)
                if accepted
                    .iter()
                    .any(|t| constant_time_eq(g.as_bytes(), t.as_bytes())) =>
            {
                Ok(())
            }
            Some(_) => Err(Status::unauthenticated("authorization: wrong token")),
            None => Err(Status::unauthenticated(
                "authorization: this RPC needs `authorization: Bearer <token>`",
            )),
        }
    }

    /// Runs a handler, recording its outcome in the metrics.
    async fn observed<T>(
        &self,
        method: &'static str,
        f: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let t0 = Instant::now();
        let r = f.await;
        let code = r.as_ref().map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        self.state.metrics.observe(method, code, t0.elapsed());
        if let Err(s) = &r {
            tracing::debug!(method, code = ?s.code(), message = s.message(), "request failed");
        }
        r.map(Response::new)
    }

    /// Runs an admin job on a blocking thread (one at a time), then serves
    /// what it published. If this future is dropped first, the job's store
    /// is cancelled and publishes nothing.
    async fn admin_job<T: Send + 'static>(
        &self,
        job: impl FnOnce(IndexStore) -> Result<T, IndexError> + Send + 'static,
    ) -> Result<(T, Arc<Index>), Status> {
        let _admin = self.state.admin.lock().await;
        let cancel = self.state.draining.child();
        let _guard = CancelOnDrop(cancel.clone());
        let store = self
            .state
            .store
            .clone()
            .with_keep(self.state.config.keep_versions)
            .with_cancel(cancel);
        let out = tokio::task::spawn_blocking(move || job(store))
            .await
            .map_err(|e| Status::internal(format!("admin task failed: {e}")))??;
        self.state.reload().await?;
        Ok((out, self.index()?))
    }

    /// A slot for one more replication stream, or RESOURCE_EXHAUSTED.
    fn open_stream(&self, fetch: bool) -> Result<OpenStream, Status> {
        let config = &self.state.config;
        let (permits, what, max) = if fetch {
            (
                &self.state.fetch_permits,
                "FetchVersion",
                config.max_fetch_streams,
            )
        } else {
            (
                &self.state.watch_permits,
                "WatchVersions",
                config.max_watch_streams,
            )
        };
        let permit = Arc::clone(permits).try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{what}: {max} streams are open, the server's limit; retry with backoff"
            ))
        })?;
        Ok(OpenStream::new(&self.state, fetch, permit))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Counts an open stream in a gauge, and holds its slot, until dropped (with the stream).
struct OpenStream {
    state: Arc<IndexState>,
    fetch: bool,
    _permit: OwnedSemaphorePermit,
}

impl OpenStream {
    fn new(state: &Arc<IndexState>, fetch: bool, permit: OwnedSemaphorePermit) -> Self {
        let open = Self {
            state: Arc::clone(state),
            fetch,
            _permit: permit,
        };
        open.gauge().fetch_add(1, Ordering::Relaxed);
        open
    }

    fn gauge(&self) -> &std::sync::atomic::AtomicU64 {
        let m = &self.state.metrics;
        if self.fetch {
            &m.open_fetches
        } else {
            &m.open_watches
        }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.gauge().fetch_sub(1, Ordering::Relaxed);
    }
}

/// A batch's answers in the packed form (see `PackedNextTokens` in the proto).
fn packed_answers<'a>(
    answers: impl ExactSizeIterator<Item = NextTokensAnswer<'a>>,
) -> PackedNextTokens {
    let bitmap = vec![0u8; answers.len().div_ceil(8)];
    let mut p = PackedNextTokens {
        allowed_ids: Vec::new(),
        counts: Vec::with_capacity(answers.len()),
        complete: bitmap.clone(),
        valid: bitmap,
    };
    for (i, next) in answers.enumerate() {
        p.allowed_ids.reserve(2 * next.allowed.len());
        for &t in next.allowed {
            p.allowed_ids.extend_from_slice(&t.to_le_bytes());
        }
        p.counts.push(next.allowed.len() as u32);
        p.complete[i / 8] |= u8::from(next.complete) << (i % 8);
        p.valid[i / 8] |= u8::from(next.node.is_some()) << (i % 8);
    }
    p
}

#[tonic::async_trait]
impl IndexService for IndexServiceImpl {
    async fn next_tokens(
        &self,
        req: Request<NextTokensRequest>,
    ) -> Result<Response<NextTokensResponse>, Status> {
        self.observed("NextTokens", async {
            let req = req.into_inner();
            let index = self.index()?;
            let valid = validate::next_tokens(&req, &index, self.state.config.max_batch)?;
            let answers = valid.prefixes.iter().map(|p| index.next_tokens(p));
            let (results, packed) = match valid.answers {
                AnswerForm::Packed => (Vec::new(), Some(packed_answers(answers))),
                form => {
                    let results = answers
                        .map(|next| {
                            let (allowed, allowed_ids) = if form == AnswerForm::Ids {
                                (Vec::new(), next.allowed.iter().map(|&t| t as u32).collect())
                            } else {
                                let tokens = next.allowed.iter().map(|&t| token_msg(&index, t));
                                (tokens.collect(), Vec::new())
                            };
                            NextTokens {
                                allowed,
                                complete: next.complete,
                                valid: next.node.is_some(),
                                allowed_ids,
                            }
                        })
                        .collect();
                    (results, None)
                }
            };
            Ok(NextTokensResponse {
                results,
                version: index.version(),
                packed,
            })
        })
        .await
    }

    async fn lookup(
        &self,
        req: Request<LookupRequest>,
    ) -> Result<Response<LookupResponse>, Status> {
        self.observed("Lookup", async {
            let index = self.index()?;
            let valid = validate::lookup(req.into_inner(), &index, self.state.config.max_batch)?;
            let by_sid = valid
                .sids
                .iter()
                .map(|ids| SidItems {
                    item_ids: index.items(ids).map(std::borrow::Cow::into_owned).collect(),
                    sid: Some(sid_msg(&index, ids)),
                })
                .collect();
            let mut ids = Vec::new();
            let by_item = valid
                .item_ids
                .into_iter()
                .map(|item_id| ItemSid {
                    sid: index
                        .sid_into(&item_id, &mut ids)
                        .then(|| sid_msg(&index, &ids)),
                    item_id,
                })
                .collect();
            Ok(LookupResponse {
                by_sid,
                by_item,
                version: index.version(),
            })
        })
        .await
    }

    async fn stats(&self, _req: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        self.observed("Stats", async {
            let index = self.index()?;
            Ok(stats_msg(&index, &self.state))
        })
        .await
    }

    async fn list_versions(
        &self,
        _req: Request<ListVersionsRequest>,
    ) -> Result<Response<ListVersionsResponse>, Status> {
        self.observed("ListVersions", async {
            let store = &self.state.store;
            let current = store.current()?;
            let mut versions = Vec::new();
            for v in store.versions()? {
                if let Ok(m) = Manifest::read(&store.version_dir(v)) {
                    versions.push(version_info(&m, Some(v) == current));
                }
            }
            Ok(ListVersionsResponse { versions })
        })
        .await
    }

    type WatchVersionsStream = BoxStream<VersionInfo>;

    async fn watch_versions(
        &self,
        req: Request<WatchVersionsRequest>,
    ) -> Result<Response<Self::WatchVersionsStream>, Status> {
        self.observed("WatchVersions", async {
            self.authorize(&req, Access::Replication)?;
            let open = self.open_stream(false)?;
            let state = self.state.clone();
            let stream = WatchStream::new(self.state.subscribe())
                .filter(|&v| v != 0)
                .map(move |_| {
                    let _open = &open;
                    let index = state
                        .current()
                        .ok_or_else(|| Status::unavailable("no index loaded"))?;
                    Ok(version_info(index.manifest(), true))
                });
            Ok(Box::pin(stream) as Self::WatchVersionsStream)
        })
        .await
    }

    type FetchVersionStream = BoxStream<FileChunk>;

    async fn fetch_version(
        &self,
        req: Request<FetchVersionRequest>,
    ) -> Result<Response<Self::FetchVersionStream>, Status> {
        self.observed("FetchVersion", async {
            self.authorize(&req, Access::Replication)?;
            let open = self.open_stream(true)?;
            let version = match req.into_inner().version {
                0 => self.index()?.version(),
                v => v,
            };
            let store = &self.state.store;
            if !store.versions()?.contains(&version) {
                return Err(IndexError::UnknownVersion(version).into());
            }
            let dir = store.version_dir(version);
            // A kept version whose manifest fails its checks is data loss.
            let manifest = Manifest::read(&dir)?;
            let mut names: Vec<String> = manifest.files.iter().map(|f| f.name.clone()).collect();
            names.push("manifest.json".into());
            // Open every file first: a retention pass removing the version
            // mid-stream cannot take the open files away.
            let mut files = Vec::with_capacity(names.len());
            for name in names {
                let path = dir.join(&name);
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| IndexError::io(&path, e))?;
                let size = file
                    .metadata()
                    .await
                    .map_err(|e| IndexError::io(&path, e))?
                    .len();
                files.push((name, file, size));
            }
            let stall = Duration::from_secs(self.state.config.fetch_stall_timeout_s);
            // One chunk in the channel and one being read: memory per stream is bounded.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                let _open = open;
                let count = files.len();
                for (i, (name, mut file, size)) in files.into_iter().enumerate() {
                    let mut offset = 0u64;
                    loop {
                        let want = (size - offset).min(CHUNK as u64) as usize;
                        let mut data = vec![0u8; want];
                        if let Err(e) = file.read_exact(&mut data).await {
                            let _ = tx.send(Err(Status::internal(format!("{name}: {e}")))).await;
                            return;
                        }
                        let last_piece = offset + want as u64 == size;
                        let chunk = FileChunk {
                            version,
                            name: name.clone(),
                            offset,
                            data,
                            file_size: size,
                            last: i + 1 == count && last_piece,
                        };
                        match tokio::time::timeout(stall, tx.send(Ok(chunk))).await {
                            Ok(Ok(())) => {}
                            // The reader went away, or stopped reading.
                            Ok(Err(_)) | Err(_) => return,
                        }
                        offset += want as u64;
                        if last_piece {
                            break;
                        }
                    }
                }
            });
            Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
                as Self::FetchVersionStream)
        })
        .await
    }

    async fn apply_catalog_update(
        &self,
        req: Request<Streaming<CatalogChange>>,
    ) -> Result<Response<CatalogUpdateResponse>, Status> {
        self.observed("ApplyCatalogUpdate", async {
            self.authorize(&req, Access::Admin)?;
            let end = req.extensions().get::<Arc<StreamEnd>>().cloned();
            let index = self.index()?;
            let mut stream = req.into_inner();
            let mut update = UpdateRequest::new(&index, self.state.config.max_update_changes);
            while let Some(change) = stream.message().await? {
                update.add(&index, change)?;
            }
            // tonic reports a client's reset as a clean end: only a real
            // half-close (END_STREAM) means every change arrived.
            if !end.is_some_and(|e| e.ended_cleanly()) {
                return Err(Status::cancelled(
                    "the update stream was reset before it ended: nothing was applied",
                ));
            }
            if self.state.draining.is_cancelled() {
                return Err(Status::unavailable(
                    "the server is draining: nothing was applied; send the update again",
                ));
            }
            let update = update.finish()?;
            let (s, _) = self.admin_job(move |store| update.apply(&store)).await?;
            Ok(CatalogUpdateResponse {
                version: s.build.version,
                previous_version: s.previous_version,
                added: s.added as u64,
                replaced: s.replaced as u64,
                kept: s.kept as u64,
                deleted: s.deleted as u64,
                disambiguated: s.disambiguated as u64,
                sids: s.build.sids,
                items: s.build.items,
                seconds: s.build.seconds,
            })
        })
        .await
    }

    async fn rebuild(&self, req: Request<RebuildRequest>) -> Result<Response<VersionInfo>, Status> {
        self.observed("Rebuild", async {
            self.authorize(&req, Access::Admin)?;
            let req = req.into_inner();
            if req.sids_path.is_empty() {
                return Err(Status::invalid_argument("sids_path: required"));
            }
            let (_, index) = self
                .admin_job(move |store| {
                    let codebooks = (!req.codebooks_path.is_empty())
                        .then(|| std::path::PathBuf::from(&req.codebooks_path));
                    let sids = std::path::Path::new(&req.sids_path);
                    build_from_sid_file(&store, sids, &req.sids_path, codebooks.as_deref())
                })
                .await?;
            Ok(version_info(index.manifest(), true))
        })
        .await
    }

    async fn rollback(
        &self,
        req: Request<RollbackRequest>,
    ) -> Result<Response<VersionInfo>, Status> {
        self.observed("Rollback", async {
            self.authorize(&req, Access::Admin)?;
            let v = req.into_inner().version;
            let (_, index) = self.admin_job(move |store| store.rollback(v)).await?;
            Ok(version_info(index.manifest(), true))
        })
        .await
    }
}
