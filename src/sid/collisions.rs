//! Items that share a SID: give them a disambiguating layer-`L + 1` token
//! (as TIGER does) or let them share it.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{SidTable, Token};

/// What to do with items whose quantizer tokens are equal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CollisionMode {
    /// Append a layer-`L + 1` token `0, 1, …` to every item of a shared SID.
    #[default]
    Disambiguate,
    /// Keep the shared SID; a lookup returns all its items.
    Share,
}

impl FromStr for CollisionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disambiguate" => Ok(Self::Disambiguate),
            "share" => Ok(Self::Share),
            _ => Err(format!(
                "unknown collision mode {s:?} (expected disambiguate or share)"
            )),
        }
    }
}

impl fmt::Display for CollisionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Disambiguate => "disambiguate",
            Self::Share => "share",
        })
    }
}

/// How many items collide on their quantizer tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollisionStats {
    pub mode: CollisionMode,
    /// Distinct SIDs (disambiguation tokens ignored) held by more than one item.
    pub colliding_sids: usize,
    /// Items behind those SIDs.
    pub colliding_items: usize,
    /// Largest number of items behind one SID.
    pub max_items_per_sid: usize,
    /// Items that carry a disambiguation token.
    pub disambiguated_items: usize,
    /// Full SIDs (disambiguation tokens included) still shared by several items.
    pub shared_sids: usize,
}

impl CollisionStats {
    /// Measures the collisions of a table as it is.
    pub fn measure(table: &SidTable) -> Self {
        let dis = table.layout().disambiguation_layer();
        let mut base: HashMap<&[Token], usize> = HashMap::with_capacity(table.len());
        let mut full: HashMap<&[Token], usize> = HashMap::with_capacity(table.len());
        let mut disambiguated_items = 0;
        for (_, sid) in table.iter() {
            let quantizer = quantizer_tokens(sid, dis);
            disambiguated_items += usize::from(quantizer.len() < sid.len());
            *base.entry(quantizer).or_default() += 1;
            *full.entry(sid).or_default() += 1;
        }
        let groups = || base.values().copied().filter(|&n| n > 1);
        Self {
            mode: table.header().collisions,
            colliding_sids: groups().count(),
            colliding_items: groups().sum(),
            max_items_per_sid: base.values().copied().max().unwrap_or(0),
            disambiguated_items,
            shared_sids: full.values().filter(|&&n| n > 1).count(),
        }
    }
}

/// The SID without its disambiguation token (tokens of layers `< dis`).
fn quantizer_tokens(sid: &[Token], dis: u8) -> &[Token] {
    match sid.last() {
        Some(t) if t.layer >= dis => &sid[..sid.len() - 1],
        _ => sid,
    }
}

/// A copy of the table without disambiguation tokens.
pub fn strip_disambiguation(table: &SidTable) -> SidTable {
    let dis = table.layout().disambiguation_layer();
    let mut out = SidTable::new(table.header().clone());
    for (id, sid) in table.iter() {
        out.push(id, quantizer_tokens(sid, dis));
    }
    out
}

/// Re-resolves collisions from scratch: drops existing disambiguation tokens,
/// then, in `Disambiguate` mode, numbers the items of each shared SID
/// `0, 1, …` in table order with a layer-`L + 1` token.
pub fn resolve_collisions(table: &SidTable, mode: CollisionMode) -> SidTable {
    let stripped = strip_disambiguation(table);
    let mut header = stripped.header().clone();
    header.collisions = mode;
    let dis = stripped.layout().disambiguation_layer();
    let codes = match mode {
        CollisionMode::Disambiguate => shared_sid_numbers(&stripped),
        CollisionMode::Share => vec![None; stripped.len()],
    };
    let mut out = SidTable::new(header);
    let mut buf = Vec::new();
    for ((id, sid), code) in stripped.iter().zip(codes) {
        buf.clear();
        buf.extend_from_slice(sid);
        if let Some(code) = code {
            buf.push(Token::new(dis, code));
        }
        out.push(id, &buf);
    }
    out
}

/// For each item whose SID other items share: its number among them, in
/// table order. Items are grouped by a hash of their SID, sorted in
/// parallel (no map of every SID).
fn shared_sid_numbers(table: &SidTable) -> Vec<Option<u32>> {
    let mut codes = vec![None; table.len()];
    for mut left in super::hash_groups(table.len(), |i| table.sid(i)) {
        // Split a hash group by the SID itself; items stay in table order.
        while let Some(&first) = left.first() {
            let (same, rest): (Vec<usize>, Vec<usize>) = left
                .iter()
                .partition(|&&i| table.sid(i) == table.sid(first));
            if same.len() > 1 {
                for (code, &i) in same.iter().enumerate() {
                    codes[i] = Some(code as u32);
                }
            }
            left = rest;
        }
    }
    codes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sid::{Layout, SidHeader};

    fn table(rows: &[(&str, &[(u8, u32)])]) -> SidTable {
        let layout = Layout::new(vec![4, 4]).unwrap();
        let mut t = SidTable::new(SidHeader::new(&layout, CollisionMode::Share));
        for (id, sid) in rows {
            let sid: Vec<Token> = sid.iter().map(|&(l, c)| Token::new(l, c)).collect();
            t.push(*id, &sid);
        }
        t
    }

    #[test]
    fn disambiguation_numbers_shared_sids_in_table_order() {
        let t = table(&[
            ("a", &[(1, 0), (2, 1)]),
            ("b", &[(1, 0), (2, 1)]),
            ("c", &[(1, 2), (2, 1)]),
            ("d", &[(1, 0), (2, 1)]),
        ]);
        let before = CollisionStats::measure(&t);
        assert_eq!((before.colliding_sids, before.colliding_items), (1, 3));
        assert_eq!(before.shared_sids, 1);

        let r = resolve_collisions(&t, CollisionMode::Disambiguate);
        assert_eq!(
            r.sid(0),
            &[Token::new(1, 0), Token::new(2, 1), Token::new(3, 0)]
        );
        assert_eq!(r.sid(1)[2], Token::new(3, 1));
        assert_eq!(r.sid(2), &[Token::new(1, 2), Token::new(2, 1)]);
        assert_eq!(r.sid(3)[2], Token::new(3, 2));
        let after = CollisionStats::measure(&r);
        assert_eq!(
            after.colliding_sids, 1,
            "collisions count the quantizer tokens"
        );
        assert_eq!(after.max_items_per_sid, 3);
        assert_eq!(after.disambiguated_items, 3);
        assert_eq!(after.shared_sids, 0);
        assert_eq!(after.mode, CollisionMode::Disambiguate);
    }

    #[test]
    fn resolving_again_is_stable_and_share_strips_tokens() {
        let t = table(&[("a", &[(1, 0)]), ("b", &[(1, 0)])]);
        let once = resolve_collisions(&t, CollisionMode::Disambiguate);
        assert_eq!(resolve_collisions(&once, CollisionMode::Disambiguate), once);
        let shared = resolve_collisions(&once, CollisionMode::Share);
        assert_eq!(shared.sid(0), &[Token::new(1, 0)]);
        assert_eq!(CollisionStats::measure(&shared).shared_sids, 1);
    }
}
