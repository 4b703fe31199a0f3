//! Mirroring an index from `sidx serve index`: follow `WatchVersions`, copy
//! each newly served version with `FetchVersion` into a local index root
//! (verified, then published under the same version number), so a generator
//! pod can read the index in-process from local disk.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tonic::transport::Channel;

use super::Connect;

use crate::index::{IndexError, IndexStore, MIRROR_PREFIX};
use crate::proto::v1::index_service_client::IndexServiceClient;
use crate::proto::v1::{FetchVersionRequest, VersionInfo, WatchVersionsRequest};

/// Why a mirror step failed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("index source {source_url}: {message}")]
    Source { source_url: String, message: String },
    #[error("the source sent a bad chunk: {0}")]
    BadChunk(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// Copies versions of the index served at `source` into `store`.
pub struct Mirror {
    source: String,
    store: IndexStore,
    token: Option<String>,
}

impl Mirror {
    pub fn new(source: impl Into<String>, store: IndexStore) -> Self {
        Mirror {
            source: source.into(),
            store,
            token: None,
        }
    }

    /// Sends `authorization: Bearer <token>` (the source's replication or admin token).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// A request carrying the token, if any.
    fn request<T>(&self, msg: T) -> Result<tonic::Request<T>, MirrorError> {
        let mut req = tonic::Request::new(msg);
        if let Some(t) = &self.token {
            let value = format!("Bearer {t}")
                .parse()
                .map_err(|_| self.source_err("the mirror token is not valid header text"))?;
            req.metadata_mut().insert("authorization", value);
        }
        Ok(req)
    }

    fn source_err(&self, e: impl std::fmt::Display) -> MirrorError {
        MirrorError::Source {
            source_url: self.source.clone(),
            message: e.to_string(),
        }
    }

    async fn client(&self) -> Result<IndexServiceClient<Channel>, MirrorError> {
        let channel = Connect::new(&self.source)
            .channel()
            .await
            .map_err(|e| self.source_err(e.message))?;
        Ok(super::index_client(channel))
    }

    /// A client and the source's stream of served versions (the current one first).
    async fn watch(
        &self,
    ) -> Result<(IndexServiceClient<Channel>, tonic::Streaming<VersionInfo>), MirrorError> {
        let mut client = self.client().await?;
        let watch = client
            .watch_versions(self.request(WatchVersionsRequest {})?)
            .await
            .map_err(|e| self.source_err(e))?
            .into_inner();
        Ok((client, watch))
    }

    /// Makes the source's current version the local current one; returns it.
    pub async fn sync_once(&self) -> Result<u64, MirrorError> {
        let (mut client, mut watch) = self.watch().await?;
        let info = watch
            .message()
            .await
            .map_err(|e| self.source_err(e))?
            .ok_or_else(|| self.source_err("the version stream ended"))?;
        self.follow(&mut client, info.version).await?;
        Ok(info.version)
    }

    /// Like [`Mirror::sync_once`], retried with backoff until it succeeds
    /// (`Some(version)`) or `stop` resolves (`None`).
    pub async fn sync_with_retry(
        &self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Option<u64> {
        tokio::pin!(stop);
        let mut backoff = Backoff::default();
        loop {
            tokio::select! {
                r = self.sync_once() => match r {
                    Ok(version) => return Some(version),
                    Err(e) => tracing::warn!(error = %e, "waiting for the index to mirror"),
                },
                _ = &mut stop => return None,
            }
            tokio::select! {
                _ = backoff.sleep() => {}
                _ = &mut stop => return None,
            }
        }
    }

    /// Follows the source until `stop` resolves, reconnecting with backoff.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut backoff = Backoff::default();
        loop {
            tokio::select! {
                r = self.follow_stream(&mut backoff) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "index mirror interrupted; retrying");
                    }
                }
                _ = &mut stop => return,
            }
            tokio::select! {
                _ = backoff.sleep() => {}
                _ = &mut stop => return,
            }
        }
    }

    /// Follows one connection's stream of versions; a working connection
    /// resets the reconnect backoff.
    async fn follow_stream(&self, backoff: &mut Backoff) -> Result<(), MirrorError> {
        let (mut client, mut watch) = self.watch().await?;
        while let Some(info) = watch.message().await.map_err(|e| self.source_err(e))? {
            self.follow(&mut client, info.version).await?;
            *backoff = Backoff::default();
        }
        Ok(())
    }

    /// Points the local index at `version`, copying it first if needed.
    async fn follow(
        &self,
        client: &mut IndexServiceClient<Channel>,
        version: u64,
    ) -> Result<(), MirrorError> {
        if self.store.current()? == Some(version) {
            return Ok(());
        }
        let store = self.store.clone();
        if store.versions()?.contains(&version) {
            blocking(move || store.switch_to(version)).await?;
            tracing::info!(version, "index mirror: switched to a version already here");
            return Ok(());
        }
        // The writer lock is held while staging, so no one sweeps the staging
        // directory as a leftover; a crash leaves it to the next writer's sweep.
        let lock = {
            let store = store.clone();
            Arc::new(blocking(move || store.lock()).await?)
        };
        let staged = self.store.root().join(format!(
            "{MIRROR_PREFIX}v{version:08}-{}",
            std::process::id()
        ));
        let published = match self.fetch(client, version, &staged).await {
            Ok(()) => {
                let (s, l) = (staged.clone(), Arc::clone(&lock));
                blocking(move || store.publish_copy_locked(&l, &s, version)).await
            }
            Err(e) => Err(e),
        };
        if published.is_err() {
            let _ = tokio::fs::remove_dir_all(&staged).await;
        }
        drop(lock);
        published?;
        tracing::info!(version, source = %self.source, "index mirror: version copied and published");
        Ok(())
    }

    /// Streams a version's files into `staged`, a directory of the local root.
    async fn fetch(
        &self,
        client: &mut IndexServiceClient<Channel>,
        version: u64,
        staged: &Path,
    ) -> Result<(), MirrorError> {
        let io = |what: String| move |source| MirrorError::Io { what, source };
        let _ = tokio::fs::remove_dir_all(staged).await;
        tokio::fs::create_dir_all(staged)
            .await
            .map_err(io(staged.display().to_string()))?;
        let mut stream = client
            .fetch_version(self.request(FetchVersionRequest { version })?)
            .await
            .map_err(|e| self.source_err(e))?
            .into_inner();
        // The file being written: name, handle, bytes written, expected size.
        let mut open: Option<(String, tokio::fs::File, u64, u64)> = None;
        let mut complete = false;
        while let Some(chunk) = stream.message().await.map_err(|e| self.source_err(e))? {
            check_name(&chunk.name)?;
            if chunk.version != version {
                return Err(MirrorError::BadChunk(format!(
                    "version {} while fetching {version}",
                    chunk.version
                )));
            }
            if open.as_ref().is_none_or(|(n, ..)| *n != chunk.name) {
                if let Some(file) = open.take() {
                    finish(file).await?;
                }
                let path = staged.join(&chunk.name);
                let f = tokio::fs::File::create(&path)
                    .await
                    .map_err(io(path.display().to_string()))?;
                open = Some((chunk.name.clone(), f, 0, chunk.file_size));
            }
            let (name, f, written, _) = open.as_mut().expect("a file is open");
            if chunk.offset != *written || *written + chunk.data.len() as u64 > chunk.file_size {
                return Err(MirrorError::BadChunk(format!(
                    "{name}: {} bytes at offset {} after {written} of {}",
                    chunk.data.len(),
                    chunk.offset,
                    chunk.file_size
                )));
            }
            f.write_all(&chunk.data).await.map_err(io(name.clone()))?;
            *written += chunk.data.len() as u64;
            if chunk.last {
                complete = true;
                break;
            }
        }
        if let Some(file) = open.take() {
            finish(file).await?;
        }
        if !complete {
            return Err(self.source_err(format!("version {version} ended before its last chunk")));
        }
        Ok(())
    }
}

/// Flushes a fetched file after checking it arrived whole.
async fn finish(
    (name, mut f, written, size): (String, tokio::fs::File, u64, u64),
) -> Result<(), MirrorError> {
    if written != size {
        return Err(MirrorError::BadChunk(format!(
            "{name}: {written} of {size} bytes"
        )));
    }
    f.flush()
        .await
        .map_err(|source| MirrorError::Io { what: name, source })
}

/// File names a version may hold: plain names, no paths.
fn check_name(name: &str) -> Result<(), MirrorError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(MirrorError::BadChunk(format!("file name {name:?}")))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, MirrorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MirrorError::Io {
            what: "index mirror task".into(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(MirrorError::from)
}

/// The local root a mirror writes into must exist.
pub fn prepare_root(root: &Path) -> Result<(), MirrorError> {
    std::fs::create_dir_all(root).map_err(|source| MirrorError::Io {
        what: root.display().to_string(),
        source,
    })
}

/// Reconnect delays: 200 ms, doubling up to 10 s.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(200))
    }
}

impl Backoff {
    async fn sleep(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(10));
    }
}
