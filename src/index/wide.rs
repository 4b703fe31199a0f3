//! Bitmaps over the token ranges of wide nodes, built at open: a move from
//! a node with thousands of children (a level-1 node of a large catalog)
//! finds its child from one 16-byte block — which of 64 tokens are
//! children, and how many children come before them — where a binary
//! search among the node's token ids makes a chain of a dozen dependent
//! cache misses. Breadth-first order puts a SID trie's wide nodes among
//! its first nodes, so only those are scanned.

use super::{NodeId, TokenId};

/// Fewer children than this fit a couple of cache lines: searched.
const MIN_CHILDREN: usize = 64;
/// A node's range may span at most this many tokens per child (at most
/// 16 / 64 · 64 = 16 heap bytes per child).
const SPAN_PER_CHILD: usize = 64;
/// Nodes scanned at open (breadth-first from the root).
const SCAN_NODES: u64 = 1 << 20;
/// Blocks kept at most (64 MiB); wide nodes past them are searched.
const MAX_BLOCKS: usize = 1 << 22;

/// 64 tokens of a wide node's range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(16))]
struct Block {
    /// Bit `i` of block `b`: token `lo + 64·b + i` is a child.
    bits: u64,
    /// The node's children before this block.
    before: u32,
}

/// Where a wide node's blocks are.
#[derive(Clone, Copy, Debug, Default)]
struct Row {
    /// First block + 1; 0 for a node that is not wide.
    start: u32,
    /// The range's lowest token.
    lo: TokenId,
    blocks: u16,
}

/// The wide nodes among the first [`SCAN_NODES`] of a trie.
#[derive(Default)]
pub struct WideNodes {
    /// Per node up to the last wide one.
    rows: Vec<Row>,
    blocks: Vec<Block>,
}

/// The blocks of one wide node: its children by token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WideRow<'a> {
    blocks: &'a [Block],
    lo: TokenId,
}

impl WideNodes {
    /// Scans the first nodes of a trie of `nodes` nodes; `children(n)` gives
    /// the (verified, strictly ascending) child tokens of node `n`.
    pub fn build<'t>(nodes: u64, children: impl Fn(NodeId) -> &'t [TokenId]) -> Self {
        let mut w = Self::default();
        for n in 0..nodes.min(SCAN_NODES) as NodeId {
            let kids = children(n);
            let (Some(&lo), Some(&hi)) = (kids.first(), kids.last()) else {
                continue;
            };
            let span = usize::from(hi - lo) + 1;
            let blocks = span.div_ceil(64);
            if span == kids.len() // a full range: found by subtraction
                || kids.len() < MIN_CHILDREN
                || span > SPAN_PER_CHILD * kids.len()
                || w.blocks.len() + blocks > MAX_BLOCKS
            {
                continue;
            }
            w.rows.resize(n as usize, Row::default());
            w.rows.push(Row {
                start: w.blocks.len() as u32 + 1,
                lo,
                blocks: blocks as u16,
            });
            let first = w.blocks.len();
            w.blocks.resize(first + blocks, Block::default());
            let row = &mut w.blocks[first..];
            for &t in kids {
                let off = usize::from(t - lo);
                row[off / 64].bits |= 1 << (off % 64);
            }
            let mut before = 0u32;
            for b in row {
                b.before = before;
                before += b.bits.count_ones();
            }
        }
        w.rows.shrink_to_fit();
        w.blocks.shrink_to_fit();
        w
    }

    /// The blocks of `node`, if it is wide.
    #[inline]
    pub fn row(&self, node: NodeId) -> Option<WideRow<'_>> {
        let r = self.rows.get(node as usize)?;
        let start = (r.start as usize).checked_sub(1)?;
        Some(WideRow {
            blocks: &self.blocks[start..start + usize::from(r.blocks)],
            lo: r.lo,
        })
    }

    /// Wide nodes held.
    pub fn nodes(&self) -> usize {
        self.rows.iter().filter(|r| r.start != 0).count()
    }

    pub fn heap_bytes(&self) -> u64 {
        (self.rows.capacity() * size_of::<Row>() + self.blocks.capacity() * size_of::<Block>())
            as u64
    }
}

impl WideRow<'_> {
    /// The position of `token` among the node's children.
    #[inline]
    pub fn position(&self, token: TokenId) -> Option<usize> {
        let off = usize::from(token.checked_sub(self.lo)?);
        let b = self.blocks.get(off / 64)?;
        let bit = 1u64 << (off % 64);
        (b.bits & bit != 0).then(|| b.before as usize + (b.bits & (bit - 1)).count_ones() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Every token around every node's range is found exactly where it
    /// is among the children, for dense, sparse, full and gapped sets.
    #[test]
    fn positions_match_the_children() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut sets: Vec<Vec<TokenId>> = vec![
            vec![],
            vec![7],
            (100..4196).collect(),
            (0..4096).step_by(2).collect(),
            (0..200).chain((1000..1600).step_by(7)).collect(),
            (65000..=65535).step_by(3).collect(),
            (0..64).chain([600]).collect(),
            (0..4096).step_by(9).collect(),
        ];
        for density in [0.02, 0.13, 0.45, 0.9, 0.999] {
            for _ in 0..4 {
                let base = rng.random_range(0..8192u16);
                let len = rng.random_range(1..5000u16);
                sets.push(
                    (base..base + len)
                        .filter(|_| rng.random_bool(density))
                        .collect(),
                );
            }
        }
        let wide = WideNodes::build(sets.len() as u64, |n| &sets[n as usize]);
        let mut rows = 0;
        for (n, set) in sets.iter().enumerate() {
            let Some(row) = wide.row(n as NodeId) else {
                continue;
            };
            rows += 1;
            let (lo, hi) = (set[0], set[set.len() - 1]);
            for t in lo.saturating_sub(70)..=hi.saturating_add(70) {
                assert_eq!(
                    row.position(t),
                    set.iter().position(|&x| x == t),
                    "set {n}, token {t}"
                );
            }
        }
        // Which sets qualify: wide, not full, not too sparse.
        let want = sets
            .iter()
            .filter(|s| {
                let span = s.last().map_or(0, |&h| usize::from(h - s[0]) + 1);
                s.len() >= MIN_CHILDREN && span != s.len() && span <= SPAN_PER_CHILD * s.len()
            })
            .count();
        assert_eq!(rows, want);
        assert!(rows >= 10, "{rows} wide sets");
        assert!(wide.row(sets.len() as NodeId + 5).is_none());
    }
}
