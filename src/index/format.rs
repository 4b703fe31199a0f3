//! `trie.bin`: the decoding trie and the item table, flat little-endian
//! arrays behind a checksummed header, read in place from a memory map.
//! This is format version 1; version 2 (same header, compact sections) is
//! in [`super::v2`].
//!
//! ```text
//! header (64 bytes)
//!   magic "SIDXTRIE", format version u32, flags u32,
//!   nodes u64, sids u64, items u64, id_bytes u64, depth u32, reserved u32,
//!   body CRC32C u32, header CRC32C u32 (of the 56 bytes before it)
//! body, each section 8-byte aligned (zero padding):
//!   level_sid_start  u64[depth + 2]  first SID ordinal of each SID length 0..=depth(+end)
//!   first_child      u32[nodes + 1]  children of node n are nodes first_child[n]..first_child[n+1]
//!   node_token       u16[nodes]      token id on the edge into node n (root: 0)
//!   terminal_words   u64[W]          bit n: node n ends a SID (W = ceil(nodes / 64))
//!   terminal_rank    u32[W + 1]      terminal nodes before word w
//!   sid_item_start   u32[sids + 1]   items of SID s are item ordinals sid_item_start[s]..[s+1]
//!                                    (empty with flag ONE_ITEM_PER_SID: SID s holds item s)
//!   id_offsets       u32[items + 1]  item ordinal i's id is id_bytes[id_offsets[i]..[i+1]]
//!   id_bytes         u8[id_bytes]
//! ```
//!
//! Nodes are numbered breadth-first, children in token order, so a node's
//! children are one contiguous slice; SID ordinals follow node order (by SID
//! length, then lexicographically).

use std::io::{self, Write};

/// File magic.
pub const MAGIC: &[u8; 8] = b"SIDXTRIE";
/// Format version of this module's layout.
pub const VERSION: u32 = 1;
/// Format versions this build reads.
pub const VERSIONS: [u32; 2] = [VERSION, super::v2::VERSION];
pub const HEADER_LEN: usize = 64;
/// Header flag: every SID holds exactly one item, and `sid_item_start` is omitted.
pub const ONE_ITEM_PER_SID: u32 = 1;

/// Counts in the header, from which every section's size follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub nodes: u64,
    pub sids: u64,
    pub items: u64,
    pub id_bytes: u64,
    pub depth: u32,
    pub flags: u32,
}

/// Byte ranges of the sections in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sections {
    pub level_sid_start: (usize, usize),
    pub first_child: (usize, usize),
    pub node_token: (usize, usize),
    pub terminal_words: (usize, usize),
    pub terminal_rank: (usize, usize),
    pub sid_item_start: (usize, usize),
    pub id_offsets: (usize, usize),
    pub id_bytes: (usize, usize),
    pub file_len: usize,
}

fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

fn checked_pad8(n: usize) -> Option<usize> {
    n.div_ceil(8).checked_mul(8)
}

impl Counts {
    pub fn one_item_per_sid(&self) -> bool {
        self.flags & ONE_ITEM_PER_SID != 0
    }

    pub fn words(&self) -> usize {
        (self.nodes as usize).div_ceil(64)
    }

    /// Section layout, or `None` when the counts overflow the address space.
    pub fn sections(&self) -> Option<Sections> {
        let mut c = SectionCursor::new();
        let w = self.words() as u64;
        Some(Sections {
            level_sid_start: c.array(u64::from(self.depth) + 2, 8)?,
            first_child: c.array(self.nodes.checked_add(1)?, 4)?,
            node_token: c.array(self.nodes, 2)?,
            terminal_words: c.array(w, 8)?,
            terminal_rank: c.array(w + 1, 4)?,
            sid_item_start: c.array(
                if self.one_item_per_sid() {
                    0
                } else {
                    self.sids.checked_add(1)?
                },
                4,
            )?,
            id_offsets: c.array(self.items.checked_add(1)?, 4)?,
            id_bytes: c.array(self.id_bytes, 1)?,
            file_len: c.end(),
        })
    }
}

/// Encodes the header of format `version` for `counts` and a body checksum.
pub fn header(version: u32, counts: &Counts, body_crc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[12..16].copy_from_slice(&counts.flags.to_le_bytes());
    h[16..24].copy_from_slice(&counts.nodes.to_le_bytes());
    h[24..32].copy_from_slice(&counts.sids.to_le_bytes());
    h[32..40].copy_from_slice(&counts.items.to_le_bytes());
    h[40..48].copy_from_slice(&counts.id_bytes.to_le_bytes());
    h[48..52].copy_from_slice(&counts.depth.to_le_bytes());
    h[56..60].copy_from_slice(&body_crc.to_le_bytes());
    let crc = crc32c::crc32c(&h[..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A decoded header: format version, counts and the body checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub counts: Counts,
    pub body_crc: u32,
}

/// Decodes and checks a header: magic, version, header checksum, flags.
pub fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes is shorter than the {HEADER_LEN}-byte header (truncated or empty)",
            bytes.len()
        ));
    }
    if &bytes[0..8] != MAGIC {
        return Err("bad magic: not a sidx trie file".into());
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    let version = u32_at(8);
    if !VERSIONS.contains(&version) {
        return Err(format!(
            "format version {version}, this build reads versions {VERSIONS:?}"
        ));
    }
    if crc32c::crc32c(&bytes[..60]) != u32_at(60) {
        return Err("header checksum mismatch (corrupt header)".into());
    }
    let counts = Counts {
        nodes: u64_at(16),
        sids: u64_at(24),
        items: u64_at(32),
        id_bytes: u64_at(40),
        depth: u32_at(48),
        flags: u32_at(12),
    };
    let known = if version == VERSION {
        ONE_ITEM_PER_SID
    } else {
        super::v2::FLAGS
    };
    if counts.flags & !known != 0 {
        return Err(format!("unknown flags {:#x}", counts.flags));
    }
    Ok(Header {
        version,
        counts,
        body_crc: u32_at(56),
    })
}

