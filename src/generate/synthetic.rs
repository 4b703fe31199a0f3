//! A deterministic model with no runtime behind it — the one the beam-search
//! tests, the engine tests and `sidx bench generate` use. Its scores are a
//! pure function of (seed, request, SID prefix, token), so a search can be
//! checked against exhaustive scoring, or they are one fixed random row, so a
//! benchmark measures the search alone.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};

use super::beam::{ModelError, Row, StepModel};
use super::model::BatchModel;
use super::runtime::Device;
use super::sidecar::Sidecar;
use crate::index::TokenId;

/// How the synthetic scores are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scores {
    /// Log-softmax of hashed logits of (seed, request, prefix, token).
    Hashed,
    /// The same pseudo-random row for every hypothesis, written once per
    /// buffer size: a model that costs nothing.
    Fixed,
}

/// Synthetic scores over a vocabulary of `vocab` tokens holding the SID
/// tokens `0..sid_tokens` at `sid_offset` and end-of-SID at `eos` (the
/// search is handed that slice, as [`StepModel`] says).
#[derive(Clone, Debug)]
pub struct SyntheticScores {
    pub seed: u64,
    pub vocab: usize,
    pub eos: usize,
    pub sid_offset: usize,
    pub sid_tokens: usize,
    pub scores: Scores,
    /// Per request: what its hash starts from (default: its position).
    request_seeds: Vec<u64>,
}

impl SyntheticScores {
    /// A vocabulary of `vocab - 1` SID tokens followed by end-of-SID.
    pub fn new(vocab: usize, seed: u64, scores: Scores) -> Self {
        SyntheticScores {
            seed,
            vocab,
            eos: vocab - 1,
            sid_offset: 0,
            sid_tokens: vocab - 1,
            scores,
            request_seeds: Vec::new(),
        }
    }

    /// The log-probabilities of the next token after `prefix` ([`Scores::Hashed`]).
    pub fn row(&self, request: usize, prefix: &[TokenId]) -> Vec<f32> {
        let start = self
            .request_seeds
            .get(request)
            .copied()
            .unwrap_or(request as u64);
        let mut h = self.seed ^ start.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for &t in prefix {
            h = (h ^ t as u64).wrapping_mul(0x100_0000_01B3);
        }
        let logits: Vec<f32> = (0..self.vocab)
            .map(|t| {
                let x = (h ^ (t as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9))
                    .wrapping_mul(0x94D0_49BB_1331_11EB);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 6.0
            })
            .collect();
        let max = logits.iter().cloned().fold(f32::MIN, f32::max);
        let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
        logits.iter().map(|l| l - lse).collect()
    }
}

impl StepModel for SyntheticScores {
    fn sid_tokens(&self) -> usize {
        self.sid_tokens
    }
    fn log_probs(&mut self, rows: &[Row<'_>], out: &mut Vec<f32>) -> Result<(), ModelError> {
        match self.scores {
            Scores::Hashed => {
                out.clear();
                for row in rows {
                    let full = self.row(row.request, row.sid);
                    out.extend_from_slice(
                        &full[self.sid_offset..self.sid_offset + self.sid_tokens],
                    );
                    out.push(full[self.eos]);
                }
            }
            Scores::Fixed => {
                let need = rows.len() * (self.sid_tokens + 1);
                if out.len() < need {
                    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
                    out.resize_with(need, || -rng.random::<f32>() * 12.0);
                }
            }
        }
        Ok(())
    }
}

/// [`SyntheticScores`] behind a sidecar, so the engine can run it: each
/// request's scores follow from its prompt.
pub struct SyntheticModel {
    sidecar: Sidecar,
    scores: SyntheticScores,
    source: PathBuf,
}

impl SyntheticModel {
    /// A model for SIDs of `codebook_sizes` with `sid_token_limit` SID token
    /// ids (quantizer plus disambiguation tokens); special tokens come first.
    pub fn new(codebook_sizes: Vec<u32>, sid_token_limit: u32, seed: u64) -> Self {
        const SPECIAL: u32 = 4;
        let sidecar = Sidecar {
            format: "sidx-generator".into(),
            version: 1,
            vocab_size: SPECIAL + sid_token_limit,
            pad_id: 0,
            bos_id: Some(1),
            sep_id: 2,
            end_of_sid_id: 3,
            sid_token_offset: Some(SPECIAL),
            sid_token_ids: None,
            sid_token_names: None,
            prompt_prefix: Vec::new(),
            prompt_suffix: Vec::new(),
            history_separator: None,
            prompt_template: None,
            codebook_sizes,
            sid_token_limit,
            max_positions: 1024,
            max_history_items: 50,
            decoder_start_id: None,
        };
        let scores = SyntheticScores {
            eos: 3,
            sid_offset: SPECIAL as usize,
            sid_tokens: sid_token_limit as usize,
            ..SyntheticScores::new((SPECIAL + sid_token_limit) as usize, seed, Scores::Hashed)
        };
        SyntheticModel {
            sidecar,
            scores,
            source: PathBuf::from("synthetic"),
        }
    }
}

impl BatchModel for SyntheticModel {
    fn sidecar(&self) -> &Sidecar {
        &self.sidecar
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn source(&self) -> &Path {
        &self.source
    }
    fn batch(&mut self, prompts: Vec<Vec<i64>>) -> Box<dyn StepModel + '_> {
        let mut scores = self.scores.clone();
        scores.request_seeds = prompts
            .iter()
            .map(|p| {
                p.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &t| {
                    (h ^ t as u64).wrapping_mul(0x100_0000_01B3)
                })
            })
            .collect();
        Box::new(scores)
    }
}
