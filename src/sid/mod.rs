//! Semantic IDs: layer-tagged tokens, the layout of quantizer layers, and
//! tables of items with their (possibly variable-length) SIDs.
//!
//! A token is `(layer, code)` with 1-based layers. Layers `1..=L` come from the
//! residual quantizer; layer `L + 1` holds disambiguation tokens for items that
//! would otherwise share a SID. Token ids are layer-tagged —
//! `offset(layer) + code`, offsets being running sums of codebook sizes — so a
//! SID with layer 2 dropped, `(1:12, 3:7)`, never equals `(1:12, 2:7)`.

mod codes;
mod collisions;
mod file;
mod mitigation;

pub use collisions::{CollisionMode, CollisionStats, resolve_collisions, strip_disambiguation};
pub use file::{
    HEADER_PREFIX, ItemSink, Pieces, RisingIds, SidError, SidHeader, parse_pieces, parse_tokens,
    read_bytes,
};
pub use mitigation::{MitigationRule, Strategy};

use std::fmt;

/// Largest codebook of one quantizer layer.
pub const MAX_CODEBOOK_SIZE: u32 = 1 << 16;
/// Disambiguation codes are below this: at most this many items share one
/// set of quantizer tokens. (An index allows fewer: its token ids are 16-bit,
/// so codes stop at `65536 - Σ codebook sizes`.)
pub const MAX_DISAMBIGUATION_CODES: u32 = 1 << 16;
/// Most quantizer layers of a layout (layer `L + 1` must fit a `u8`).
pub const MAX_LAYERS: usize = 254;

/// One SID token: a code of a 1-based layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token {
    /// 1-based layer; `L + 1` is the disambiguation layer.
    pub layer: u8,
    /// Code within the layer's codebook.
    pub code: u32,
}

impl Token {
    pub const fn new(layer: u8, code: u32) -> Self {
        Self { layer, code }
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.layer, self.code)
    }
}

/// Writes a SID as space-separated `layer:code` tokens, the file format's form.
pub struct DisplaySid<'a>(pub &'a [Token]);

impl fmt::Display for DisplaySid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

/// The quantizer layers of a SID space: one codebook size per layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    codebook_sizes: Vec<u32>,
}

impl Layout {
    /// A layout of `codebook_sizes.len()` quantizer layers (1 to [`MAX_LAYERS`]),
    /// each codebook of 1 to [`MAX_CODEBOOK_SIZE`] codes.
    pub fn new(codebook_sizes: Vec<u32>) -> Result<Self, SidError> {
        if codebook_sizes.is_empty() || codebook_sizes.len() > MAX_LAYERS {
            return Err(SidError::Layout(format!(
                "a layout needs 1 to {MAX_LAYERS} layers, got {}",
                codebook_sizes.len()
            )));
        }
        if let Some((l, &m)) = codebook_sizes
            .iter()
            .enumerate()
            .find(|&(_, &m)| m == 0 || m > MAX_CODEBOOK_SIZE)
        {
            return Err(SidError::Layout(format!(
                "layer {} has codebook size {m} (must be 1..={MAX_CODEBOOK_SIZE})",
                l + 1
            )));
        }
        Ok(Self { codebook_sizes })
    }

    /// Number of quantizer layers `L` (the disambiguation layer not counted).
    pub fn layers(&self) -> usize {
        self.codebook_sizes.len()
    }

    /// Codebook sizes of layers `1..=L`.
    pub fn codebook_sizes(&self) -> &[u32] {
        &self.codebook_sizes
    }

    /// Codebook size of a 1-based quantizer layer; `None` for the disambiguation
    /// layer (open-ended) or a layer outside the layout.
    pub fn codebook_size(&self, layer: u8) -> Option<u32> {
        (layer as usize)
            .checked_sub(1)
            .and_then(|i| self.codebook_sizes.get(i).copied())
    }

