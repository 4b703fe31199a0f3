//! A SID table put in build order — by SID (token ids), then item id —
//! without an allocation per item: each SID packed into one `u128` sort key
//! when it has at most 8 tokens, the general pairs otherwise.

use std::cmp::Ordering;

use rayon::prelude::*;

use super::{IndexBuilder, IndexError, TokenId};
use crate::sid::{Layout, SidTable, Token};

/// Tokens a packed key holds.
const PACKED_TOKENS: usize = 8;

/// A SID's sort key (as in [`SortedTable::Packed`]) and its integer item id.
pub(super) type Record = (u128, u64);

/// The items of a table in build order.
pub(crate) enum SortedTable<'t> {
    /// `(key, id)` when every item id is a canonical decimal integer (the
    /// common case): the ids ride in the sort records, never gathered or
    /// spelled out. Keys as in `Packed`; in runs, one after another.
    Integer(Vec<Vec<Record>>),
    /// `(key, item)`: the SID's token ids from the high bits down, zero
    /// after its end. Only a SID's first token can be token id 0 (layer
    /// 1's code 0; later layers' ids come after layer 1's), so a zero
    /// marks the end and a prefix sorts before its extensions.
    /// The ids come gathered in that order (in parallel runs: gathering
    /// them one by one while building was most of a build's time).
    Packed(Vec<(u128, u32)>, Vec<Run>),
    General(Vec<(Vec<TokenId>, &'t str)>),
}

impl<'t> SortedTable<'t> {
    /// Checks every token against the table's layout and sorts; refuses an
    /// item listed twice with the same SID.
    pub(crate) fn new(table: &'t SidTable) -> Result<Self, IndexError> {
        let layout = table.layout();
        super::check_layout(&layout)?;
        let layout = &layout;
        let token_ids = |i: usize| {
            table.sid(i).iter().map(move |&t| {
                super::token_id(layout, t)
                    .map_err(|e| IndexError::Input(format!("item {:?}: {e}", table.id(i))))
            })
        };
        let n = table.len();
        // Layers rise along a SID, so only its first token id can be 0 —
        // unless a table was pushed out of order; those take the general path.
        let packable = n <= u32::MAX as usize
            && (0..n).into_par_iter().all(|i| {
                let sid = table.sid(i);
                (1..=PACKED_TOKENS).contains(&sid.len())
                    && sid.windows(2).all(|w| w[0].layer < w[1].layer)
            });
        let integer = || {
            (0..n)
                .into_par_iter()
                .map(|i| {
                    let id = crate::sid::integer_id(table.id(i).as_bytes());
                    id.map(|v| Ok((pack(token_ids(i))?, v))).transpose()
                })
                .collect::<Result<Option<Vec<_>>, IndexError>>()
        };
        let sorted = if packable && let Some(mut keyed) = integer()? {
            keyed.par_sort_unstable_by(record_order);
            check_records(&keyed)?;
            Self::Integer(vec![keyed])
        } else if packable {
            let mut keyed = (0..n)
                .into_par_iter()
                .map(|i| Ok((pack(token_ids(i))?, i as u32)))
                .collect::<Result<Vec<_>, IndexError>>()?;
            keyed.par_sort_unstable_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| table.id(a.1 as usize).cmp(table.id(b.1 as usize)))
            });
            let same = |a: &(u128, u32), b: &(u128, u32)| {
                a.0 == b.0 && table.id(a.1 as usize) == table.id(b.1 as usize)
            };
            if let Some(w) = keyed.windows(2).find(|w| same(&w[0], &w[1])) {
                return Err(twice(table.id(w[0].1 as usize)));
            }
            let runs = keyed
                .par_chunks(RUN)
                .map(|chunk| {
                    let mut run = Run::default();
                    for &(_, i) in chunk {
                        run.text.push_str(table.id(i as usize));
                        run.ends.push(run.text.len());
                    }
                    run
                })
                .collect();
            Self::Packed(keyed, runs)
        } else {
            let mut pairs = (0..n)
                .into_par_iter()
                .map(|i| Ok((token_ids(i).collect::<Result<_, _>>()?, table.id(i))))
                .collect::<Result<Vec<_>, IndexError>>()?;
            pairs.par_sort_unstable();
            if let Some(w) = pairs.windows(2).find(|w| w[0] == w[1]) {
                return Err(twice(w[0].1));
            }
            Self::General(pairs)
        };
        Ok(sorted)
    }

    /// Pushes every item, in order.
    pub(crate) fn push_into(&self, b: &mut IndexBuilder) -> Result<(), IndexError> {
        match self {
            Self::Integer(runs) => {
                let mut sid = [0; PACKED_TOKENS];
                runs.iter().flatten().try_for_each(|&(key, id)| {
                    let len = unpack(key, &mut sid);
                    b.push_integer(&sid[..len], id)
                })
            }
            Self::Packed(keyed, runs) => {
                let mut sid = [0; PACKED_TOKENS];
                let ids = runs.iter().flat_map(|r| {
                    let starts = std::iter::once(0).chain(r.ends.iter().copied());
                    starts.zip(&r.ends).map(|(a, &b)| &r.text[a..b])
                });
                keyed.iter().zip(ids).try_for_each(|(&(key, _), id)| {
                    let len = unpack(key, &mut sid);
                    b.push(&sid[..len], id)
                })
            }
            Self::General(pairs) => pairs.iter().try_for_each(|(sid, id)| b.push(sid, id)),
        }
    }
}

