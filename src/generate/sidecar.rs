//! The generator's sidecar (`generator.json` next to the model): how SID
//! tokens map to vocabulary ids, the special tokens, and the prompt format.
//! Version 1 (written by `python/train_generator.py`, `sidx generator init`):
//! SID token `t` at `sid_token_offset + t`, prompts `BOS (SID SEP)*`.
//! Version 2 adds what an LLM's vocabulary needs: SID tokens listed
//! (`sid_token_ids`) or named through the model's `tokenizer.json`
//! (`sid_token_names`, e.g. `<{letter}_{code}>` for `<a_12>`), an optional
//! BOS, and fixed token ids before and after the history.

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
    /// 1, or 2 for the fields marked "version 2".
    pub version: u32,
    /// Rows of the model's logits.
    pub vocab_size: u32,
    pub pad_id: u32,
    /// Starts every prompt (required in version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_id: Option<u32>,
    /// Written after each history item's SID.
    pub sep_id: u32,
    /// Ends a generated SID (the training tooling uses `sep_id`).
    pub end_of_sid_id: u32,
    /// SID token id `t` (the index's layer-tagged id) is vocabulary id
    /// `sid_token_offset + t` (required unless the ids are listed or named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid_token_offset: Option<u32>,
    /// Version 2: the vocabulary id of each SID token id, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid_token_ids: Option<Vec<u32>>,
    /// Version 2: SID tokens named in the model's tokenizer (resolved into
    /// `sid_token_ids` when the sidecar is loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid_token_names: Option<SidTokenNames>,
    /// Version 2: vocabulary ids before the history (after BOS, if any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt_prefix: Vec<u32>,
    /// Version 2: vocabulary ids after the history, before the SID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt_suffix: Vec<u32>,
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

/// SID tokens named in a Hugging Face `tokenizer.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidTokenNames {
    /// The tokenizer file, relative to the sidecar's folder.
    pub tokenizer: PathBuf,
    /// A token's name: `{layer}` (1-based), `{letter}` (a for layer 1, b, …;
    /// the disambiguation layer is the letter after the last quantizer
    /// layer) and `{code}`.
    pub template: String,
}

/// What `sidx generator init` does not read from the model or the index.
#[derive(Clone, Debug)]
pub struct SidecarInit {
    pub pad_id: u32,
    pub bos_id: Option<u32>,
    pub sep_id: u32,
    /// Default: `sep_id`.
    pub end_of_sid_id: Option<u32>,
    pub sid_tokens: SidTokensInit,
    pub prompt_prefix: Vec<u32>,
    pub prompt_suffix: Vec<u32>,
    pub max_positions: u32,
    pub max_history_items: u32,
    pub decoder_start_id: Option<u32>,
}

/// Where `sidx generator init` finds the SID tokens in the vocabulary.
#[derive(Clone, Debug)]
pub enum SidTokensInit {
    /// From this vocabulary id to the end of the vocabulary.
    Offset(u32),
    /// Named in a tokenizer; the model knows every SID token id whose name
    /// it has, counted from 0.
    Names {
        names: SidTokenNames,
        /// The folder the sidecar is written to (`names.tokenizer` is relative to it).
        dir: PathBuf,
    },
}

impl Sidecar {
    /// The default sidecar of `model`: `generator.json` in an export folder,
    /// or beside a model file.
    pub fn path_for(model: &Path) -> PathBuf {
        if model.is_dir() {
            model.join("generator.json")
        } else {
            model.with_file_name("generator.json")
        }
    }

    /// `given`, else [`Sidecar::path_for`] `model`.
    pub fn path_or_default(given: Option<&Path>, model: &Path) -> PathBuf {
        given.map_or_else(|| Self::path_for(model), Path::to_path_buf)
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
        let mut s: Sidecar = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if let Some(names) = &s.sid_token_names {
            let dir = path.parent().unwrap_or(Path::new("."));
            s.sid_token_ids =
                Some(resolve_names(names, dir, &s.codebook_sizes, s.sid_token_limit).map_err(err)?);
        }
        s.check().map_err(err)?;
        Ok(s)
    }