    /// The 1-based layer that carries disambiguation tokens, `L + 1`.
    pub fn disambiguation_layer(&self) -> u8 {
        self.codebook_sizes.len() as u8 + 1
    }

    /// Layer-tagged token id, `offset(layer) + code`, of a token that fits
    /// the layout (checked; the bounds keep the sum far below `u32::MAX`).
    pub fn token_id(&self, token: Token) -> Result<u32, String> {
        self.check(token)?;
        let offset: u32 = self.codebook_sizes[..token.layer as usize - 1].iter().sum();
        Ok(offset + token.code)
    }

    /// Sum of the codebook sizes: the first disambiguation token id.
    pub fn quantizer_vocab(&self) -> u32 {
        self.codebook_sizes.iter().sum()
    }

    /// The token of a layer-tagged id (ids past the last codebook are disambiguation tokens).
    pub fn token(&self, id: u32) -> Token {
        let mut offset = 0;
        for (l, &m) in self.codebook_sizes.iter().enumerate() {
            if id < offset + m {
                return Token::new(l as u8 + 1, id - offset);
            }
            offset += m;
        }
        Token::new(self.disambiguation_layer(), id - offset)
    }

    /// Checks that a token fits the layout: a layer `1..=L + 1`, a code below
    /// its codebook's size (disambiguation codes below [`MAX_DISAMBIGUATION_CODES`]).
    pub fn check(&self, token: Token) -> Result<(), String> {
        if token.layer == 0 || token.layer > self.disambiguation_layer() {
            return Err(format!(
                "token {token}: layer must be 1..={} (layout has {} layers + disambiguation)",
                self.disambiguation_layer(),
                self.layers()
            ));
        }
        match self.codebook_size(token.layer) {
            Some(m) if token.code >= m => Err(format!(
                "token {token}: code {} is out of range for layer {} (codebook size {m})",
                token.code, token.layer
            )),
            None if token.code >= MAX_DISAMBIGUATION_CODES => Err(format!(
                "token {token}: disambiguation code {} is not below {MAX_DISAMBIGUATION_CODES}",
                token.code
            )),
            _ => Ok(()),
        }
    }
}

/// Items `0..n` whose `key`s hash alike, in groups of two or more, each
/// ascending — candidates for equal keys, found by a parallel sort of
/// hashes rather than a map of every key.
pub(crate) fn hash_groups<'a, K: std::hash::Hash + ?Sized + 'a>(
    n: usize,
    key: impl Fn(usize) -> &'a K + Sync,
) -> Vec<Vec<usize>> {
    use rayon::prelude::*;
    use std::hash::BuildHasher;
    let hasher = std::hash::RandomState::new();
    let mut keyed: Vec<(u64, usize)> = (0..n)
        .into_par_iter()
        .map(|i| (hasher.hash_one(key(i)), i))
        .collect();
    keyed.par_sort_unstable();
    keyed
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|g| g.len() > 1)
        .map(|g| g.iter().map(|&(_, i)| i).collect())
        .collect()
}

