//! Index values as API messages.

use crate::index::{Index, Manifest, TokenId};
use crate::proto::v1::{LayerStats, Sid, StatsResponse, Token, VersionInfo};

use super::state::IndexState;

pub fn token_msg(index: &Index, id: TokenId) -> Token {
    let t = index.token(id);
    Token {
        layer: t.layer as u32,
        code: t.code,
    }
}

pub fn sid_msg(index: &Index, ids: &[TokenId]) -> Sid {
    Sid {
        tokens: ids.iter().map(|&t| token_msg(index, t)).collect(),
    }
}

pub fn version_info(m: &Manifest, current: bool) -> VersionInfo {
    VersionInfo {
        version: m.catalog_version,
        current,
        sids: m.sids,
        items: m.items,
        bytes: m.bytes(),
        created_unix: m.created_unix,
        source: m.source.clone(),
    }
}

/// Counts and per-layer statistics of the served version, and the last refusal.
pub fn stats_msg(index: &Index, state: &IndexState) -> StatsResponse {
    let m = index.manifest();
    let refused = state.refused();
    StatsResponse {
        version: m.catalog_version,
        items: m.items,
        sids: m.sids,
        codebook_sizes: m.codebook_sizes.clone(),
        layers: crate::catalog::layer_stats(index)
            .into_iter()
            .map(|l| LayerStats {
                layer: l.layer as u32,
                codebook_size: l.codebook_size,
                items: l.items,
                used: l.used,
                utilization: l.utilization,
                entropy: l.entropy,
                normalized_entropy: l.normalized_entropy,
                gini: l.gini,
                std: l.std,
                top1_share: l.top1_share,
            })
            .collect(),
        bytes: m.bytes(),
        nodes: m.nodes,
        collisions: m.collisions.to_string(),
        mitigation: m
            .mitigation
            .as_ref()
            .map_or(String::new(), |r| r.strategy.name().to_string()),
        refused_version: refused.as_ref().map_or(0, |r| r.version),
        refused_reason: refused.map_or(String::new(), |r| r.reason),
    }
}
