//! Versions on disk and their atomic publication.
//!
//! ```text
//! ROOT/CURRENT                 "v00000003\npublished-up-to v00000004\n"
//! ROOT/LOCK                    held by the one writer (build, update, rollback, mirror)
//! ROOT/versions/v00000003/     manifest.json sids.fst items.fst trie.bin [codebooks.npy]
//! ROOT/versions/.tmp-…         a build in progress (or left by a crash)
//! ```
//!
//! `CURRENT` names the version readers load and the highest version ever
//! published; it is replaced atomically (temp + sync + rename + directory
//! sync), and that rename is the commit point of every publish. A build
//! writes a temporary directory, syncs its files (read-only from then on)
//! and itself, renames it into `versions/`, syncs that, then replaces
//! `CURRENT`. A version above `published-up-to` was never published — a
//! crash or a failed `CURRENT` write came between — and is garbage: not
//! listed, not offered for rollback, removed by the next writer. A crash at
//! any point leaves `CURRENT` naming the last complete version; every
//! temporary name (`versions/.tmp-…`, `versions/.del-…`, `.CURRENT.tmp-…`,
//! a mirror's `.mirror-…`) is swept when a writer next opens the root.
//! Published files never change; old versions are removed past the newest
//! `keep`, never the current one.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use super::builder::IndexBuilder;
use super::manifest::{FileEntry, MANIFEST_FILE, Manifest};
use super::reader::Index;
use super::{BuildCounts, IndexError, TokenId};
use crate::quantize::{CODEBOOKS_FILE, QuantizerMeta};
use crate::sid::SidTable;

pub const CURRENT_FILE: &str = "CURRENT";
pub const VERSIONS_DIR: &str = "versions";
const LOCK_FILE: &str = "LOCK";
const TMP_PREFIX: &str = ".tmp-";
const DEL_PREFIX: &str = ".del-";
/// A mirror's staging directory in the root (`.mirror-v…-PID`).
pub const MIRROR_PREFIX: &str = ".mirror-";
/// `fsx::write_atomic`'s temporary name for `CURRENT`.
const CURRENT_TMP_PREFIX: &str = ".CURRENT.tmp-";
const PUBLISHED_KEY: &str = "published-up-to";

/// Aborts the process at a named [`crate::failpoint`] — how the crash tests
/// kill a build half-way (abort runs no destructors, like kill -9).
fn failpoint(name: &str) {
    if crate::failpoint::hit(name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

/// Fails with an I/O error at a named [`crate::failpoint`] (how the tests
/// make writing `CURRENT` fail, as a full disk would).
fn failpoint_error(name: &str, path: &Path) -> Result<(), IndexError> {
    if crate::failpoint::hit(name) {
        return Err(IndexError::io(
            path,
            std::io::Error::other(format!("failpoint {name}")),
        ));
    }
    Ok(())
}

/// Set when whoever asked for a publish has gone away (a cancelled RPC, a
/// draining server); a publish checks it just before its commit point and
/// then publishes nothing.
#[derive(Clone, Debug, Default)]
pub struct CancelToken {
    own: Arc<AtomicBool>,
    parent: Option<Arc<AtomicBool>>,
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    /// A token cancelled by its own `cancel` or by `parent`'s.
    pub fn child(&self) -> Self {
        Self {
            own: Arc::default(),
            parent: Some(Arc::clone(&self.own)),
        }
    }

    pub fn cancel(&self) {
        self.own.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.own.load(Ordering::SeqCst)
            || self
                .parent
                .as_ref()
                .is_some_and(|p| p.load(Ordering::SeqCst))
    }
}

/// What `CURRENT` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pointer {
    /// The version readers load.
    current: u64,
    /// The highest version ever published (`None`: a `CURRENT` written before
    /// this line existed; then every complete version counts as published).
    published: Option<u64>,
}

impl Pointer {
    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let version = |v: &str| -> Option<u64> {
            let digits = v.strip_prefix('v')?;
            if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        };
        let current = version(lines.next()?)?;
        let published = match lines.next() {
            Some(l) => Some(version(l.strip_prefix(PUBLISHED_KEY)?.trim_start())?),
            None => None,
        };
        if lines.next().is_some() || published.is_some_and(|p| p < current) {
            return None;
        }
        Some(Self { current, published })
    }

    fn text(&self) -> String {
        let published = self.published.unwrap_or(self.current).max(self.current);
        format!("v{:08}\n{PUBLISHED_KEY} v{published:08}\n", self.current)
    }
}