    /// A sidecar for a model of `vocab_size` tokens serving `index`: the SID
    /// tokens from `sid_token_offset` to the end of the vocabulary, the
    /// special ids and prompt limits of `init`; checked, index included.
    ///
    /// The result is what the file holds (names, not the ids they resolve
    /// to); it is checked resolved.
    pub fn init(vocab_size: u32, index: &Index, init: &SidecarInit) -> Result<Self, String> {
        let codebook_sizes = index.layout().codebook_sizes().to_vec();
        let (offset, names, ids) = match &init.sid_tokens {
            SidTokensInit::Offset(offset) => (Some(*offset), None, None),
            SidTokensInit::Names { names, dir } => {
                let vocab = tokenizer_vocab(&dir.join(&names.tokenizer))?;
                let ids: Vec<u32> = (0..crate::index::TOKEN_ID_LIMIT)
                    .map_while(|t| {
                        vocab
                            .get(&sid_token_name(&names.template, &codebook_sizes, t))
                            .copied()
                    })
                    .collect();
                (None, Some(names.clone()), Some(ids))
            }
        };
        let sid_token_limit = match (&ids, offset) {
            (Some(ids), _) => ids.len() as u32,
            (None, Some(offset)) => vocab_size.checked_sub(offset).ok_or_else(|| {
                format!("sid_token_offset {offset} is beyond the vocabulary of {vocab_size}")
            })?,
            (None, None) => unreachable!("one of the two is set above"),
        };
        let v2 = names.is_some()
            || init.bos_id.is_none()
            || !init.prompt_prefix.is_empty()
            || !init.prompt_suffix.is_empty();
        let mut s = Sidecar {
            format: "sidx-generator".into(),
            version: if v2 { 2 } else { 1 },
            vocab_size,
            pad_id: init.pad_id,
            bos_id: init.bos_id,
            sep_id: init.sep_id,
            end_of_sid_id: init.end_of_sid_id.unwrap_or(init.sep_id),
            sid_token_offset: offset,
            sid_token_ids: ids,
            sid_token_names: names,
            prompt_prefix: init.prompt_prefix.clone(),
            prompt_suffix: init.prompt_suffix.clone(),
            codebook_sizes,
            sid_token_limit,
            max_positions: init.max_positions,
            max_history_items: init.max_history_items,
            decoder_start_id: init.decoder_start_id,
        };
        s.check()?;
        s.check_index(index)?;
        if s.sid_token_names.is_some() {
            s.sid_token_ids = None;
        }
        Ok(s)
    }

    /// Parses and checks sidecar JSON (token names need [`Sidecar::load`],
    /// which knows the folder of the tokenizer).
    pub fn parse(text: &str) -> Result<Self, String> {
        let s: Sidecar = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if s.sid_token_names.is_some() {
            return Err(
                "sid_token_names: resolved only when the sidecar is loaded from a file".into(),
            );
        }
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), String> {
        if self.format != "sidx-generator" || !(1..=2).contains(&self.version) {
            return Err(format!(
                "format {:?} version {} (expected sidx-generator version 1 or 2)",
                self.format, self.version
            ));
        }
        let v2 = self.sid_token_ids.is_some()
            || self.sid_token_names.is_some()
            || !self.prompt_prefix.is_empty()
            || !self.prompt_suffix.is_empty()
            || self.bos_id.is_none();
        if self.version == 1 && v2 {
            return Err(
                "version 1 needs bos_id and sid_token_offset and has no sid_token_ids, \
                        sid_token_names, prompt_prefix or prompt_suffix (those are version 2)"
                    .into(),
            );
        }
        let sid_ids: std::collections::HashSet<u32> =
            match (&self.sid_token_ids, self.sid_token_offset) {
                (Some(ids), _) => {
                    if ids.len() != self.sid_token_limit as usize {
                        return Err(format!(
                            "sid_token_ids lists {} ids for sid_token_limit {}",
                            ids.len(),
                            self.sid_token_limit
                        ));
                    }
                    let set: std::collections::HashSet<u32> = ids.iter().copied().collect();
                    if set.len() != ids.len() {
                        return Err("sid_token_ids lists a vocabulary id twice".into());
                    }
                    if let Some(&id) = ids.iter().find(|&&id| id >= self.vocab_size) {
                        return Err(format!(
                            "sid_token_ids: {id} is not below vocab_size {}",
                            self.vocab_size
                        ));
                    }
                    set
                }
                (None, Some(offset)) => {
                    let end = u64::from(offset) + u64::from(self.sid_token_limit);
                    if end > u64::from(self.vocab_size) {
                        return Err(format!(
                            "sid_token_offset {offset} + sid_token_limit {} exceeds vocab_size {}",
                            self.sid_token_limit, self.vocab_size
                        ));
                    }
                    (offset..end as u32).collect()
                }
                (None, None) => {
                    return Err(
                        "the SID tokens need sid_token_offset, sid_token_ids or sid_token_names"
                            .into(),
                    );
                }
            };
        let specials = [
            ("pad_id", Some(self.pad_id)),
            ("bos_id", self.bos_id),
            ("sep_id", Some(self.sep_id)),
            ("end_of_sid_id", Some(self.end_of_sid_id)),
        ];
        for (name, id) in specials.iter().filter_map(|(n, id)| Some((n, (*id)?))) {
            if id >= self.vocab_size {
                return Err(format!(
                    "{name} {id} is not below vocab_size {}",
                    self.vocab_size
                ));
            }
            if sid_ids.contains(&id) {
                return Err(format!("{name} {id} falls among the SID token ids"));
            }
        }
        for (name, ids) in [
            ("prompt_prefix", &self.prompt_prefix),
            ("prompt_suffix", &self.prompt_suffix),
        ] {
            if let Some(id) = ids.iter().find(|&&id| id >= self.vocab_size) {
                return Err(format!(
                    "{name}: {id} is not below vocab_size {}",
                    self.vocab_size
                ));
            }
        }
        if self.max_history_items == 0 || self.max_positions == 0 {
            return Err("max_history_items and max_positions must be positive".into());
        }
        Ok(())
    }

