//! The index against a naive model: for random variable-length SID sets
//! (shared SIDs, dropped layers, disambiguation tokens), every query equals
//! what a `BTreeMap` says, and an update equals a fresh build of the result.

mod common;

use common::{SIZES, sid_strategy};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sidx::catalog::CatalogUpdate;
use sidx::index::{Index, IndexStore, NodeId, TokenId, build_from_table};
use sidx::sid::{CollisionMode, Layout, SidHeader, SidTable, Token};

fn layout() -> Layout {
    Layout::new(SIZES.to_vec()).unwrap()
}

fn catalog_strategy() -> impl Strategy<Value = Vec<Vec<Token>>> {
    prop::collection::vec(sid_strategy(3), 1..60)
}

fn table(items: &[(String, Vec<Token>)]) -> SidTable {
    let mut t = SidTable::new(SidHeader::new(&layout(), CollisionMode::Share));
    for (id, sid) in items {
        t.push(id.as_str(), sid);
    }
    t
}

fn ids(l: &Layout, sid: &[Token]) -> Vec<TokenId> {
    sid.iter()
        .map(|&t| l.token_id(t).unwrap() as TokenId)
        .collect()
}

/// SID (token ids) → item ids.
type Model = BTreeMap<Vec<TokenId>, BTreeSet<String>>;

fn model(items: &[(String, Vec<Token>)]) -> Model {
    let l = layout();
    let mut m = Model::new();
    for (id, sid) in items {
        m.entry(ids(&l, sid)).or_default().insert(id.clone());
    }
    m
}

fn check_against_model(index: &Index, m: &Model) {
    // Every prefix of every SID, plus a few that exist nowhere.
    let mut prefixes: BTreeSet<Vec<TokenId>> = BTreeSet::new();
    for sid in m.keys() {
        for k in 0..=sid.len() {
            prefixes.insert(sid[..k].to_vec());
        }
        let mut wrong = sid.clone();
        wrong.push(60);
        prefixes.insert(wrong);
    }
    prefixes.insert(vec![3, 6]);
    for p in &prefixes {
        let next = index.next_tokens(p);
        let want: BTreeSet<TokenId> = m
            .keys()
            .filter(|s| s.len() > p.len() && s.starts_with(p))
            .map(|s| s[p.len()])
            .collect();
        assert_eq!(
            next.allowed.to_vec(),
            want.into_iter().collect::<Vec<_>>(),
            "prefix {p:?}"
        );
        assert_eq!(next.complete, m.contains_key(p), "complete {p:?}");
        assert_eq!(
            next.node.is_some(),
            m.keys().any(|s| s.starts_with(p)),
            "valid {p:?}"
        );
        let mut got: Vec<(Vec<TokenId>, String)> = index
            .prefix_items(p, usize::MAX)
            .into_iter()
            .map(|(s, id)| (s, id.into_owned()))
            .collect();
        got.sort();
        let want: Vec<(Vec<TokenId>, String)> = m
            .iter()
            .filter(|(s, _)| s.starts_with(p))
            .flat_map(|(s, items)| items.iter().map(move |i| (s.clone(), i.clone())))
            .collect();
        assert_eq!(got, want, "prefix_items {p:?}");
    }
    for (sid, items) in m {
        let got: BTreeSet<String> = index.items(sid).map(Cow::into_owned).collect();
        assert_eq!(&got, items);
        for id in items {
            assert_eq!(index.sid(id).as_ref(), Some(sid), "sid of {id}");
        }
        // Stepping node by node reaches the same terminal.
        let mut node = index.root();
        for &t in sid {
            assert!(index.children(node).contains(&t));
            node = index.child(node, t).unwrap();
        }
        assert!(index.is_terminal(node));
        let at_node: BTreeSet<String> = index.node_items(node).map(Cow::into_owned).collect();
        assert_eq!(&at_node, items);
    }
    // Every SID stepped in lockstep, a batch per step, as beam search does;
    // a node id past the trie has no children.
    let sids: Vec<&Vec<TokenId>> = m.keys().collect();
    let mut nodes = vec![index.root(); sids.len()];
    let mut kids = Vec::new();
    for d in 0..sids.iter().map(|s| s.len()).max().unwrap_or(0) {
        let mut batch = nodes.clone();
        batch.push(NodeId::MAX);
        index.children_of_all(&batch, &mut kids);
        assert_eq!(kids.len(), batch.len());
        assert!(kids[sids.len()].tokens().is_empty());
        assert!(!index.is_terminal(NodeId::MAX));
        assert_eq!(index.sid_ordinal(NodeId::MAX), None);
        for (i, sid) in sids.iter().enumerate() {
            let c = kids[i];
            assert_eq!(
                c.tokens(),
                index.children(nodes[i]),
                "children of {:?}",
                &sid[..d]
            );
            for probe in [0, 1, 5, 59, 60, TokenId::MAX] {
                assert_eq!(
                    c.child(probe),
                    index.child(nodes[i], probe),
                    "probe {probe}"
                );
            }
            if let Some(&t) = sid.get(d) {
                nodes[i] = c.child(t).expect("a SID's next token is a child");
            }
        }
    }
    for (node, sid) in nodes.iter().zip(&sids) {
        assert_eq!(index.walk(sid), Some(*node));
    }
    assert!(index.sid("no-such-item").is_none());
    for missing in ["0", "99999", "18446744073709551615", "007", ""] {
        if !m.values().any(|items| items.contains(missing)) {
            assert!(index.sid(missing).is_none(), "sid of missing {missing:?}");
        }
    }
    assert_eq!(index.items(&[3, 6]).len(), 0);
    // The stream gives back the sorted, de-duplicated input.
    let streamed: Vec<(Vec<TokenId>, String)> = index
        .entries()
        .map(|(s, id)| (s, id.into_owned()))
        .collect();
    let want: Vec<(Vec<TokenId>, String)> = m
        .iter()
        .flat_map(|(s, items)| items.iter().map(move |i| (s.clone(), i.clone())))
        .collect();
    assert_eq!(streamed, want);
    assert_eq!(index.sid_count() as usize, m.len());
}