/// Items per run of gathered ids.
const RUN: usize = 1 << 16;

/// Item ids of a run of the sorted items, concatenated.
#[derive(Default)]
pub(crate) struct Run {
    text: String,
    ends: Vec<usize>,
}

/// Build order of records: by SID, then id as text.
fn record_order(a: &Record, b: &Record) -> Ordering {
    a.0.cmp(&b.0).then_with(|| decimal_order(a.1, b.1))
}

/// Refuses an item listed twice with the same SID in sorted records.
fn check_records(sorted: &[Record]) -> Result<(), IndexError> {
    match sorted.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(twice(&w[0].1.to_string())),
        None => Ok(()),
    }
}

/// Sorts a run of records into build order; refuses an item listed twice
/// with the same SID.
pub(super) fn sort_records(run: &mut [Record]) -> Result<(), IndexError> {
    run.sort_unstable_by(record_order);
    check_records(run)
}

/// The first token id of each layer of a layout (and of its
/// disambiguation layer), for keys of SIDs already checked against it.
#[derive(Default)]
pub(super) struct LayerOffsets(Vec<u32>);

impl LayerOffsets {
    pub(super) fn of(layout: &Layout) -> Self {
        let sizes = layout.codebook_sizes().iter();
        Self(
            std::iter::once(&0)
                .chain(sizes)
                .scan(0, |at, m| {
                    *at += m;
                    Some(*at)
                })
                .collect(),
        )
    }

    /// The sort key of a SID whose tokens fit the layout, layers rising;
    /// `None` when it is not packable (beyond 8 tokens, or a token id
    /// beyond 16 bits).
    pub(super) fn key(&self, sid: &[Token]) -> Option<u128> {
        if sid.len() > PACKED_TOKENS {
            return None;
        }
        pack(sid.iter().map(|t| {
            let id = self.0[usize::from(t.layer) - 1] + t.code;
            TokenId::try_from(id).map_err(|_| ())
        }))
        .ok()
    }
}

/// The first token id of a key.
pub(super) fn first_token(key: u128) -> TokenId {
    (key >> (16 * (PACKED_TOKENS - 1))) as TokenId
}

fn twice(id: &str) -> IndexError {
    IndexError::Input(format!("item {id:?} is listed twice"))
}

/// Orders integers as their decimal spellings do (`"10" < "9"`), the
/// order of item ids as text.
pub(super) fn decimal_order(a: u64, b: u64) -> Ordering {
    let digits = |v: u64| v.checked_ilog10().unwrap_or(0) + 1;
    let widen = |v: u64, by: u32| u128::from(v) * 10u128.pow(by);
    let (da, db) = (digits(a), digits(b));
    match da.cmp(&db) {
        Ordering::Equal => a.cmp(&b),
        // The shorter spelling, padded with zeros to the longer's length;
        // equal there, it is a prefix and sorts first.
        Ordering::Less => widen(a, db - da).cmp(&u128::from(b)).then(Ordering::Less),
        Ordering::Greater => u128::from(a)
            .cmp(&widen(b, da - db))
            .then(Ordering::Greater),
    }
}

