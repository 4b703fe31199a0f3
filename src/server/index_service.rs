//! `sidx.v1.IndexService`: the index module behind tonic. Queries read the
//! served version in place; admin RPCs publish a new version on a blocking
//! thread, then swap it in — requests in flight keep the `Arc` they started with.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use arc_swap::ArcSwapOption;
use tokio::sync::{Mutex, watch};
use tokio_stream::{Stream, StreamExt, wrappers::WatchStream};
use tonic::{Request, Response, Status, Streaming};

use super::config::ServerConfig;
use super::metrics::Metrics;
use crate::index::{
    CatalogUpdate, Index, IndexError, IndexStore, Manifest, TokenId, build_from_table,
};
use crate::proto::v1::index_service_server::IndexService;
use crate::proto::v1::*;
use crate::sid::{SidHeader, SidTable, Token as SidToken};

/// The gRPC name of the service, for health reporting.
pub const SERVICE_NAME: &str = "sidx.v1.IndexService";

/// Shared state: the served version (none until one loads), its watchers, and
/// the lock that serializes admin work.
pub struct IndexState {
    pub store: IndexStore,
    current: ArcSwapOption<Index>,
    versions: watch::Sender<u64>,
    admin: Mutex<()>,
    /// The last version that failed to load, not retried until CURRENT moves.
    refused: std::sync::Mutex<Option<u64>>,
    pub metrics: Arc<Metrics>,
    pub config: ServerConfig,
}

impl IndexState {
    pub fn new(store: IndexStore, config: ServerConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            current: ArcSwapOption::empty(),
            versions: watch::channel(0).0,
            admin: Mutex::new(()),
            refused: std::sync::Mutex::new(None),
            metrics,
            config,
        }
    }

    /// The served version, if any.
    pub fn current(&self) -> Option<Arc<Index>> {
        self.current.load_full()
    }

    /// Receives every version swapped in.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.versions.subscribe()
    }

    /// Serves `index` from now on.
    pub fn swap(&self, index: Index) {
        let m = index.manifest();
        self.metrics
            .index_version
            .store(m.catalog_version, Ordering::Relaxed);
        self.metrics.index_sids.store(m.sids, Ordering::Relaxed);
        self.metrics.index_items.store(m.items, Ordering::Relaxed);
        self.metrics.index_bytes.store(m.bytes(), Ordering::Relaxed);
        self.metrics.swaps.fetch_add(1, Ordering::Relaxed);
        let v = m.catalog_version;
        self.current.store(Some(Arc::new(index)));
        self.versions.send_replace(v);
        tracing::info!(version = v, "serving index version");
    }

    /// Loads the version `CURRENT` names if it is not the one served.
    pub async fn reload(self: &Arc<Self>) -> Result<Option<u64>, IndexError> {
        let Some(v) = self.store.current()? else {
            return Ok(None);
        };
        if self.current().is_some_and(|i| i.version() == v) {
            return Ok(None);
        }
        let refused = || self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if *refused() == Some(v) {
            return Ok(None);
        }
        let store = self.store.clone();
        let opened = tokio::task::spawn_blocking(move || store.open_version(v))
            .await
            .map_err(|e| IndexError::Input(format!("loader task failed: {e}")))?;
        match opened {
            Ok(index) => {
                self.swap(index);
                Ok(Some(v))
            }
            Err(e) => {
                *refused() = Some(v);
                Err(e)
            }
        }
    }
}

/// Maps index errors to gRPC status codes.
pub fn status(e: IndexError) -> Status {
    match e {
        IndexError::Input(m) | IndexError::Query(m) => Status::invalid_argument(m),
        IndexError::Sid(e) => Status::invalid_argument(e.to_string()),
        IndexError::Quantize(e) => Status::invalid_argument(e.to_string()),
        IndexError::NoVersion(_) => Status::failed_precondition(e.to_string()),
        IndexError::Corrupt { .. } => Status::data_loss(e.to_string()),
        IndexError::Io { .. } | IndexError::Fs(_) => Status::internal(e.to_string()),
    }
}

pub struct IndexServiceImpl {
    state: Arc<IndexState>,
}

impl IndexServiceImpl {
    pub fn new(state: Arc<IndexState>) -> Self {
        Self { state }
    }

    fn index(&self) -> Result<Arc<Index>, Status> {
        self.state
            .current()
            .ok_or_else(|| Status::unavailable("no index version is loaded yet"))
    }

    fn check_batch(&self, field: &str, n: usize) -> Result<(), Status> {
        let max = self.state.config.max_batch;
        if n > max {
            return Err(Status::invalid_argument(format!(
                "{field}: {n} entries exceed the limit of {max} per request"
            )));
        }
        Ok(())
    }

    fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(token) = &self.state.config.admin_token else {
            return Err(Status::permission_denied(
                "admin RPCs are disabled: the server has no admin token configured",
            ));
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(Status::unauthenticated("authorization: wrong admin token")),
            None => Err(Status::unauthenticated(
                "authorization: admin RPCs need `authorization: Bearer <admin token>`",
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
    /// what it published. The job's error decides the status code.
    async fn admin_job<T: Send + 'static>(
        &self,
        job: impl FnOnce(IndexStore) -> Result<T, IndexError> + Send + 'static,
        to_status: fn(IndexError) -> Status,
    ) -> Result<(T, Arc<Index>), Status> {
        let _admin = self.state.admin.lock().await;
        let store = self
            .state
            .store
            .clone()
            .with_keep(self.state.config.keep_versions);
        let out = tokio::task::spawn_blocking(move || job(store))
            .await
            .map_err(|e| Status::internal(format!("admin task failed: {e}")))?
            .map_err(to_status)?;
        self.state.reload().await.map_err(status)?;
        Ok((out, self.index()?))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn to_tokens(sid: &Sid) -> Vec<SidToken> {
    sid.tokens
        .iter()
        .map(|t| SidToken::new(t.layer.min(255) as u8, t.code))
        .collect()
}

fn token_msg(index: &Index, id: TokenId) -> Token {
    let t = index.token(id);
    Token {
        layer: t.layer as u32,
        code: t.code,
    }
}

pub(super) fn sid_msg(index: &Index, ids: &[TokenId]) -> Sid {
    Sid {
        tokens: ids.iter().map(|&t| token_msg(index, t)).collect(),
    }
}

/// Converts a request SID to token ids, naming the field on error.
fn sid_ids(index: &Index, field: &str, sid: &Sid, out: &mut Vec<TokenId>) -> Result<(), Status> {
    if sid.tokens.iter().any(|t| t.layer == 0 || t.layer > 255) {
        return Err(Status::invalid_argument(format!(
            "{field}: layers are 1-based and at most 255"
        )));
    }
    index
        .token_ids(&to_tokens(sid), out)
        .map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

fn version_info(m: &Manifest, current: bool) -> VersionInfo {
    VersionInfo {
        version: m.catalog_version,
        current,
        sids: m.sids,
        items: m.items,
        bytes: m.bytes(),
        created_unix: m.created_unix,
        source: m.source.clone(),
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

const CHUNK: usize = 1 << 20;

#[tonic::async_trait]
impl IndexService for IndexServiceImpl {
    async fn next_tokens(
        &self,
        req: Request<NextTokensRequest>,
    ) -> Result<Response<NextTokensResponse>, Status> {
        self.observed("NextTokens", async {
            let req = req.into_inner();
            let index = self.index()?;
            if req.version != 0 && req.version != index.version() {
                return Err(Status::failed_precondition(format!(
                    "version: {} is not served (serving {})",
                    req.version,
                    index.version()
                )));
            }
            let max_len = index.max_sid_len();
            let mut ids = Vec::with_capacity(8);
            let mut results = Vec::with_capacity(req.prefixes.len().max(req.prefix_ids.len()));
            if !req.prefixes.is_empty() {
                self.check_batch("prefixes", req.prefixes.len())?;
                for (i, p) in req.prefixes.iter().enumerate() {
                    let field = format!("prefixes[{i}]");
                    sid_ids(&index, &field, p, &mut ids)?;
                    check_len(&field, ids.len(), max_len)?;
                    let next = index.next_tokens(&ids);
                    results.push(NextTokens {
                        allowed: next.allowed.iter().map(|&t| token_msg(&index, t)).collect(),
                        complete: next.complete,
                        valid: next.node.is_some(),
                        allowed_ids: Vec::new(),
                    });
                }
            } else if !req.prefix_ids.is_empty() {
                self.check_batch("prefix_ids", req.prefix_ids.len())?;
                let vocab = index.token_id_limit();
                for (i, p) in req.prefix_ids.iter().enumerate() {
                    if p.ids.len() > max_len {
                        check_len(&format!("prefix_ids[{i}]"), p.ids.len(), max_len)?;
                    }
                    ids.clear();
                    for (j, &id) in p.ids.iter().enumerate() {
                        if id >= vocab {
                            return Err(Status::invalid_argument(format!(
                                "prefix_ids[{i}].ids[{j}]: token id {id} is not below {vocab}"
                            )));
                        }
                        ids.push(id as TokenId);
                    }
                    let next = index.next_tokens(&ids);
                    results.push(NextTokens {
                        allowed: Vec::new(),
                        complete: next.complete,
                        valid: next.node.is_some(),
                        allowed_ids: next.allowed.iter().map(|&t| t as u32).collect(),
                    });
                }
            } else {
                return Err(Status::invalid_argument(
                    "prefixes: empty batch (send prefixes or prefix_ids; the root is an empty Sid)",
                ));
            }
            Ok(NextTokensResponse {
                results,
                version: index.version(),
            })
        })
        .await
    }

    async fn lookup(
        &self,
        req: Request<LookupRequest>,
    ) -> Result<Response<LookupResponse>, Status> {
        self.observed("Lookup", async {
            let req = req.into_inner();
            let index = self.index()?;
            if req.sids.is_empty() && req.item_ids.is_empty() {
                return Err(Status::invalid_argument("sids, item_ids: empty batch"));
            }
            self.check_batch("sids", req.sids.len())?;
            self.check_batch("item_ids", req.item_ids.len())?;
            let mut ids = Vec::new();
            let mut by_sid = Vec::with_capacity(req.sids.len());
            for (i, sid) in req.sids.into_iter().enumerate() {
                sid_ids(&index, &format!("sids[{i}]"), &sid, &mut ids)?;
                by_sid.push(SidItems {
                    item_ids: index.items(&ids).map(str::to_owned).collect(),
                    sid: Some(sid),
                });
            }
            let mut by_item = Vec::with_capacity(req.item_ids.len());
            for (i, id) in req.item_ids.into_iter().enumerate() {
                if !index.sid_into(&id, &mut ids) {
                    return Err(Status::not_found(format!(
                        "item_ids[{i}]: unknown item {id:?}"
                    )));
                }
                by_item.push(ItemSid {
                    sid: Some(sid_msg(&index, &ids)),
                    item_id: id,
                });
            }
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
            let m = index.manifest();
            Ok(StatsResponse {
                version: m.catalog_version,
                items: m.items,
                sids: m.sids,
                codebook_sizes: m.codebook_sizes.clone(),
                layers: index
                    .layer_stats()
                    .into_iter()
                    .map(|l| LayerStats {
                        layer: l.layer as u32,
                        codebook_size: l.codebook_size,
                        items: l.items,
                        used: l.used,
                        utilization: l.utilization,
                        entropy: l.entropy,
                        normalized_entropy: l.normalized_entropy,
                        gini: l.gini,
                        std: l.std,
                        top1_share: l.top1_share,
                    })
                    .collect(),
                bytes: m.bytes(),
                nodes: m.nodes,
                collisions: m.collisions.to_string(),
                mitigation: m
                    .mitigation
                    .as_ref()
                    .map_or(String::new(), |r| r.strategy.clone()),
            })
        })
        .await
    }

    async fn list_versions(
        &self,
        _req: Request<ListVersionsRequest>,
    ) -> Result<Response<ListVersionsResponse>, Status> {
        self.observed("ListVersions", async {
            let store = &self.state.store;
            let current = store.current().map_err(status)?;
            let mut versions = Vec::new();
            for v in store.versions().map_err(status)? {
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
        _req: Request<WatchVersionsRequest>,
    ) -> Result<Response<Self::WatchVersionsStream>, Status> {
        let state = self.state.clone();
        let stream = WatchStream::new(self.state.subscribe())
            .filter(|&v| v != 0)
            .map(move |_| {
                let index = state
                    .current()
                    .ok_or_else(|| Status::unavailable("no index loaded"))?;
                Ok(version_info(index.manifest(), true))
            });
        self.state
            .metrics
            .observe("WatchVersions", tonic::Code::Ok, Default::default());
        Ok(Response::new(Box::pin(stream)))
    }

    type FetchVersionStream = BoxStream<FileChunk>;

    async fn fetch_version(
        &self,
        req: Request<FetchVersionRequest>,
    ) -> Result<Response<Self::FetchVersionStream>, Status> {
        let t0 = Instant::now();
        let requested = req.into_inner().version;
        let version = match requested {
            0 => self.index()?.version(),
            v => v,
        };
        let dir = self.state.store.version_dir(version);
        let manifest = Manifest::read(&dir).map_err(|e| match e {
            IndexError::Corrupt { .. } => {
                Status::not_found(format!("version: {version} is not kept on this server"))
            }
            e => status(e),
        })?;
        let mut names: Vec<String> = manifest.files.iter().map(|f| f.name.clone()).collect();
        names.push("manifest.json".into());
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let count = names.len();
            for (i, name) in names.into_iter().enumerate() {
                let bytes = match tokio::fs::read(dir.join(&name)).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(format!("{name}: {e}")))).await;
                        return;
                    }
                };
                let size = bytes.len() as u64;
                let pieces = bytes.len().div_ceil(CHUNK).max(1);
                for p in 0..pieces {
                    let data = bytes[p * CHUNK..((p + 1) * CHUNK).min(bytes.len())].to_vec();
                    let chunk = FileChunk {
                        version,
                        name: name.clone(),
                        offset: (p * CHUNK) as u64,
                        data,
                        file_size: size,
                        last: i + 1 == count && p + 1 == pieces,
                    };
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
            }
        });
        self.state
            .metrics
            .observe("FetchVersion", tonic::Code::Ok, t0.elapsed());
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn apply_catalog_update(
        &self,
        req: Request<Streaming<CatalogChange>>,
    ) -> Result<Response<CatalogUpdateResponse>, Status> {
        self.observed("ApplyCatalogUpdate", async {
            self.authorize(&req)?;
            let index = self.index()?;
            let mut stream = req.into_inner();
            let layout = index.layout().clone();
            let mut sids = SidTable::new(SidHeader::new(&layout, index.manifest().collisions));
            let (mut emb, mut emb_ids, mut dim): (Vec<f32>, Vec<String>, Option<usize>) =
                (Vec::new(), Vec::new(), None);
            let mut deletes = Vec::new();
            let mut n = 0usize;
            while let Some(change) = stream.message().await? {
                n += 1;
                if n > self.state.config.max_update_changes {
                    return Err(Status::invalid_argument(format!(
                        "changes: more than {} in one update",
                        self.state.config.max_update_changes
                    )));
                }
                let field = format!("changes[{}]", n - 1);
                match change.change {
                    Some(catalog_change::Change::UpsertEmbedding(u)) => {
                        let d = *dim.get_or_insert(u.embedding.len());
                        if u.embedding.len() != d
                            || d == 0
                            || u.embedding.iter().any(|v| !v.is_finite())
                        {
                            return Err(Status::invalid_argument(format!(
                                "{field}.embedding: {} values, expected {d} finite values",
                                u.embedding.len()
                            )));
                        }
                        check_id(&field, &u.item_id)?;
                        emb.extend_from_slice(&u.embedding);
                        emb_ids.push(u.item_id);
                    }
                    Some(catalog_change::Change::UpsertSid(u)) => {
                        check_id(&field, &u.item_id)?;
                        let sid = u.sid.unwrap_or_default();
                        let mut ids = Vec::new();
                        sid_ids(&index, &format!("{field}.sid"), &sid, &mut ids)?;
                        if ids.is_empty() {
                            return Err(Status::invalid_argument(format!("{field}.sid: empty")));
                        }
                        sids.push(u.item_id, &to_tokens(&sid));
                    }
                    Some(catalog_change::Change::DeleteItemId(id)) => {
                        check_id(&field, &id)?;
                        deletes.push(id);
                    }
                    None => {
                        return Err(Status::invalid_argument(format!("{field}: no change set")));
                    }
                }
            }
            if n == 0 {
                return Err(Status::invalid_argument("changes: empty update"));
            }
            let update = CatalogUpdate {
                upsert_sids: (!sids.is_empty()).then_some(sids),
                upsert_embeddings: dim.map(|d| (emb, d, emb_ids)),
                deletes,
            };
            let (s, _) = self
                .admin_job(
                    move |store| update.apply(&store),
                    |e| match e {
                        IndexError::Input(m) if m.contains("unknown item id") => {
                            Status::not_found(m)
                        }
                        e => status(e),
                    },
                )
                .await?;
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
            self.authorize(&req)?;
            let req = req.into_inner();
            if req.sids_path.is_empty() {
                return Err(Status::invalid_argument("sids_path: required"));
            }
            let (_, index) = self
                .admin_job(
                    move |store| {
                        let table = SidTable::read(std::path::Path::new(&req.sids_path))?;
                        let codebooks = (!req.codebooks_path.is_empty())
                            .then(|| std::path::PathBuf::from(&req.codebooks_path));
                        build_from_table(&store, &table, &req.sids_path, codebooks.as_deref())
                    },
                    status,
                )
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
            self.authorize(&req)?;
            let v = req.into_inner().version;
            if !self.state.store.versions().map_err(status)?.contains(&v) {
                return Err(Status::not_found(format!("version: {v} is not kept")));
            }
            let (_, index) = self
                .admin_job(move |store| store.rollback(v), status)
                .await?;
            Ok(version_info(index.manifest(), true))
        })
        .await
    }
}

fn check_len(field: &str, len: usize, max: usize) -> Result<(), Status> {
    if len > max {
        return Err(Status::invalid_argument(format!(
            "{field}: {len} tokens, longer than any SID in the index ({max})"
        )));
    }
    Ok(())
}

fn check_id(field: &str, id: &str) -> Result<(), Status> {
    if id.is_empty() || id.contains(['\t', '\n']) {
        return Err(Status::invalid_argument(format!(
            "{field}.item_id: {id:?} is empty or holds a tab/newline"
        )));
    }
    Ok(())
}