/// The arrays of a trie file, in memory, ready to be written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrieArrays {
    pub sids: u64,
    pub flags: u32,
    pub level_sid_start: Vec<u64>,
    pub first_child: Vec<u32>,
    pub node_token: Vec<u16>,
    pub terminal_words: Vec<u64>,
    pub terminal_rank: Vec<u32>,
    pub sid_item_start: Vec<u32>,
    pub id_offsets: Vec<u32>,
    pub id_bytes: Vec<u8>,
}

impl TrieArrays {
    pub fn counts(&self) -> Counts {
        Counts {
            nodes: self.node_token.len() as u64,
            sids: self.sids,
            items: self.id_offsets.len().saturating_sub(1) as u64,
            id_bytes: self.id_bytes.len() as u64,
            depth: self.level_sid_start.len().saturating_sub(2) as u32,
            flags: self.flags,
        }
    }

    /// Writes header and body; returns the bytes written.
    pub fn write_to(&self, w: &mut dyn Write) -> io::Result<u64> {
        let sections: [Vec<&[u8]>; 8] = [
            vec![bytemuck::cast_slice(&self.level_sid_start)],
            vec![bytemuck::cast_slice(&self.first_child)],
            vec![bytemuck::cast_slice(&self.node_token)],
            vec![bytemuck::cast_slice(&self.terminal_words)],
            vec![bytemuck::cast_slice(&self.terminal_rank)],
            vec![bytemuck::cast_slice(&self.sid_item_start)],
            vec![bytemuck::cast_slice(&self.id_offsets)],
            vec![&self.id_bytes],
        ];
        write_file(w, VERSION, &self.counts(), &sections)
    }
}

/// Writes a header and its body of 8-byte aligned sections, each given as
/// the pieces it is made of; returns the bytes written.
pub(super) fn write_file(
    w: &mut dyn Write,
    version: u32,
    counts: &Counts,
    sections: &[Vec<&[u8]>],
) -> io::Result<u64> {
    let zeros = [0u8; 8];
    let len = |s: &[&[u8]]| s.iter().map(|p| p.len()).sum::<usize>();
    let mut crc = 0u32;
    for s in sections {
        for piece in s {
            crc = crc32c::crc32c_append(crc, piece);
        }
        crc = crc32c::crc32c_append(crc, &zeros[..pad8(len(s)) - len(s)]);
    }
    w.write_all(&header(version, counts, crc))?;
    let mut total = HEADER_LEN as u64;
    for s in sections {
        for piece in s {
            w.write_all(piece)?;
        }
        w.write_all(&zeros[..pad8(len(s)) - len(s)])?;
        total += pad8(len(s)) as u64;
    }
    Ok(total)
}

/// Checks the children of node `n` (its own layer `own`, 0 for the root):
/// strictly ascending tokens, each of a later layer than `own`.
pub(super) fn check_children(
    n: usize,
    own: u8,
    kids: &[u16],
    layer: &impl Fn(u16) -> u8,
) -> Result<(), String> {
    if kids.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("children of node {n} are not strictly ascending"));
    }
    if let Some(&bad) = kids.iter().find(|&&t| layer(t) <= own) {
        return Err(format!(
            "node {n} (layer {own}) has a child token id {bad} of layer {}: \
             tokens outside the layout's layer order",
            layer(bad)
        ));
    }
    Ok(())
}

/// Bytes that `ranges` take in a file, padding to 8 bytes included.
pub(super) fn padded_bytes(ranges: &[(usize, usize)]) -> u64 {
    ranges.iter().map(|(a, b)| pad8(b - a) as u64).sum()
}

/// Lays out consecutive 8-byte aligned sections after the header.
pub(super) struct SectionCursor(usize);

impl SectionCursor {
    pub fn new() -> Self {
        Self(HEADER_LEN)
    }

    /// The byte range of the next section of `len` bytes; `None` on overflow.
    pub fn next(&mut self, len: usize) -> Option<(usize, usize)> {
        let start = self.0;
        self.0 = self.0.checked_add(checked_pad8(len)?)?;
        Some((start, start + len))
    }

    /// The next section of `n` elements of `size` bytes.
    pub fn array(&mut self, n: u64, size: usize) -> Option<(usize, usize)> {
        self.next(usize::try_from(n).ok()?.checked_mul(size)?)
    }

    pub fn end(&self) -> usize {
        self.0
    }
}