/// The key of a SID's (at most 8) token ids, without collecting them.
fn pack<E>(sid: impl Iterator<Item = Result<TokenId, E>>) -> Result<u128, E> {
    sid.enumerate().try_fold(0u128, |key, (k, t)| {
        Ok(key | u128::from(t?) << (16 * (PACKED_TOKENS - 1 - k)))
    })
}

/// The token ids of `key` into `sid`; returns how many.
fn unpack(key: u128, sid: &mut [TokenId; PACKED_TOKENS]) -> usize {
    for (k, t) in sid.iter_mut().enumerate() {
        *t = (key >> (16 * (PACKED_TOKENS - 1 - k))) as TokenId;
    }
    1 + sid[1..].iter().take_while(|&&t| t != 0).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pushed_out_of_layer_order_are_not_packed() {
        use crate::sid::{CollisionMode, Layout, SidHeader, Token};
        let layout = Layout::new(vec![4, 4]).unwrap();
        let mut t = SidTable::new(SidHeader::new(&layout, CollisionMode::Share));
        t.push("a", &[Token::new(1, 2), Token::new(2, 1)]);
        assert!(matches!(
            SortedTable::new(&t).unwrap(),
            SortedTable::Packed(..)
        ));
        let mut ints = SidTable::new(SidHeader::new(&layout, CollisionMode::Share));
        ints.push("10", &[Token::new(1, 2)]);
        ints.push("9", &[Token::new(1, 2)]);
        match SortedTable::new(&ints).unwrap() {
            SortedTable::Integer(runs) => {
                let ids: Vec<u64> = runs.iter().flatten().map(|&(_, id)| id).collect();
                assert_eq!(ids, [10, 9], "ids of one SID in text order");
            }
            _ => panic!("integer ids not kept as integers"),
        }
        // Token ids [3, 0]: packed, the 0 would read as the end of the SID.
        t.push("x", &[Token::new(1, 3), Token::new(1, 0)]);
        match SortedTable::new(&t).unwrap() {
            SortedTable::General(pairs) => assert!(pairs.iter().any(|(sid, _)| sid == &[3, 0])),
            SortedTable::Integer(..) | SortedTable::Packed(..) => {
                panic!("packed a SID whose later token id is 0")
            }
        }
    }

    #[test]
    fn integers_order_as_their_spellings() {
        let mut values = vec![0, 1, 9, 10, 11, 19, 2, 20, 100, 99, 1000, 101, u64::MAX];
        values.extend([
            u64::MAX / 10,
            u64::MAX - 1,
            18446744073709551606,
            1844674407370955161,
        ]);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for &a in &values {
            for &b in values.iter().step_by(7) {
                let text = a.to_string().cmp(&b.to_string());
                assert_eq!(decimal_order(a, b), text, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn packed_keys_sort_as_token_sequences_and_unpack() {
        // Token 0 only ever comes first; later positions are ≥ 1.
        let mut sids: Vec<Vec<TokenId>> = vec![
            vec![0],
            vec![0, 5],
            vec![0, 5, 9],
            vec![1],
            vec![1, 2, 3, 4, 5, 6, 7, 8],
            vec![1, 2, 3, 4, 5, 6, 7, 65535],
            vec![65535, 65535],
            vec![3, 4],
            vec![0, 4, 65535],
        ];
        let mut keys: Vec<u128> = sids
            .iter()
            .map(|s| pack(s.iter().map(|&t| Ok::<_, ()>(t))).unwrap())
            .collect();
        keys.sort();
        sids.sort();
        let mut buf = [0; PACKED_TOKENS];
        let back: Vec<Vec<TokenId>> = keys
            .iter()
            .map(|&k| {
                let len = unpack(k, &mut buf);
                buf[..len].to_vec()
            })
            .collect();
        assert_eq!(back, sids);
    }
}