    /// Loads the sidecar at `path` and checks it against the vocabulary the
    /// model's logits fix (`None` when the graph leaves it open).
    pub fn load_for(path: &Path, logits_vocab: Option<usize>) -> Result<Self, GenerateError> {
        let s = Self::load(path)?;
        if let Some(v) = logits_vocab
            && v != s.vocab_size as usize
        {
            return Err(GenerateError::Sidecar {
                path: path.to_path_buf(),
                problem: format!(
                    "vocab_size {} but the model's logits have {v} columns",
                    s.vocab_size
                ),
            });
        }
        Ok(s)
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

    /// Vocabulary id of a SID token (below `sid_token_limit`, as the index check ensures).
    pub fn vocab_id(&self, t: TokenId) -> i64 {
        match &self.sid_token_ids {
            Some(ids) => i64::from(ids[usize::from(t)]),
            None => i64::from(self.sid_token_offset.unwrap_or(0)) + i64::from(t),
        }
    }

    /// The prompt for a history of SIDs (oldest first): BOS, then each SID
    /// followed by SEP, keeping the most recent items that fit.
    pub fn prompt<'a>(
        &self,
        history: impl DoubleEndedIterator<Item = &'a [TokenId]>,
        max_sid_len: usize,
    ) -> Vec<i64> {
        let fixed = usize::from(self.bos_id.is_some())
            + self.prompt_prefix.len()
            + self.prompt_suffix.len();
        let budget = (self.max_positions as usize).saturating_sub(1 + fixed + max_sid_len);
        let mut kept: Vec<&[TokenId]> = Vec::new();
        let mut len = 0;
        for sid in history.rev().take(self.max_history_items as usize) {
            if len + sid.len() + 1 > budget {
                break;
            }
            len += sid.len() + 1;
            kept.push(sid);
        }
        let mut out = Vec::with_capacity(len + fixed);
        out.extend(self.bos_id.map(i64::from));
        out.extend(self.prompt_prefix.iter().map(|&t| i64::from(t)));
        for sid in kept.iter().rev() {
            out.extend(sid.iter().map(|&t| self.vocab_id(t)));
            out.push(i64::from(self.sep_id));
        }
        out.extend(self.prompt_suffix.iter().map(|&t| i64::from(t)));
        out
    }
}

/// Token name → id of a Hugging Face `tokenizer.json` (its model's vocabulary
/// and its added tokens).
fn tokenizer_vocab(path: &Path) -> Result<std::collections::HashMap<String, u32>, String> {
    let err =
        |e: &dyn std::fmt::Display| format!("sid_token_names: tokenizer {}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| err(&e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(&e))?;
    let mut vocab = std::collections::HashMap::new();
    if let Some(v) = json.pointer("/model/vocab").and_then(|v| v.as_object()) {
        for (name, id) in v {
            if let Some(id) = id.as_u64().and_then(|i| u32::try_from(i).ok()) {
                vocab.insert(name.clone(), id);
            }
        }
    }
    for t in json
        .get("added_tokens")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        let content = t.get("content").and_then(|c| c.as_str());
        let id = t
            .get("id")
            .and_then(|i| i.as_u64())
            .and_then(|i| u32::try_from(i).ok());
        if let (Some(name), Some(id)) = (content, id) {
            vocab.insert(name.to_string(), id);
        }
    }
    Ok(vocab)
}

/// The name of SID token id `t` under `template` for a layout of `codebook_sizes`.
fn sid_token_name(template: &str, codebook_sizes: &[u32], t: u32) -> String {
    let mut start = 0;
    let mut at = (codebook_sizes.len(), 0);
    for (l, &m) in codebook_sizes.iter().enumerate() {
        if t < start + m {
            at = (l, t - start);
            break;
        }
        start += m;
    }
    if at.0 == codebook_sizes.len() {
        at.1 = t - start;
    }
    let letter = char::from(b'a' + (at.0 % 26) as u8);
    template
        .replace("{layer}", &(at.0 + 1).to_string())
        .replace("{letter}", &letter.to_string())
        .replace("{code}", &at.1.to_string())
}