fn named(sids: Vec<Vec<Token>>, prefix: &str) -> Vec<(String, Vec<Token>)> {
    sids.into_iter()
        .enumerate()
        .map(|(i, s)| (format!("{prefix}{i}"), s))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn queries_equal_the_model(
        sids in catalog_strategy(),
        format in 1..=2u32,
        integer_ids in any::<bool>(),
    ) {
        let items = named(sids, if integer_ids { "" } else { "item-" });
        let dir = tempfile::tempdir().unwrap();
        let store = IndexStore::new(dir.path()).with_format_version(format);
        build_from_table(&store, &table(&items), "test", None).unwrap();
        let index = store.open_current().unwrap();
        check_against_model(&index, &model(&items));
    }

    #[test]
    fn update_equals_a_fresh_build(
        old in catalog_strategy(),
        new in prop::collection::vec(sid_strategy(3), 0..20),
        moved in prop::collection::vec(sid_strategy(3), 0..5),
        delete_every in 2..6usize,
        format in 1..=2u32,
    ) {
        let old_items = named(old, "old-");
        let dir = tempfile::tempdir().unwrap();
        let store = IndexStore::new(dir.path()).with_format_version(format);
        build_from_table(&store, &table(&old_items), "test", None).unwrap();

        // Delete every k-th old item; re-point a few others; add new ones.
        let deletes: Vec<String> = old_items.iter().step_by(delete_every).map(|(id, _)| id.clone()).collect();
        let mut upserts = named(new, "new-");
        let survivors: Vec<&(String, Vec<Token>)> =
            old_items.iter().filter(|(id, _)| !deletes.contains(id)).collect();
        for (s, (id, _)) in moved.into_iter().zip(survivors) {
            upserts.push((id.clone(), s));
        }
        let update = CatalogUpdate {
            upsert_sids: Some(table(&upserts)),
            deletes: deletes.clone(),
            ..CatalogUpdate::default()
        };
        let summary = update.apply(&store).unwrap();
        prop_assert_eq!(summary.build.version, 2);
        prop_assert_eq!(store.open_current().unwrap().format_version(), format, "updates keep the format");

        let mut want: BTreeMap<String, Vec<Token>> = old_items.into_iter().collect();
        for d in &deletes {
            want.remove(d);
        }
        want.extend(upserts);
        let want: Vec<(String, Vec<Token>)> = want.into_iter().collect();
        let updated = store.open_current().unwrap();
        check_against_model(&updated, &model(&want));

        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = IndexStore::new(fresh_dir.path());
        if !want.is_empty() {
            build_from_table(&fresh, &table(&want), "test", None).unwrap();
            let fresh = fresh.open_current().unwrap();
            let a: Vec<_> = updated.entries().map(|(s, i)| (s, i.into_owned())).collect();
            let b: Vec<_> = fresh.entries().map(|(s, i)| (s, i.into_owned())).collect();
            prop_assert_eq!(a, b);
            prop_assert_eq!(&updated.manifest().layer_counts, &fresh.manifest().layer_counts);
            prop_assert_eq!(updated.manifest().nodes, fresh.manifest().nodes);
        }
    }
}