fn sync_dir(dir: &Path) -> Result<(), IndexError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| IndexError::io(dir, e))
}

/// The versions of one index root.
#[derive(Clone, Debug)]
pub struct IndexStore {
    root: PathBuf,
    keep: usize,
    cancel: Option<CancelToken>,
    /// The format version of new builds (updates keep their base's).
    format_version: u32,
}

/// What a build or update published.
#[derive(Clone, Debug, Serialize)]
pub struct BuildSummary {
    pub version: u64,
    pub sids: u64,
    pub items: u64,
    pub nodes: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// The exclusive writer lock of a root, released on drop.
pub(crate) struct WriterLock(File);

impl Drop for WriterLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl IndexStore {
    /// A store rooted at `root`, keeping the newest 3 versions.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            keep: 3,
            cancel: None,
            format_version: super::manifest::DEFAULT_FORMAT_VERSION,
        }
    }

    /// This store, writing new builds in `format_version` (1 or 2; updates
    /// keep the format of the version they update).
    pub fn with_format_version(mut self, format_version: u32) -> Self {
        self.format_version = format_version;
        self
    }

    /// This store, publishing nothing once `cancel` is set (checked just
    /// before each commit point).
    pub fn with_cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Keep the newest `keep` versions for rollback (at least 2, so that a
    /// reader that just read `CURRENT` never finds its version deleted).
    pub fn with_keep(mut self, keep: usize) -> Self {
        self.keep = keep.max(2);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn version_dir(&self, version: u64) -> PathBuf {
        self.root.join(VERSIONS_DIR).join(format!("v{version:08}"))
    }

    /// Published versions, ascending (a version above `CURRENT`'s
    /// `published-up-to` never was, and is not listed).
    pub fn versions(&self) -> Result<Vec<u64>, IndexError> {
        let limit = self.pointer()?.and_then(|p| p.published);
        Ok(self
            .version_dirs()?
            .into_iter()
            .filter(|&v| limit.is_none_or(|l| v <= l))
            .collect())
    }

    /// Every `versions/vN` directory, published or not, ascending.
    fn version_dirs(&self) -> Result<Vec<u64>, IndexError> {
        let dir = self.root.join(VERSIONS_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(IndexError::io(&dir, e)),
        };
        let mut versions: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let v: u64 = name.to_str()?.strip_prefix('v')?.parse().ok()?;
                (name.to_str()? == format!("v{v:08}")).then_some(v)
            })
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// The version `CURRENT` names, if any.
    pub fn current(&self) -> Result<Option<u64>, IndexError> {
        Ok(self.pointer()?.map(|p| p.current))
    }

    fn pointer(&self) -> Result<Option<Pointer>, IndexError> {
        let path = self.root.join(CURRENT_FILE);
        match fs::read_to_string(&path) {
            Ok(s) => Pointer::parse(&s)
                .map(Some)
                .ok_or_else(|| IndexError::corrupt(&path, format!("unreadable pointer {s:?}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IndexError::io(&path, e)),
        }
    }

    /// The highest version published so far (0 when none).
    fn published_up_to(&self) -> Result<u64, IndexError> {
        Ok(match self.pointer()? {
            Some(Pointer {
                published: Some(p), ..
            }) => p,
            Some(Pointer { current, .. }) => {
                current.max(self.version_dirs()?.last().copied().unwrap_or(0))
            }
            None => 0,
        })
    }

    /// Opens and verifies the current version (cleaning up after crashed
    /// builds first when no writer is running).
    pub fn open_current(&self) -> Result<Index, IndexError> {
        if let Some(lock) = self.try_lock()? {
            self.remove_temporaries()?;
            drop(lock);
        }
        let v = self
            .current()?
            .ok_or_else(|| IndexError::NoVersion(self.root.clone()))?;
        match self.open_version(v) {
            // A writer retired it between our read of CURRENT and the open: read again.
            Err(e) if !self.version_dir(v).exists() => match self.current()? {
                Some(now) if now != v => self.open_version(now),
                _ => Err(e),
            },
            r => r,
        }
    }

    /// Opens the current version while holding the writer lock (the base of an update).
    pub(crate) fn open_current_locked(&self, _lock: &WriterLock) -> Result<Index, IndexError> {
        let v = self
            .current()?
            .ok_or_else(|| IndexError::NoVersion(self.root.clone()))?;
        self.open_version(v)
    }

    pub fn open_version(&self, version: u64) -> Result<Index, IndexError> {
        Index::open(&self.version_dir(version))
    }

    /// Opens a kept, published version (`UnknownVersion` otherwise).
    fn open_kept(&self, version: u64) -> Result<Index, IndexError> {
        if !self.versions()?.contains(&version) {
            return Err(IndexError::UnknownVersion(version));
        }
        self.open_version(version)
    }

    fn lock_file(&self) -> Result<File, IndexError> {
        fs::create_dir_all(&self.root).map_err(|e| IndexError::io(&self.root, e))?;
        let path = self.root.join(LOCK_FILE);
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| IndexError::io(&path, e))
    }

    pub(crate) fn lock(&self) -> Result<WriterLock, IndexError> {
        let f = self.lock_file()?;
        f.lock()
            .map_err(|e| IndexError::io(&self.root.join(LOCK_FILE), e))?;
        Ok(WriterLock(f))
    }

    /// The writer lock if free; `None` when taken, or when the root is read-only
    /// (a reader on a read-only mount then skips the clean-up).
    fn try_lock(&self) -> Result<Option<WriterLock>, IndexError> {
        if !self.root.is_dir() {
            return Ok(None);
        }
        let f = match self.lock_file() {
            Ok(f) => f,
            Err(IndexError::Io { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match f.try_lock() {
            Ok(()) => Ok(Some(WriterLock(f))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(IndexError::io(&self.root.join(LOCK_FILE), e)),
        }
    }

    /// Removes what unfinished writers left (the caller holds the lock):
    /// temporary version directories, versions never published, a
    /// half-written `CURRENT`, mirror staging directories.
    fn remove_temporaries(&self) -> Result<(), IndexError> {
        // Without CURRENT nothing was ever published — or CURRENT was lost:
        // then version directories are left for an operator to point it back.
        let published = match self.pointer()? {
            Some(_) => self.published_up_to()?,
            None => u64::MAX,
        };
        for v in self.version_dirs()? {
            if v > published {
                let p = self.version_dir(v);
                tracing::warn!(path = %p.display(), "removing a version that was never published");
                fs::remove_dir_all(&p).map_err(|e| IndexError::io(&p, e))?;
            }
        }
        let swept = [
            (self.root.join(VERSIONS_DIR), &[TMP_PREFIX, DEL_PREFIX][..]),
            (self.root.clone(), &[CURRENT_TMP_PREFIX, MIRROR_PREFIX][..]),
        ];
        for (dir, prefixes) in swept {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().into_owned();
                if prefixes.iter().any(|p| name.starts_with(p)) {
                    let p = e.path();
                    tracing::warn!(path = %p.display(), "removing the leftovers of an unfinished write");
                    let removed = if p.is_dir() {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                    removed.map_err(|e| IndexError::io(&p, e))?;
                }
            }
        }
        Ok(())
    }

    /// Builds a new version with `build` (which writes its data files into the
    /// directory it is given and returns the manifest), then publishes it.
    pub fn publish(
        &self,
        build: impl FnOnce(&Path) -> Result<Manifest, IndexError>,
    ) -> Result<Manifest, IndexError> {
        let lock = self.lock()?;
        self.publish_locked(&lock, build)
    }

    /// `publish` for a caller that already holds the writer lock.
    pub(crate) fn publish_locked(
        &self,
        _lock: &WriterLock,
        build: impl FnOnce(&Path) -> Result<Manifest, IndexError>,
    ) -> Result<Manifest, IndexError> {
        self.remove_temporaries()?;
        let versions_dir = self.root.join(VERSIONS_DIR);
        fs::create_dir_all(&versions_dir).map_err(|e| IndexError::io(&versions_dir, e))?;
        let next = self.published_up_to()? + 1;
        let tmp = versions_dir.join(format!("{TMP_PREFIX}v{next:08}-{}", std::process::id()));
        fs::create_dir(&tmp).map_err(|e| IndexError::io(&tmp, e))?;
        let result = self.fill_and_publish(&tmp, next, build);
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    fn fill_and_publish(
        &self,
        tmp: &Path,
        version: u64,
        build: impl FnOnce(&Path) -> Result<Manifest, IndexError>,
    ) -> Result<Manifest, IndexError> {
        let mut manifest = build(tmp)?;
        failpoint("after-data");
        manifest.catalog_version = version;
        let t0 = Instant::now();
        manifest.files = describe_files(tmp)?;
        tracing::debug!(
            ms = t0.elapsed().as_millis() as u64,
            "checksummed the version's files"
        );
        let json = manifest.to_bytes();
        let path = tmp.join(MANIFEST_FILE);
        fs::write(&path, json)
            .and_then(|_| File::open(&path)?.sync_all())
            .map_err(|e| IndexError::io(&path, e))?;
        make_read_only(tmp)?;
        self.install(tmp, version)?;
        Ok(manifest)
    }

    /// Publishes a version copied from another store — its files and manifest
    /// as they were, under the same version number — from `staged` (a
    /// directory on the same filesystem, moved into place). The copy is opened
    /// and fully verified first; a version already published here is served
    /// as it is (an unpublished leftover of that number is replaced).
    pub fn publish_copy(&self, staged: &Path, version: u64) -> Result<(), IndexError> {
        let lock = self.lock()?;
        self.publish_copy_locked(&lock, staged, version)
    }

    /// `publish_copy` for a caller that already holds the writer lock (a
    /// mirror holds it while it stages, so that nobody sweeps its staging).
    pub(crate) fn publish_copy_locked(
        &self,
        _lock: &WriterLock,
        staged: &Path,
        version: u64,
    ) -> Result<(), IndexError> {
        if self.versions()?.contains(&version) {
            // Published here already (a race with another copy): serve that one.
            let _ = fs::remove_dir_all(staged);
            return self.switch_locked(version);
        }
        let found = Index::open(staged)?.version();
        if found != version {
            return Err(IndexError::corrupt(
                &staged.join(MANIFEST_FILE),
                format!("holds version {found}, expected {version}"),
            ));
        }
        for entry in fs::read_dir(staged).map_err(|e| IndexError::io(staged, e))? {
            let path = entry.map_err(|e| IndexError::io(staged, e))?.path();
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| IndexError::io(&path, e))?;
        }
        make_read_only(staged)?;
        let versions_dir = self.root.join(VERSIONS_DIR);
        fs::create_dir_all(&versions_dir).map_err(|e| IndexError::io(&versions_dir, e))?;
        let tmp = versions_dir.join(format!("{TMP_PREFIX}v{version:08}-{}", std::process::id()));
        fs::rename(staged, &tmp).map_err(|e| IndexError::io(&tmp, e))?;
        let result = self.install(&tmp, version);
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Moves a complete, synced version directory into place and points
    /// `CURRENT` at it (the caller holds the writer lock). If the caller
    /// cancelled or `CURRENT` cannot be written, the version is removed
    /// again — and if even that fails, it stays above `published-up-to`:
    /// garbage, never listed or served.
    fn install(&self, tmp: &Path, version: u64) -> Result<(), IndexError> {
        sync_dir(tmp)?;
        failpoint("before-rename");
        let dst = self.version_dir(version);
        if dst.exists() && version > self.published_up_to()? {
            // Never published (a crash after the rename): replace it.
            fs::remove_dir_all(&dst).map_err(|e| IndexError::io(&dst, e))?;
        }
        fs::rename(tmp, &dst).map_err(|e| IndexError::io(&dst, e))?;
        sync_dir(&self.root.join(VERSIONS_DIR))?;
        failpoint("before-current");
        let published = self.published_up_to()?.max(version);
        let committed = if self.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            Err(IndexError::Cancelled)
        } else {
            self.write_pointer(Pointer {
                current: version,
                published: Some(published),
            })
        };
        if let Err(e) = committed {
            if !self.versions()?.contains(&version) {
                self.retire(version);
            }
            return Err(e);
        }
        failpoint("after-current");
        // Published: what follows must not turn success into an error (a retry
        // would publish twice), so it is only logged.
        if let Err(e) = sync_dir(&self.root) {
            tracing::warn!(error = %e, "syncing the index root after publishing");
        }
        if let Err(e) = self.apply_retention(version) {
            tracing::warn!(error = %e, "removing old index versions");
        }
        Ok(())
    }

    /// Replaces `CURRENT` atomically: the commit point of every publish.
    fn write_pointer(&self, pointer: Pointer) -> Result<(), IndexError> {
        let path = self.root.join(CURRENT_FILE);
        failpoint_error("current-write-error", &path)?;
        crate::fsx::write_atomic(&path, |w| w.write_all(pointer.text().as_bytes()))?;
        Ok(())
    }

    /// Removes an unpublished version directory (best effort: one left
    /// behind is above `published-up-to`, so never served, and swept later).
    fn retire(&self, version: u64) {
        let dir = self.version_dir(version);
        let gone = self
            .root
            .join(VERSIONS_DIR)
            .join(format!("{DEL_PREFIX}v{version:08}-{}", std::process::id()));
        if let Err(e) = fs::rename(&dir, &gone).and_then(|_| fs::remove_dir_all(&gone)) {
            tracing::warn!(path = %dir.display(), error = %e, "could not remove an unpublished version");
        }
    }

    /// Points `CURRENT` back at a kept version after verifying it.
    pub fn rollback(&self, version: u64) -> Result<(), IndexError> {
        self.switch_to(version)
    }

    /// Points `CURRENT` at a kept version, older or newer, after verifying
    /// it (a mirror follows its source's swaps this way).
    pub fn switch_to(&self, version: u64) -> Result<(), IndexError> {
        let _lock = self.lock()?;
        self.switch_locked(version)
    }

    fn switch_locked(&self, version: u64) -> Result<(), IndexError> {
        self.open_kept(version)?;
        let published = self.published_up_to()?;
        if self.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return Err(IndexError::Cancelled);
        }
        self.write_pointer(Pointer {
            current: version,
            published: Some(published),
        })?;
        sync_dir(&self.root)
    }

    /// Deletes versions older than the newest `keep`, never `current`.
    fn apply_retention(&self, current: u64) -> Result<(), IndexError> {
        let versions = self.versions()?;
        let cut = versions.len().saturating_sub(self.keep);
        for &v in &versions[..cut] {
            if v != current {
                // Retire by rename first, so a crash mid-delete leaves no half version;
                // readers that mapped these files keep them alive until they unmap.
                let dir = self.version_dir(v);
                let gone = self
                    .root
                    .join(VERSIONS_DIR)
                    .join(format!("{DEL_PREFIX}v{v:08}-{}", std::process::id()));
                fs::rename(&dir, &gone).map_err(|e| IndexError::io(&dir, e))?;
                fs::remove_dir_all(&gone).map_err(|e| IndexError::io(&gone, e))?;
            }
        }
        Ok(())
    }
}

/// Makes every file of a version directory read-only (0444): published
/// files never change, and the service's own user cannot truncate them.
fn make_read_only(dir: &Path) -> Result<(), IndexError> {
    use std::os::unix::fs::PermissionsExt;
    for e in fs::read_dir(dir).map_err(|e| IndexError::io(dir, e))? {
        let path = e.map_err(|e| IndexError::io(dir, e))?.path();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o444))
            .map_err(|e| IndexError::io(&path, e))?;
    }
    Ok(())
}

/// Copies a file and syncs the copy.
pub(crate) fn copy_synced(src: &Path, dst: &Path) -> Result<(), IndexError> {
    fs::copy(src, dst)
        .and_then(|_| File::open(dst)?.sync_all())
        .map_err(|e| IndexError::io(dst, e))
}

/// Sizes and checksums of the files in a version directory.
fn describe_files(dir: &Path) -> Result<Vec<FileEntry>, IndexError> {
    let mut files = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| IndexError::io(dir, e))? {
        let e = e.map_err(|e| IndexError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name == MANIFEST_FILE {
            continue;
        }
        let bytes = fs::read(e.path()).map_err(|err| IndexError::io(&e.path(), err))?;
        files.push(FileEntry {
            name,
            bytes: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Writes the data files of a version from `(SID, item)` pairs already sorted.
pub(crate) fn write_version_files(
    dir: &Path,
    format_version: u32,
    sorted: impl Iterator<Item = (Vec<TokenId>, String)>,
) -> Result<BuildCounts, IndexError> {
    write_version_with(dir, format_version, |b| {
        sorted
            .into_iter()
            .try_for_each(|(sid, id)| b.push(&sid, &id))
    })
}

/// Writes the data files of a version; `fill` pushes the pairs in sorted order.
fn write_version_with(
    dir: &Path,
    format_version: u32,
    fill: impl FnOnce(&mut IndexBuilder) -> Result<(), IndexError>,
) -> Result<BuildCounts, IndexError> {
    let t0 = Instant::now();
    let mut builder = IndexBuilder::new(dir, format_version)?;
    fill(&mut builder)?;
    failpoint("mid-build");
    let t1 = Instant::now();
    let counts = builder.finish(dir)?;
    tracing::debug!(
        stream_ms = (t1 - t0).as_millis() as u64,
        finish_ms = t1.elapsed().as_millis() as u64,
        "version files written"
    );
    Ok(counts)
}

/// Builds and publishes a version from pairs that `fill` pushes in
/// `(SID, item id)` order — the streaming path for catalogs too large to
/// hold as a table. `template` carries the layout, rule, layer counts and
/// format version.
pub fn build_sorted(
    store: &IndexStore,
    template: Manifest,
    fill: impl FnOnce(&mut IndexBuilder) -> Result<(), IndexError>,
) -> Result<BuildSummary, IndexError> {
    let t0 = Instant::now();
    let format = template.format_version;
    let manifest =
        store.publish(|dir| Ok(template.with_counts(write_version_with(dir, format, fill)?)))?;
    Ok(BuildSummary::of(&manifest, t0))
}

impl BuildSummary {
    pub(crate) fn of(m: &Manifest, started: Instant) -> Self {
        Self {
            version: m.catalog_version,
            sids: m.sids,
            items: m.items,
            nodes: m.nodes,
            bytes: m.bytes(),
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// Checks that stored codebooks made SIDs of `layout`: one codebook per
/// quantizer layer, each of the layer's size (updates encode with them).
fn check_codebooks(path: &Path, layout: &crate::sid::Layout) -> Result<(), IndexError> {
    let rq = crate::quantize::ResidualQuantizer::load(path)?;
    let sizes = rq.codebook_sizes();
    if sizes != layout.codebook_sizes() {
        return Err(IndexError::Input(format!(
            "{}: codebooks of sizes {sizes:?} do not fit the SIDs' layout {:?}",
            path.display(),
            layout.codebook_sizes()
        )));
    }
    Ok(())
}

/// Builds and publishes a version from a SID table (any order), optionally
/// storing the codebooks that made it.
pub fn build_from_table(
    store: &IndexStore,
    table: &SidTable,
    source: &str,
    codebooks: Option<&Path>,
) -> Result<BuildSummary, IndexError> {
    let t0 = Instant::now();
    let sorted = super::sorted::SortedTable::new(table)?;
    tracing::debug!(sort_ms = t0.elapsed().as_millis() as u64, "table sorted");
    let sids = SortedSids {
        header: table.header(),
        layer_counts: table.layer_counts(),
        sorted: &sorted,
    };
    publish_sorted(store, sids, source, codebooks, t0)
}

/// Builds and publishes a version from the SID file at `path` (as
/// [`SidTable::read`] reads it), optionally storing the codebooks that made
/// it. A file of integer item ids goes straight into sort records.
pub fn build_from_sid_file(
    store: &IndexStore,
    path: &Path,
    source: &str,
    codebooks: Option<&Path>,
) -> Result<BuildSummary, IndexError> {
    let t0 = Instant::now();
    let bytes = crate::sid::read_bytes(path)?;
    let Some(read) = super::integer_file::read(&bytes, path)? else {
        let table = SidTable::parse_bytes(&bytes, path)?;
        drop(bytes);
        return build_from_table(store, &table, source, codebooks);
    };
    drop(bytes);
    let sids = SortedSids {
        header: &read.header,
        layer_counts: read.layer_counts,
        sorted: &read.sorted,
    };
    publish_sorted(store, sids, source, codebooks, t0)
}

/// Items in build order, with what the manifest records of them.
struct SortedSids<'a> {
    header: &'a crate::sid::SidHeader,
    layer_counts: Vec<Vec<u64>>,
    sorted: &'a super::sorted::SortedTable<'a>,
}

fn publish_sorted(
    store: &IndexStore,
    sids: SortedSids<'_>,
    source: &str,
    codebooks: Option<&Path>,
    t0: Instant,
) -> Result<BuildSummary, IndexError> {
    let layout = sids.header.layout();
    let mut template = Manifest::new(&layout, sids.header.collisions);
    template.source = source.to_owned();
    template.mitigation = sids.header.mitigation.clone();
    template.method = sids.header.method.clone();
    template.layer_counts = sids.layer_counts;
    let manifest = store.publish(|dir| {
        let counts = write_version_with(dir, store.format_version, |b| sids.sorted.push_into(b))?;
        if let Some(src) = codebooks {
            check_codebooks(src, &layout)?;
            copy_synced(src, &dir.join(CODEBOOKS_FILE))?;
            template.has_codebooks = true;
            template.encode_beam = QuantizerMeta::beside(src)
                .map(|q| q.beam.clamp(1, super::manifest::MAX_ENCODE_BEAM));
        }
        Ok(template.with_counts(counts))
    })?;
    Ok(BuildSummary::of(&manifest, t0))
}

/// Publishes the current version again in `format_version` (`sidx index
/// migrate`): the same SIDs, items, codebooks and provenance, as a new
/// version; `None` when it is already in that format (nothing published).
pub fn migrate(
    store: &IndexStore,
    format_version: u32,
) -> Result<Option<BuildSummary>, IndexError> {
    let t0 = Instant::now();
    let lock = store.lock()?;
    let old = store.open_current_locked(&lock)?;
    if old.format_version() == format_version {
        return Ok(None);
    }
    let old_manifest = old.manifest().clone();
    let manifest = store.publish_locked(&lock, |dir| {
        let entries = old.entries().map(|(sid, id)| (sid, id.into_owned()));
        let counts = write_version_files(dir, format_version, entries)?;
        if old_manifest.has_codebooks {
            copy_synced(&old.dir().join(CODEBOOKS_FILE), &dir.join(CODEBOOKS_FILE))?;
        }
        let mut m = old_manifest.clone().with_counts(counts);
        m.source = format!(
            "{} (v{:08} migrated from format {} to {format_version})",
            old_manifest.source, old_manifest.catalog_version, old_manifest.format_version
        );
        Ok(m)
    })?;
    Ok(Some(BuildSummary::of(&manifest, t0)))
}
