//! The SID index: immutable, versioned, memory-mapped files answering
//! valid-prefix queries and SID ↔ item lookups.
//!
//! A version directory holds `sids.fst` (SID key bytes → ordinal among the
//! SIDs of that length; the key's length gives the length),
//! `items.fst` (item id → SID ordinal), `trie.bin` (the breadth-first
//! decoding trie and the item table, see [`format`]) and `manifest.json`.
//! SID keys are token ids as big-endian `u16`, so byte order is tuple order.

#[cfg(target_endian = "big")]
compile_error!("the index files are little-endian and read in place");

mod builder;
pub mod format;
mod manifest;
mod reader;
mod store;
mod update;

pub use builder::{BuildCounts, IndexBuilder};
pub use manifest::{FileEntry, Manifest};
pub use reader::{Index, NextTokens, NodeId};
pub use store::{
    BuildSummary, CURRENT_FILE, IndexHandle, IndexStore, VERSIONS_DIR, build_from_table,
    build_sorted,
};
pub use update::{CatalogUpdate, UpdateSummary};

use std::path::{Path, PathBuf};

/// A layer-tagged token id as stored in the index (`Layout::token_id`).
pub type TokenId = u16;

/// Errors of building, opening and querying indexes.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A file is missing, truncated, corrupt or of another format version.
    #[error("{path}: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bad build or update input.
    #[error("{0}")]
    Input(String),
    /// A query that cannot be answered as asked (unknown token, bad order…).
    #[error("{0}")]
    Query(String),
    #[error("no index version is published in {0}")]
    NoVersion(PathBuf),
    #[error(transparent)]
    Sid(#[from] crate::sid::SidError),
    #[error(transparent)]
    Quantize(#[from] crate::quantize::QuantizeError),
    #[error(transparent)]
    Fs(#[from] crate::fsx::FsError),
}

impl IndexError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn fst(path: &Path, e: fst::Error) -> Self {
        Self::Corrupt {
            path: path.to_owned(),
            msg: e.to_string(),
        }
    }

    pub(crate) fn corrupt(path: &Path, msg: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.to_owned(),
            msg: msg.into(),
        }
    }
}

/// Writes the key bytes of a SID (big-endian token ids) into `out`.
pub(crate) fn sid_key(sid: &[TokenId], out: &mut Vec<u8>) {
    out.clear();
    for t in sid {
        out.extend_from_slice(&t.to_be_bytes());
    }
}
