//! `manifest.json`: what a version holds and how it was made — enough to
//! check its files on open and to apply catalog updates the same way.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::IndexError;
use crate::sid::{CollisionMode, Layout, MitigationRule};

pub const MANIFEST_FILE: &str = "manifest.json";
const FORMAT: &str = "sidx-index";
/// The format version new builds are written in: format 2, five times
/// smaller than format 1 (≤ 8 bytes per SID with integer ids), built and
/// updated faster, its beam steps level with format 1's (BENCHMARKS.md).
pub const DEFAULT_FORMAT_VERSION: u32 = super::v2::VERSION;

/// One file of a version, with the size it must have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub crc32c: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// Monotonic version number of the catalog this index serves.
    pub catalog_version: u64,
    pub created_unix: u64,
    /// Where the SIDs came from (a path, or `update of vN`).
    pub source: String,
    pub codebook_sizes: Vec<u32>,
    pub collisions: CollisionMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mitigation: Option<MitigationRule>,
    /// The quantization method of the SIDs, from their file's header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Whether `codebooks.npy` is stored, so updates may bring embeddings.
    pub has_codebooks: bool,
    /// The beam width the catalog was encoded with (from the `quantizer.json`
    /// beside the codebooks at build time); updates by embedding use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encode_beam: Option<usize>,
    pub sids: u64,
    pub items: u64,
    pub nodes: u64,
    /// Items per code of each quantizer layer (`layer_counts[l - 1][code]`).
    pub layer_counts: Vec<Vec<u64>>,
    pub files: Vec<FileEntry>,
    /// CRC32C of this manifest's pretty JSON with `checksum` set to 0.
    #[serde(default)]
    pub checksum: u32,
}

/// The widest encoding beam a manifest may record (updates by embedding
/// run it per request).
pub const MAX_ENCODE_BEAM: usize = 256;

impl Manifest {
    pub fn new(layout: &Layout, collisions: CollisionMode) -> Self {
        Self {
            format: FORMAT.into(),
            format_version: DEFAULT_FORMAT_VERSION,
            catalog_version: 0,
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            source: String::new(),
            codebook_sizes: layout.codebook_sizes().to_vec(),
            collisions,
            mitigation: None,
            method: None,
            has_codebooks: false,
            encode_beam: None,
            sids: 0,
            items: 0,
            nodes: 0,
            layer_counts: Vec::new(),
            files: Vec::new(),
            checksum: 0,
        }
    }

    pub fn layout(&self) -> Layout {
        Layout::new(self.codebook_sizes.clone()).expect("checked when read")
    }

    /// Reads and checks `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self, IndexError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => IndexError::corrupt(&path, "missing"),
            _ => IndexError::io(&path, e),
        })?;
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| IndexError::corrupt(&path, format!("unreadable manifest: {e}")))?;
        if m.format != FORMAT {
            return Err(IndexError::corrupt(
                &path,
                format!("format {:?}, expected {FORMAT:?}", m.format),
            ));
        }
        if !super::format::VERSIONS.contains(&m.format_version) {
            return Err(IndexError::corrupt(
                &path,
                format!(
                    "format version {}, this build reads versions {:?}",
                    m.format_version,
                    super::format::VERSIONS
                ),
            ));
        }
        let mut zeroed = m.clone();
        zeroed.checksum = 0;
        if crc32c::crc32c(&serde_json::to_vec_pretty(&zeroed).expect("serializes")) != m.checksum {
            return Err(IndexError::corrupt(
                &path,
                "checksum mismatch (edited or corrupt)",
            ));
        }
        m.check_file_names(dir)?;
        let layout = Layout::new(m.codebook_sizes.clone())
            .map_err(|e| IndexError::corrupt(&path, e.to_string()))?;
        super::check_layout(&layout).map_err(|e| IndexError::corrupt(&path, e.to_string()))?;
        if let Some(beam) = m.encode_beam
            && !(1..=MAX_ENCODE_BEAM).contains(&beam)
        {
            return Err(IndexError::corrupt(
                &path,
                format!("encode_beam {beam} is outside 1..={MAX_ENCODE_BEAM}"),
            ));
        }
        Ok(m)
    }

    /// Every listed file must be a regular file of the version directory
    /// itself: a name such as `/dev/zero` or `../CURRENT` would otherwise be
    /// read, checksummed or streamed to a mirror wherever it points.
    fn check_file_names(&self, dir: &Path) -> Result<(), IndexError> {
        for f in &self.files {
            if f.name.is_empty() || f.name.starts_with('.') || f.name.contains(['/', '\\', '\0']) {
                return Err(IndexError::corrupt(
                    &dir.join(MANIFEST_FILE),
                    format!(
                        "file name {:?} is not a plain name in the version directory",
                        f.name
                    ),
                ));
            }
            let path = dir.join(&f.name);
            if std::fs::metadata(&path).is_ok_and(|m| !m.is_file()) {
                return Err(IndexError::corrupt(&path, "not a regular file"));
            }
        }
        Ok(())
    }

    /// This manifest with the counts (and format) of a finished build.
    pub fn with_counts(self, counts: super::BuildCounts) -> Self {
        Self {
            format_version: counts.format_version,
            sids: counts.sids,
            items: counts.items,
            nodes: counts.nodes,
            ..self
        }
    }

    /// The manifest's bytes, checksum included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut m = self.clone();
        m.checksum = 0;
        m.checksum = crc32c::crc32c(&serde_json::to_vec_pretty(&m).expect("manifest serializes"));
        serde_json::to_vec_pretty(&m).expect("manifest serializes")
    }

    /// Checks that every listed file exists with its recorded size (O(1) per file).
    pub fn check_sizes(&self, dir: &Path) -> Result<(), IndexError> {
        for f in &self.files {
            let path = dir.join(&f.name);
            let len = std::fs::metadata(&path)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => IndexError::corrupt(&path, "missing"),
                    _ => IndexError::io(&path, e),
                })?
                .len();
            if len != f.bytes {
                return Err(IndexError::corrupt(
                    &path,
                    format!(
                        "{len} bytes, the manifest records {} (truncated or replaced)",
                        f.bytes
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn entry(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Total bytes of the version's files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}
