//! The SID index: immutable, versioned, memory-mapped files answering
//! valid-prefix queries and SID ↔ item lookups.
//!
//! A version directory holds `manifest.json` and `trie.bin`: the
//! breadth-first decoding trie and the item maps. Format version 2 (the
//! default, [`v2`]) is compact — LOUDS child ranges, integer item ids as
//! Elias–Fano, the item order as a permutation with shortcuts — and is the
//! only file. Version 1 ([`format`]) stored `u32` child ranges and string
//! ids, with `sids.fst` (SID key bytes → ordinal among the SIDs of that
//! length) and `items.fst` (item id → SID ordinal) beside it; it still
//! opens, and `sidx index migrate` converts it.

#[cfg(target_endian = "big")]
compile_error!("the index files are little-endian and read in place");

mod builder;
pub mod format;
mod integer_file;
mod manifest;
mod packed;
mod reader;
mod shortcuts;
mod sorted;
mod store;
mod update;
mod v1;
pub mod v2;
mod wide;

pub use builder::{BuildCounts, IndexBuilder};
pub use manifest::{DEFAULT_FORMAT_VERSION, FileEntry, Manifest};
pub use reader::{Children, Index, NextTokens, NodeId};
pub use store::{
    BuildSummary, CURRENT_FILE, CancelToken, IndexStore, MIRROR_PREFIX, VERSIONS_DIR,
    build_from_sid_file, build_from_table, build_sorted, migrate,
};
pub use update::{SidUpdate, UpdateSummary};

use std::path::{Path, PathBuf};

use crate::sid::{Layout, Token};

/// A layer-tagged token id as stored in the index (`Layout::token_id`).
pub type TokenId = u16;

/// Token ids of an index are below this: the quantizer tokens of every
/// layer plus the disambiguation codes must fit 16 bits.
pub const TOKEN_ID_LIMIT: u32 = TokenId::MAX as u32 + 1;

/// Checks that a layout's tokens fit an index (Σ codebook sizes < 65536,
/// leaving at least one disambiguation code).
pub fn check_layout(layout: &Layout) -> Result<(), IndexError> {
    let vocab = layout.quantizer_vocab();
    if vocab >= TOKEN_ID_LIMIT {
        return Err(IndexError::Input(format!(
            "codebook sizes {:?} sum to {vocab} tokens; an index holds at most {} \
             (16-bit token ids, disambiguation codes included)",
            layout.codebook_sizes(),
            TOKEN_ID_LIMIT - 1
        )));
    }
    Ok(())
}

/// The index token id of `token`: it must fit the layout and 16 bits.
pub fn token_id(layout: &Layout, token: Token) -> Result<TokenId, String> {
    let id = layout.token_id(token)?;
    TokenId::try_from(id).map_err(|_| {
        format!(
            "token {token}: disambiguation code {} is beyond this index's limit of {} \
             (token ids are 16-bit; the codebooks take {})",
            token.code,
            TOKEN_ID_LIMIT - layout.quantizer_vocab(),
            layout.quantizer_vocab()
        )
    })
}

/// Errors of building, opening and querying indexes.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A file is missing, truncated, corrupt or of another format version.
    #[error("{path}: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    /// An FST file fails its checks.
    #[error("{path}: {source}")]
    Fst {
        path: PathBuf,
        #[source]
        source: fst::raw::Error,
    },
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
    /// An item named by an update (a delete) is not in the index.
    #[error("{field}: unknown item id {id:?}")]
    UnknownItem { field: String, id: String },
    /// An explicit SID of an update is held by another item.
    #[error("{field}: SID {sid} is already held by item {holder:?}")]
    SidTaken {
        field: String,
        sid: String,
        holder: String,
    },
    /// A version that is not kept (or was never published) in this root.
    #[error("version {0} is not kept in this index root")]
    UnknownVersion(u64),
    #[error("no index version is published in {0}")]
    NoVersion(PathBuf),
    /// The caller went away before the new version was published: nothing changed.
    #[error("cancelled before publishing: nothing was changed")]
    Cancelled,
    /// A failure of sidx itself (a worker thread that stopped), not of the input.
    #[error("internal error: {0}")]
    Internal(String),
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

    /// An FST that fails to open or verify: corrupt, with fst's reason kept.
    pub(crate) fn fst_read(path: &Path, e: fst::Error) -> Self {
        match e {
            fst::Error::Fst(source) => Self::Fst {
                path: path.to_owned(),
                source,
            },
            fst::Error::Io(source) => Self::io(path, source),
        }
    }

    /// An FST that fails while being written: I/O, or a bug of ours (keys out of order).
    pub(crate) fn fst_write(path: &Path, e: fst::Error) -> Self {
        match e {
            fst::Error::Io(source) => Self::io(path, source),
            fst::Error::Fst(e) => Self::Internal(format!("writing {}: {e}", path.display())),
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
