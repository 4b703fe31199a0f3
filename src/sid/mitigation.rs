//! The hourglass mitigation as data: which layer-2 tokens a strategy drops
//! ([`Strategy`]), and the concrete rule a SID set went through
//! ([`MitigationRule`]) — recorded in SID file headers and index manifests
//! so that catalog updates apply the same rule to new items.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Token;

/// Which layer-2 tokens to drop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Strategy {
    /// Every layer-2 token (capacity falls from M^L to M^(L−1)).
    DropLayer2,
    /// Tokens among the `K` most frequent layer-2 codes (ties: lower code first).
    TopK(usize),
    /// Tokens of codes holding more than a share `P` of the items.
    TopP(f64),
}

impl Strategy {
    /// The name files record: `drop-layer2`, `top-k` or `top-p`.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::DropLayer2 => "drop-layer2",
            Strategy::TopK(_) => "top-k",
            Strategy::TopP(_) => "top-p",
        }
    }

    /// K of top-k.
    pub fn k(&self) -> Option<usize> {
        match *self {
            Strategy::TopK(k) => Some(k),
            _ => None,
        }
    }

    /// P of top-p.
    pub fn p(&self) -> Option<f64> {
        match *self {
            Strategy::TopP(p) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DropLayer2 => f.write_str("drop-layer2"),
            Self::TopK(k) => write!(f, "top-k (K = {k})"),
            Self::TopP(p) => write!(f, "top-p (P = {p})"),
        }
    }
}

/// The layer-2 rule of a variable-length SID set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RuleFields", into = "RuleFields")]
pub struct MitigationRule {
    pub strategy: Strategy,
    /// Layer-2 codes whose token is dropped, ascending (every code for `drop-layer2`).
    pub dropped_layer2: Vec<u32>,
}

impl MitigationRule {
    /// `sid` without the layer-2 token this rule drops; other tokens are kept.
    pub fn apply(&self, sid: &[Token], out: &mut Vec<Token>) {
        out.clear();
        out.extend(
            sid.iter()
                .filter(|t| !(t.layer == 2 && self.dropped_layer2.binary_search(&t.code).is_ok())),
        );
    }
}

/// A rule as files spell it: `{"strategy": "top-k", "k": 8, "dropped_layer2": […]}`.
#[derive(Serialize, Deserialize)]
struct RuleFields {
    strategy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<f64>,
    dropped_layer2: Vec<u32>,
}

impl TryFrom<RuleFields> for MitigationRule {
    type Error = String;

    fn try_from(f: RuleFields) -> Result<Self, String> {
        let strategy = match (f.strategy.as_str(), f.k, f.p) {
            ("drop-layer2", None, None) => Strategy::DropLayer2,
            ("top-k", Some(k), None) => Strategy::TopK(k),
            ("top-p", None, Some(p)) => Strategy::TopP(p),
            (s, k, p) => {
                return Err(format!(
                    "mitigation strategy {s:?} with k {k:?} and p {p:?}: expected \
                     drop-layer2, top-k with k, or top-p with p"
                ));
            }
        };
        if !f.dropped_layer2.is_sorted_by(|a, b| a < b) {
            return Err("mitigation dropped_layer2 codes must be ascending and distinct".into());
        }
        Ok(MitigationRule {
            strategy,
            dropped_layer2: f.dropped_layer2,
        })
    }
}

impl From<MitigationRule> for RuleFields {
    fn from(r: MitigationRule) -> Self {
        RuleFields {
            strategy: r.strategy.name().into(),
            k: r.strategy.k(),
            p: r.strategy.p(),
            dropped_layer2: r.dropped_layer2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_keep_their_spelling_and_bad_rules_are_refused() {
        let rule = MitigationRule {
            strategy: Strategy::TopK(2),
            dropped_layer2: vec![0, 3],
        };
        let json = serde_json::to_string(&rule).unwrap();
        assert_eq!(json, r#"{"strategy":"top-k","k":2,"dropped_layer2":[0,3]}"#);
        assert_eq!(serde_json::from_str::<MitigationRule>(&json).unwrap(), rule);
        let drop_all = r#"{"strategy":"drop-layer2","dropped_layer2":[0,1]}"#;
        let r: MitigationRule = serde_json::from_str(drop_all).unwrap();
        assert_eq!(r.strategy, Strategy::DropLayer2);
        for bad in [
            r#"{"strategy":"top-k","dropped_layer2":[]}"#,
            r#"{"strategy":"top-q","p":0.1,"dropped_layer2":[]}"#,
            r#"{"strategy":"top-p","p":0.1,"dropped_layer2":[3,1]}"#,
        ] {
            let e = serde_json::from_str::<MitigationRule>(bad).unwrap_err();
            assert!(e.to_string().contains("mitigation"), "{bad}: {e}");
        }
    }

    #[test]
    fn apply_drops_only_the_listed_layer2_tokens() {
        let rule = MitigationRule {
            strategy: Strategy::TopK(1),
            dropped_layer2: vec![1],
        };
        let mut out = Vec::new();
        let sid = [Token::new(1, 1), Token::new(2, 1), Token::new(3, 1)];
        rule.apply(&sid, &mut out);
        assert_eq!(out, vec![Token::new(1, 1), Token::new(3, 1)]);
        let kept = [Token::new(1, 1), Token::new(2, 0), Token::new(3, 1)];
        rule.apply(&kept, &mut out);
        assert_eq!(out, kept);
    }
}
