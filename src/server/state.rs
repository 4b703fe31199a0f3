//! What both services share: the served index version (none until one
//! loads and verifies), its watchers, the lock that serializes admin work,
//! the last version refused and why, the replication stream permits, the
//! metrics and the configuration.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex as StdMutex};

use arc_swap::ArcSwapOption;
use tokio::sync::{Mutex, Semaphore, watch};

use super::config::ServerConfig;
use super::metrics::Metrics;
use crate::index::{CancelToken, Index, IndexError, IndexStore};

/// Decides whether a verified version may be served (a generator refuses
/// versions its model cannot decode).
pub type Acceptor = Box<dyn Fn(&Index) -> Result<(), String> + Send + Sync>;

/// A published version this server would not serve.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub version: u64,
    pub reason: String,
}

pub struct IndexState {
    pub store: IndexStore,
    current: ArcSwapOption<Index>,
    versions: watch::Sender<u64>,
    pub(super) admin: Mutex<()>,
    /// The last version refused; not retried until `CURRENT` moves.
    refused: StdMutex<Option<Refusal>>,
    accept: Option<Acceptor>,
    /// Cancelled when the server begins to drain: no admin job publishes after.
    pub(super) draining: CancelToken,
    /// Open FetchVersion / WatchVersions streams are bounded by these.
    pub(super) fetch_permits: Arc<Semaphore>,
    pub(super) watch_permits: Arc<Semaphore>,
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
            refused: StdMutex::new(None),
            accept: None,
            draining: CancelToken::new(),
            fetch_permits: Arc::new(Semaphore::new(config.max_fetch_streams)),
            watch_permits: Arc::new(Semaphore::new(config.max_watch_streams)),
            metrics,
            config,
        }
    }

    /// Serves only versions `accept` approves of.
    pub fn with_acceptor(mut self, accept: Acceptor) -> Self {
        self.accept = Some(accept);
        self
    }

    /// The served version, if any.
    pub fn current(&self) -> Option<Arc<Index>> {
        self.current.load_full()
    }

    /// The last version refused and why.
    pub fn refused(&self) -> Option<Refusal> {
        self.refusal().clone()
    }

    fn refusal(&self) -> std::sync::MutexGuard<'_, Option<Refusal>> {
        self.refused.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refuse(&self, version: u64, reason: String) {
        tracing::error!(version, %reason, "refusing to serve index version");
        self.metrics
            .refused_versions
            .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .refused_version
            .store(version, Ordering::Relaxed);
        *self.refusal() = Some(Refusal { version, reason });
    }

    /// Marks the server as draining: admin work not yet published publishes nothing.
    pub fn begin_drain(&self) {
        self.draining.cancel();
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

    /// Loads the version `CURRENT` names if it is not the one served. A
    /// version that fails verification or the acceptor is refused: the
    /// served one stays.
    pub async fn reload(self: &Arc<Self>) -> Result<Option<u64>, IndexError> {
        let Some(v) = self.store.current()? else {
            return Ok(None);
        };
        if self.current().is_some_and(|i| i.version() == v) {
            return Ok(None);
        }
        if self.refusal().as_ref().is_some_and(|r| r.version == v) {
            return Ok(None);
        }
        let store = self.store.clone();
        let opened = tokio::task::spawn_blocking(move || store.open_version(v))
            .await
            .map_err(|e| IndexError::Internal(format!("index loader task failed: {e}")))?;
        let index = match opened {
            Ok(index) => index,
            Err(e) => {
                self.refuse(v, e.to_string());
                return Err(e);
            }
        };
        if let Some(accept) = &self.accept
            && let Err(reason) = accept(&index)
        {
            self.refuse(v, reason.clone());
            return Err(IndexError::Input(format!(
                "index version {v} is not served: {reason}"
            )));
        }
        self.swap(index);
        Ok(Some(v))
    }

    /// Stops serving the current version if one of its files changed on disk
    /// (reading its lost pages would crash the process); returns the refusal.
    pub fn check_served(&self) -> Option<Refusal> {
        let index = self.current()?;
        let e = index.check_unchanged().err()?;
        self.current.store(None);
        self.refuse(index.version(), e.to_string());
        self.refused()
    }
}