/// The update rules of `disambiguate` mode, written out naively: the index
/// must agree with this on every random update (explicit disambiguation
/// tokens, bare SIDs, moves and deletes mixed in one batch).
fn model_disambiguated_update(
    old: &BTreeMap<String, Vec<TokenId>>,
    upserts: &[(String, Vec<TokenId>)],
    deletes: &[String],
    dis_base: TokenId,
) -> Option<BTreeMap<String, Vec<TokenId>>> {
    let is_dis = |t: TokenId| t >= dis_base;
    let removed: BTreeSet<&String> = deletes
        .iter()
        .chain(
            upserts
                .iter()
                .map(|(id, _)| id)
                .filter(|id| old.contains_key(*id)),
        )
        .collect();
    let mut placed: BTreeMap<Vec<TokenId>, String> = BTreeMap::new();
    let mut next_code: BTreeMap<Vec<TokenId>, u32> = BTreeMap::new();
    let occupied = |placed: &BTreeMap<Vec<TokenId>, String>, s: &[TokenId]| {
        placed.contains_key(s)
            || old
                .iter()
                .any(|(id, sid)| sid.as_slice() == s && !removed.contains(id))
    };
    let mut result: BTreeMap<String, Vec<TokenId>> = old
        .iter()
        .filter(|(id, _)| !removed.contains(id))
        .map(|(id, s)| (id.clone(), s.clone()))
        .collect();
    let mut chosen: Vec<Option<Vec<TokenId>>> = vec![None; upserts.len()];
    let record = |placed: &mut BTreeMap<Vec<TokenId>, String>,
                  next_code: &mut BTreeMap<Vec<TokenId>, u32>,
                  id: &str,
                  s: &[TokenId]| {
        if let Some(&t) = s.last().filter(|&&t| is_dis(t)) {
            let n = next_code.entry(s[..s.len() - 1].to_vec()).or_insert(0);
            *n = (*n).max(u32::from(t - dis_base) + 1);
        }
        placed.insert(s.to_vec(), id.to_owned());
    };
    // Items keeping their SIDs.
    for (k, (id, s)) in upserts.iter().enumerate() {
        if let Some(p) = old.get(id) {
            let keeps = p == s
                || (!s.last().is_some_and(|&t| is_dis(t))
                    && p.len() == s.len() + 1
                    && p.starts_with(s));
            if keeps {
                record(&mut placed, &mut next_code, id, p);
                chosen[k] = Some(p.clone());
            }
        }
    }
    // Explicit SIDs.
    for (k, (id, s)) in upserts.iter().enumerate() {
        if chosen[k].is_none() && s.last().is_some_and(|&t| is_dis(t)) {
            if occupied(&placed, s) {
                return None;
            }
            record(&mut placed, &mut next_code, id, s);
            chosen[k] = Some(s.clone());
        }
    }
    // Bare SIDs: as is if free, else the next code.
    for (k, (id, s)) in upserts.iter().enumerate() {
        if chosen[k].is_some() {
            continue;
        }
        let with = |d: TokenId| {
            let mut full = s.clone();
            full.push(d);
            full
        };
        let collides = occupied(&placed, s)
            || next_code.contains_key(s)
            || (dis_base..dis_base + 8).any(|d| occupied(&placed, &with(d)));
        let sid = if collides {
            let in_old = old
                .values()
                .filter(|o| o.len() == s.len() + 1 && o.starts_with(s) && is_dis(o[s.len()]))
                .map(|o| u32::from(o[s.len()] - dis_base) + 1)
                .max()
                .unwrap_or(0);
            let code = in_old.max(next_code.get(s).copied().unwrap_or(0));
            with(dis_base + code as TokenId)
        } else {
            s.clone()
        };
        record(&mut placed, &mut next_code, id, &sid);
        chosen[k] = Some(sid);
    }
    for ((id, _), sid) in upserts.iter().zip(chosen) {
        result.insert(id.clone(), sid.expect("placed"));
    }
    Some(result)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn disambiguated_updates_keep_sids_unique_and_follow_the_rules(
        old in catalog_strategy(),
        new in prop::collection::vec(sid_strategy(4), 0..16),
        moved in prop::collection::vec(sid_strategy(4), 0..5),
        delete_every in 2..7usize,
    ) {
        let l = layout();
        let mut base = SidTable::new(SidHeader::new(&l, CollisionMode::Disambiguate));
        for (id, s) in named(old, "old-") {
            base.push(id.as_str(), &s);
        }
        let base = sidx::sid::resolve_collisions(&base, CollisionMode::Disambiguate);
        let dir = tempfile::tempdir().unwrap();
        let store = IndexStore::new(dir.path());
        build_from_table(&store, &base, "test", None).unwrap();
        let old_map: BTreeMap<String, Vec<TokenId>> =
            base.iter().map(|(id, s)| (id.to_owned(), ids(&l, s))).collect();

        let deletes: Vec<String> = old_map.keys().step_by(delete_every).cloned().collect();
        let mut upserts = named(new, "new-");
        let survivors: Vec<&String> = old_map.keys().filter(|id| !deletes.contains(id)).collect();
        for (s, id) in moved.into_iter().zip(survivors) {
            upserts.push((id.clone(), s));
        }
        let mut up = SidTable::new(SidHeader::new(&l, CollisionMode::Disambiguate));
        for (id, s) in &upserts {
            up.push(id.as_str(), s);
        }
        let want = model_disambiguated_update(
            &old_map,
            &upserts.iter().map(|(id, s)| (id.clone(), ids(&l, s))).collect::<Vec<_>>(),
            &deletes,
            l.quantizer_vocab() as TokenId,
        );
        let got = CatalogUpdate {
            upsert_sids: Some(up),
            deletes: deletes.clone(),
            ..CatalogUpdate::default()
        }
        .apply(&store);
        match (want, got) {
            (None, Err(e)) => {
                prop_assert!(matches!(e, sidx::index::IndexError::SidTaken { .. }), "{e}");
                prop_assert_eq!(store.versions().unwrap(), vec![1]);
            }
            (Some(want), Ok(_)) => {
                let index = store.open_current().unwrap();
                let got: BTreeMap<String, Vec<TokenId>> =
                    index.entries().map(|(s, id)| (id.into_owned(), s)).collect();
                prop_assert_eq!(&got, &want);
                let distinct: BTreeSet<&Vec<TokenId>> = got.values().collect();
                prop_assert_eq!(distinct.len(), got.len(), "a SID held by two items");
            }
            (want, got) => prop_assert!(false, "model {want:?}, index {got:?}"),
        }
    }
}
