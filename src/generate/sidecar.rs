//! The generator's sidecar (`generator.json` next to the model): how SID
//! tokens map to vocabulary ids, the special tokens, and the prompt format.
//! Written by `python/train_generator.py`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::GenerateError;
use crate::index::{Index, TokenId};

/// The sidecar file's contents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// Always `sidx-generator`.
    pub format: String,
    /// Always 1.
    pub version: u32,
    /// Rows of the model's logits.
    pub vocab_size: u32,
    pub pad_id: u32,
    pub bos_id: u32,
    /// Written after each history item's SID.
    pub sep_id: u32,
    /// Ends a generated SID (the training tooling uses `sep_id`).
    pub end_of_sid_id: u32,
    /// SID token id `t` (the index's layer-tagged id) is vocabulary id `sid_token_offset + t`.
    pub sid_token_offset: u32,
    /// The quantizer layout the model was trained on.
    pub codebook_sizes: Vec<u32>,
    /// SID token ids the model knows (quantizer tokens plus disambiguation tokens).
    pub sid_token_limit: u32,
    /// Longest prompt plus SID, in tokens (the position embedding's size).
    pub max_positions: u32,
    /// Most recent history items kept in a prompt.
    pub max_history_items: u32,
    /// An encoder–decoder's first decoder token (default: the export's
    /// `config.json` `decoder_start_token_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_start_id: Option<u32>,
}

/// What `sidx generator init` does not read from the model or the index.
#[derive(Clone, Debug)]
pub struct SidecarInit {
    pub pad_id: u32,
    pub bos_id: u32,
    pub sep_id: u32,
    /// Default: `sep_id`.
    pub end_of_sid_id: Option<u32>,
    pub sid_token_offset: u32,
    pub max_positions: u32,
    pub max_history_items: u32,
    pub decoder_start_id: Option<u32>,
}

impl Sidecar {
    /// The sidecar beside `model`: `generator.json` in the same directory.
    pub fn path_for(model: &Path) -> PathBuf {
        model.with_file_name("generator.json")
    }

    /// Reads and checks a sidecar file.
    pub fn load(path: &Path) -> Result<Self, GenerateError> {
        let err = |problem: String| GenerateError::Sidecar {
            path: path.to_path_buf(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                err(
                    "not found. The sidecar (generator.json) tells sidx how SID tokens map to \
                     the model's vocabulary, the special tokens and the prompt; write one with \
                     `sidx generator init --model MODEL --index INDEX` or pass --sidecar"
                        .to_string(),
                )
            } else {
                err(e.to_string())
            }
        })?;
        Self::parse(&text).map_err(err)
    }

    /// A sidecar for a model of `vocab_size` tokens serving `index`: the SID
    /// tokens from `sid_token_offset` to the end of the vocabulary, the
    /// special ids and prompt limits of `init`; checked, index included.
    pub fn init(vocab_size: u32, index: &Index, init: &SidecarInit) -> Result<Self, String> {
        let sid_token_limit = vocab_size
            .checked_sub(init.sid_token_offset)
            .ok_or_else(|| {
                format!(
                    "sid_token_offset {} is beyond the vocabulary of {vocab_size}",
                    init.sid_token_offset
                )
            })?;
        let s = Sidecar {
            format: "sidx-generator".into(),
            version: 1,
            vocab_size,
            pad_id: init.pad_id,
            bos_id: init.bos_id,
            sep_id: init.sep_id,
            end_of_sid_id: init.end_of_sid_id.unwrap_or(init.sep_id),
            sid_token_offset: init.sid_token_offset,
            codebook_sizes: index.layout().codebook_sizes().to_vec(),
            sid_token_limit,
            max_positions: init.max_positions,
            max_history_items: init.max_history_items,
            decoder_start_id: init.decoder_start_id,
        };
        s.check()?;
        s.check_index(index)?;
        Ok(s)
    }

    /// Parses and checks sidecar JSON.
    pub fn parse(text: &str) -> Result<Self, String> {
        let s: Sidecar = serde_json::from_str(text).map_err(|e| e.to_string())?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), String> {
        if self.format != "sidx-generator" || self.version != 1 {
            return Err(format!(
                "format {:?} version {} (expected sidx-generator version 1)",
                self.format, self.version
            ));
        }
        let sid_end = u64::from(self.sid_token_offset) + u64::from(self.sid_token_limit);
        if sid_end > u64::from(self.vocab_size) {
            return Err(format!(
                "sid_token_offset {} + sid_token_limit {} exceeds vocab_size {}",
                self.sid_token_offset, self.sid_token_limit, self.vocab_size
            ));
        }
        for (name, id) in [
            ("pad_id", self.pad_id),
            ("bos_id", self.bos_id),
            ("sep_id", self.sep_id),
            ("end_of_sid_id", self.end_of_sid_id),
        ] {
            if id >= self.vocab_size {
                return Err(format!(
                    "{name} {id} is not below vocab_size {}",
                    self.vocab_size
                ));
            }
            if (self.sid_token_offset..sid_end as u32).contains(&id) {
                return Err(format!("{name} {id} falls among the SID token ids"));
            }
        }
        if self.max_history_items == 0 || self.max_positions == 0 {
            return Err("max_history_items and max_positions must be positive".into());
        }
        Ok(())
    }

    /// Checks that `index` serves the SIDs this model was trained on.
    pub fn check_index(&self, index: &Index) -> Result<(), String> {
        let sizes = index.layout().codebook_sizes();
        if sizes != self.codebook_sizes.as_slice() {
            return Err(format!(
                "the model was trained on codebook sizes {:?}, the index has {:?}",
                self.codebook_sizes, sizes
            ));
        }
        let used = index.used_token_limit();
        if used > self.sid_token_limit {
            return Err(format!(
                "the index uses SID token ids below {used} but the model knows {} \
                 (more disambiguation tokens than it was trained with)",
                self.sid_token_limit
            ));
        }
        let longest = index.max_sid_len() + 2;
        if longest > self.max_positions as usize {
            return Err(format!(
                "SIDs of {} tokens do not fit max_positions {}",
                index.max_sid_len(),
                self.max_positions
            ));
        }
        Ok(())
    }

    /// Vocabulary id of a SID token.
    pub fn vocab_id(&self, t: TokenId) -> i64 {
        i64::from(self.sid_token_offset) + i64::from(t)
    }

    /// The prompt for a history of SIDs (oldest first): BOS, then each SID
    /// followed by SEP, keeping the most recent items that fit.
    pub fn prompt<'a>(
        &self,
        history: impl DoubleEndedIterator<Item = &'a [TokenId]>,
        max_sid_len: usize,
    ) -> Vec<i64> {
        let budget = (self.max_positions as usize).saturating_sub(2 + max_sid_len);
        let mut kept: Vec<&[TokenId]> = Vec::new();
        let mut len = 0;
        for sid in history.rev().take(self.max_history_items as usize) {
            if len + sid.len() + 1 > budget {
                break;
            }
            len += sid.len() + 1;
            kept.push(sid);
        }
        let mut out = Vec::with_capacity(len + 1);
        out.push(i64::from(self.bos_id));
        for sid in kept.iter().rev() {
            out.extend(sid.iter().map(|&t| self.vocab_id(t)));
            out.push(i64::from(self.sep_id));
        }
        out
    }
}