/// The item id as a canonical decimal `u64` (no sign, no leading zeros), if it is one.
pub fn integer_id(id: &[u8]) -> Option<u64> {
    if id.is_empty() || id.len() > 20 || (id[0] == b'0' && id.len() > 1) {
        return None;
    }
    id.iter().try_fold(0u64, |v, &b| {
        if b.is_ascii_digit() {
            v.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Items and their SIDs, stored flat (CSR): the tokens of item `i` are
/// `tokens[offsets[i]..offsets[i + 1]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SidTable {
    header: SidHeader,
    /// Item ids, concatenated: the id of item `i` is `id_text[id_offsets[i]..id_offsets[i + 1]]`.
    id_text: String,
    id_offsets: Vec<usize>,
    offsets: Vec<u32>,
    tokens: Vec<Token>,
}

impl SidTable {
    /// Item count of every code of every quantizer layer: `counts[l - 1][code]`.
    pub fn layer_counts(&self) -> Vec<Vec<u64>> {
        let layout = self.layout();
        let mut counts: Vec<Vec<u64>> = layout
            .codebook_sizes()
            .iter()
            .map(|&m| vec![0; m as usize])
            .collect();
        for (_, sid) in self.iter() {
            for t in sid.iter().filter(|t| (t.layer as usize) <= layout.layers()) {
                let c = &mut counts[t.layer as usize - 1];
                if c.len() <= t.code as usize {
                    c.resize(t.code as usize + 1, 0);
                }
                c[t.code as usize] += 1;
            }
        }
        counts
    }

    /// An empty table carrying `header`.
    pub fn new(header: SidHeader) -> Self {
        Self {
            header,
            id_text: String::new(),
            id_offsets: vec![0],
            offsets: vec![0],
            tokens: Vec::new(),
        }
    }

    /// Builds a table of fixed-length SIDs from quantizer codes (`codes[i * L + l]`).
    pub fn from_codes(header: SidHeader, ids: Vec<String>, codes: &[u32]) -> Self {
        let layers = header.layout().layers();
        assert_eq!(
            codes.len(),
            ids.len() * layers,
            "codes must be items × layers"
        );
        let tokens = codes
            .chunks_exact(layers)
            .flat_map(|row| {
                row.iter()
                    .enumerate()
                    .map(|(l, &c)| Token::new(l as u8 + 1, c))
            })
            .collect();
        let offsets = (0..=ids.len()).map(|i| (i * layers) as u32).collect();
        let mut id_offsets = Vec::with_capacity(ids.len() + 1);
        id_offsets.push(0);
        let mut id_text = String::new();
        for id in &ids {
            id_text.push_str(id);
            id_offsets.push(id_text.len());
        }
        Self {
            header,
            id_text,
            id_offsets,
            offsets,
            tokens,
        }
    }

    /// Appends one item; the caller guarantees tokens are layer-ordered and fit the layout.
    pub fn push(&mut self, id: impl AsRef<str>, sid: &[Token]) {
        self.id_text.push_str(id.as_ref());
        self.id_offsets.push(self.id_text.len());
        self.tokens.extend_from_slice(sid);
        self.offsets.push(self.tokens.len() as u32);
    }

    /// Appends every item of `other` (its header is not looked at).
    pub fn append(&mut self, other: &SidTable) {
        let (text, tokens) = (self.id_text.len(), self.tokens.len() as u32);
        self.id_text.push_str(&other.id_text);
        self.id_offsets
            .extend(other.id_offsets[1..].iter().map(|&o| o + text));
        self.tokens.extend_from_slice(&other.tokens);
        self.offsets
            .extend(other.offsets[1..].iter().map(|&o| o + tokens));
    }

    /// The items of `parts`, one after another (their headers are not
    /// looked at), copied in parallel.
    pub fn concat(header: SidHeader, parts: &[&SidTable]) -> Self {
        use rayon::prelude::*;
        let mut table = Self::new(header);
        let total = |f: fn(&SidTable) -> usize| parts.iter().map(|p| f(p)).sum::<usize>();
        let mut text = vec![0u8; total(|p| p.id_text.len())];
        table.id_offsets.resize(total(SidTable::len) + 1, 0);
        table
            .tokens
            .resize(total(|p| p.tokens.len()), Token::new(0, 0));
        table.offsets.resize(table.id_offsets.len(), 0);
        // Each part's share of every column, and where it starts.
        let mut jobs = Vec::with_capacity(parts.len());
        let (mut t, mut o, mut k, mut s) = (
            &mut text[..],
            &mut table.id_offsets[1..],
            &mut table.tokens[..],
            &mut table.offsets[1..],
        );
        let (mut text_at, mut tokens_at) = (0, 0);
        for p in parts {
            let (t1, t2) = std::mem::take(&mut t).split_at_mut(p.id_text.len());
            let (o1, o2) = std::mem::take(&mut o).split_at_mut(p.len());
            let (k1, k2) = std::mem::take(&mut k).split_at_mut(p.tokens.len());
            let (s1, s2) = std::mem::take(&mut s).split_at_mut(p.len());
            jobs.push((*p, t1, o1, k1, s1, text_at, tokens_at));
            (t, o, k, s) = (t2, o2, k2, s2);
            text_at += p.id_text.len();
            tokens_at += p.tokens.len() as u32;
        }
        jobs.into_par_iter().for_each(
            |(p, text, id_offsets, tokens, offsets, text_at, tokens_at)| {
                text.copy_from_slice(p.id_text.as_bytes());
                for (out, &end) in id_offsets.iter_mut().zip(&p.id_offsets[1..]) {
                    *out = end + text_at;
                }
                tokens.copy_from_slice(&p.tokens);
                for (out, &end) in offsets.iter_mut().zip(&p.offsets[1..]) {
                    *out = end + tokens_at;
                }
            },
        );
        table.id_text = String::from_utf8(text).expect("concatenated UTF-8 is UTF-8");
        table
    }

    pub fn header(&self) -> &SidHeader {
        &self.header
    }

    pub fn header_mut(&mut self) -> &mut SidHeader {
        &mut self.header
    }

    pub fn layout(&self) -> Layout {
        self.header.layout()
    }

    pub fn len(&self) -> usize {
        self.id_offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn id(&self, item: usize) -> &str {
        &self.id_text[self.id_offsets[item]..self.id_offsets[item + 1]]
    }

    pub fn sid(&self, item: usize) -> &[Token] {
        &self.tokens[self.offsets[item] as usize..self.offsets[item + 1] as usize]
    }

    /// `(id, sid)` for every item, in table order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &[Token])> + '_ {
        (0..self.len()).map(|i| (self.id(i), self.sid(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_integer_ids() {
        assert_eq!(integer_id(b"0"), Some(0));
        assert_eq!(integer_id(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"007",
            b"+1",
            b"-1",
            b"1e3",
            b"18446744073709551616",
            b" 1",
        ] {
            assert_eq!(integer_id(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn token_ids_are_layer_tagged_and_invertible() {
        let l = Layout::new(vec![4, 8, 2]).unwrap();
        let id = |layer, code| l.token_id(Token::new(layer, code)).unwrap();
        assert_eq!(id(1, 3), 3);
        assert_eq!(id(2, 0), 4);
        assert_eq!(id(3, 1), 13);
        assert_eq!(id(4, 5), 19, "disambiguation after all codebooks");
        for t in 0..30 {
            assert_eq!(l.token_id(l.token(t)).unwrap(), t);
        }
        assert_ne!(id(2, 1), id(3, 1));
        assert!(l.check(Token::new(2, 8)).is_err());
        assert!(l.check(Token::new(5, 0)).is_err());
        assert!(l.check(Token::new(4, 1000)).is_ok());
    }

    #[test]
    fn codes_are_bounded_so_token_ids_never_wrap() {
        let l = Layout::new(vec![256, 256, 256]).unwrap();
        // 1:0 4:4294966528 once wrapped around u32 to the id of 1:0.
        let e = l.token_id(Token::new(4, 4_294_966_528)).unwrap_err();
        assert!(e.contains("disambiguation code"), "{e}");
        assert!(
            l.token_id(Token::new(4, MAX_DISAMBIGUATION_CODES - 1))
                .is_ok()
        );
        assert!(l.token_id(Token::new(3, u32::MAX)).is_err());
        let e = Layout::new(vec![u32::MAX, u32::MAX])
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer 1") && e.contains("4294967295"), "{e}");
        assert!(Layout::new(vec![MAX_CODEBOOK_SIZE; MAX_LAYERS]).is_ok());
        assert!(Layout::new(vec![1; MAX_LAYERS + 1]).is_err());
    }
}