/// The vocabulary id of every SID token id `0..limit`, by name in `tokenizer.json`.
fn resolve_names(
    names: &SidTokenNames,
    dir: &Path,
    codebook_sizes: &[u32],
    limit: u32,
) -> Result<Vec<u32>, String> {
    let path = dir.join(&names.tokenizer);
    let vocab = tokenizer_vocab(&path)?;
    (0..limit)
        .map(|t| {
            let name = sid_token_name(&names.template, codebook_sizes, t);
            vocab.get(&name).copied().ok_or_else(|| {
                format!(
                    "sid_token_names: SID token {t} is {name:?}, which {} does not have",
                    path.display()
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1() -> serde_json::Value {
        serde_json::json!({
            "format": "sidx-generator", "version": 1, "vocab_size": 20, "pad_id": 0,
            "bos_id": 1, "sep_id": 2, "end_of_sid_id": 2, "sid_token_offset": 3,
            "codebook_sizes": [4, 4], "sid_token_limit": 10, "max_positions": 64,
            "max_history_items": 5
        })
    }

    fn parse(v: &serde_json::Value) -> Result<Sidecar, String> {
        Sidecar::parse(&v.to_string())
    }

    #[test]
    fn version_1_files_keep_working_and_stay_version_1() {
        let s = parse(&v1()).unwrap();
        assert_eq!(s.vocab_id(4), 7);
        assert_eq!(s.prompt([&[0u16, 5][..]].into_iter(), 2), vec![1, 3, 8, 2]);
        let mut no_bos = v1();
        no_bos.as_object_mut().unwrap().remove("bos_id");
        assert!(parse(&no_bos).unwrap_err().contains("version 2"));
    }

    #[test]
    fn version_2_lists_sid_tokens_and_wraps_the_history() {
        let mut v = v1();
        let o = v.as_object_mut().unwrap();
        o.insert("version".into(), 2.into());
        o.remove("bos_id");
        o.remove("sid_token_offset");
        o.insert(
            "sid_token_ids".into(),
            serde_json::json!([19, 18, 17, 16, 15, 14, 13, 12, 11, 10]),
        );
        o.insert("prompt_prefix".into(), serde_json::json!([5, 6]));
        o.insert("prompt_suffix".into(), serde_json::json!([7]));
        let s = parse(&v).unwrap();
        assert_eq!(s.vocab_id(0), 19);
        assert_eq!(
            s.prompt([&[0u16, 5][..]].into_iter(), 2),
            vec![5, 6, 19, 14, 2, 7]
        );
        // A special token among the SID ids, or an id listed twice, is refused.
        let mut bad = v.clone();
        bad["sep_id"] = 12.into();
        assert!(
            parse(&bad)
                .unwrap_err()
                .contains("sep_id 12 falls among the SID token ids")
        );
        let mut twice = v.clone();
        twice["sid_token_ids"][1] = 19.into();
        assert!(parse(&twice).unwrap_err().contains("twice"));
    }

    #[test]
    fn names_resolve_through_tokenizer_json() {
        let dir = tempfile::tempdir().unwrap();
        let mut added = Vec::new();
        // Layers 1, 2 (4 codes each), then 2 disambiguation codes: <a_0>…<c_1> at 100 + t.
        for t in 0..10u32 {
            let (letter, code) = match t {
                0..4 => ('a', t),
                4..8 => ('b', t - 4),
                _ => ('c', t - 8),
            };
            added.push(serde_json::json!({"id": 100 + t, "content": format!("<{letter}_{code}>")}));
        }
        let tok = serde_json::json!({"added_tokens": added, "model": {"vocab": {"hello": 5}}});
        std::fs::write(dir.path().join("tokenizer.json"), tok.to_string()).unwrap();
        let mut v = v1();
        let o = v.as_object_mut().unwrap();
        o.insert("version".into(), 2.into());
        o.insert("vocab_size".into(), 200.into());
        o.remove("sid_token_offset");
        o.insert(
            "sid_token_names".into(),
            serde_json::json!({"tokenizer": "tokenizer.json", "template": "<{letter}_{code}>"}),
        );
        let path = dir.path().join("generator.json");
        std::fs::write(&path, v.to_string()).unwrap();
        let s = Sidecar::load(&path).unwrap();
        assert_eq!(
            s.sid_token_ids.as_deref(),
            Some(&(100..110).collect::<Vec<u32>>()[..])
        );
        assert!(
            Sidecar::parse(&v.to_string())
                .unwrap_err()
                .contains("loaded from a file")
        );
        // A name the tokenizer lacks is named in the error.
        v["sid_token_limit"] = 11.into();
        std::fs::write(&path, v.to_string()).unwrap();
        let e = Sidecar::load(&path).unwrap_err().to_string();
        assert!(e.contains("\"<c_2>\""), "{e}");
    }
}
