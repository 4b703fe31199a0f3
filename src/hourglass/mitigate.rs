//! The paper's two fixes for the hourglass: drop layer 2 for every item, or
//! only for items behind the most frequent layer-2 tokens (variable-length SIDs).

use crate::sid::{
    CollisionMode, MitigationRule, SidTable, Strategy, resolve_collisions, strip_disambiguation,
};

/// Why a mitigation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum MitigateError {
    #[error("mitigation drops layer-2 tokens; the layout has only {0} layer(s)")]
    TooFewLayers(usize),
    #[error("these SIDs already went through {0}; mitigate the original quantizer SIDs")]
    AlreadyMitigated(String),
    #[error("{0}")]
    Parameter(String),
}

/// Applies `strategy` to the quantizer tokens of `table`, then resolves
/// collisions again with `collisions` (dropping a token creates many).
pub fn mitigate(
    table: &SidTable,
    strategy: Strategy,
    collisions: CollisionMode,
) -> Result<SidTable, MitigateError> {
    let layout = table.layout();
    if layout.layers() < 2 {
        return Err(MitigateError::TooFewLayers(layout.layers()));
    }
    if let Some(m) = &table.header().mitigation {
        return Err(MitigateError::AlreadyMitigated(m.strategy.name().into()));
    }
    let base = strip_disambiguation(table);
    let counts = &base.layer_counts()[1];
    let rule = rule_for(strategy, counts, base.len())?;
    let mut dropped = SidTable::new(base.header().clone());
    let mut buf = Vec::new();
    for (id, sid) in base.iter() {
        rule.apply(sid, &mut buf);
        dropped.push(id, &buf);
    }
    dropped.header_mut().mitigation = Some(rule);
    Ok(resolve_collisions(&dropped, collisions))
}

/// The concrete codes a strategy drops, given layer-2 counts.
fn rule_for(
    strategy: Strategy,
    counts: &[u64],
    items: usize,
) -> Result<MitigationRule, MitigateError> {
    let mut ranked: Vec<u32> = (0..counts.len() as u32)
        .filter(|&c| counts[c as usize] > 0)
        .collect();
    ranked.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    let mut dropped = match strategy {
        Strategy::DropLayer2 => (0..counts.len() as u32).collect(),
        Strategy::TopK(k) => {
            if k == 0 {
                return Err(MitigateError::Parameter("--k must be at least 1".into()));
            }
            ranked.truncate(k);
            ranked
        }
        Strategy::TopP(p) => {
            if !(p > 0.0 && p < 1.0) {
                return Err(MitigateError::Parameter(format!(
                    "--p must be a share in (0, 1), got {p}"
                )));
            }
            let min = p * items as f64;
            ranked.retain(|&c| counts[c as usize] as f64 > min);
            ranked
        }
    };
    dropped.sort_unstable();
    Ok(MitigationRule {
        strategy,
        dropped_layer2: dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sid::{CollisionStats, Layout, SidHeader, Token};

    fn table() -> SidTable {
        // Layer-2 code 0 on 4 items, code 1 on 2, code 2 on 1.
        let layout = Layout::new(vec![2, 4, 3]).unwrap();
        let mut t = SidTable::new(SidHeader::new(&layout, CollisionMode::Disambiguate));
        let rows = [
            (0, 0, 0),
            (0, 0, 1),
            (1, 0, 0),
            (1, 0, 0),
            (0, 1, 2),
            (1, 1, 0),
            (1, 2, 1),
        ];
        for (i, (a, b, c)) in rows.into_iter().enumerate() {
            t.push(
                i.to_string(),
                &[Token::new(1, a), Token::new(2, b), Token::new(3, c)],
            );
        }
        resolve_collisions(&t, CollisionMode::Disambiguate)
    }

    #[test]
    fn top_k_drops_only_the_head_codes() {
        let out = mitigate(&table(), Strategy::TopK(1), CollisionMode::Disambiguate).unwrap();
        let rule = out.header().mitigation.clone().unwrap();
        assert_eq!(rule.dropped_layer2, vec![0]);
        assert_eq!(out.sid(0), &[Token::new(1, 0), Token::new(3, 0)]);
        assert_eq!(
            out.sid(4),
            &[Token::new(1, 0), Token::new(2, 1), Token::new(3, 2)]
        );
        // Items 2 and 3 shared (1,0,0) before and still share (1,3:0): disambiguated.
        assert_eq!(out.sid(2).last(), Some(&Token::new(4, 0)));
        assert_eq!(out.sid(3).last(), Some(&Token::new(4, 1)));
    }

    #[test]
    fn drop_layer2_creates_collisions_that_get_resolved() {
        let t = table();
        let out = mitigate(&t, Strategy::DropLayer2, CollisionMode::Disambiguate).unwrap();
        assert!(out.iter().all(|(_, s)| s.iter().all(|t| t.layer != 2)));
        let before = CollisionStats::measure(&t);
        let after = CollisionStats::measure(&out);
        assert!(after.colliding_items > before.colliding_items);
        assert_eq!(after.shared_sids, 0);
        let shared = mitigate(&t, Strategy::DropLayer2, CollisionMode::Share).unwrap();
        assert!(CollisionStats::measure(&shared).shared_sids > 0);
    }

    #[test]
    fn top_p_and_bad_parameters() {
        let out = mitigate(&table(), Strategy::TopP(0.25), CollisionMode::Share).unwrap();
        // 4/7 > 0.25 and 2/7 > 0.25, 1/7 is not.
        assert_eq!(
            out.header().mitigation.as_ref().unwrap().dropped_layer2,
            vec![0, 1]
        );
        assert!(mitigate(&table(), Strategy::TopP(1.5), CollisionMode::Share).is_err());
        assert!(mitigate(&table(), Strategy::TopK(0), CollisionMode::Share).is_err());
        let e = mitigate(&out, Strategy::TopK(1), CollisionMode::Share).unwrap_err();
        assert!(matches!(e, MitigateError::AlreadyMitigated(_)));
    }
}
