//! The generator's sidecar (`generator.json` next to the model): how SID
//! tokens map to vocabulary ids, the special tokens, and the prompt format.
//! Version 1 (written by `python/train_generator.py`, `sidx generator init`):
//! SID token `t` at `sid_token_offset + t`, prompts `BOS (SID SEP)*`.
//! Version 2 adds what an LLM's vocabulary needs: SID tokens listed
//! (`sid_token_ids`) or named through the model's `tokenizer.json`
//! (`sid_token_names`, e.g. `<{letter}_{code}>` for `<a_12>`), an optional
//! BOS, token ids before and after the history and between its items, or
//! a text template around the history tokenized with that tokenizer.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::GenerateError;
use super::tokenizer::HfTokenizer;
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
    /// Version 2: vocabulary ids between history items, instead of `sep_id`
    /// after each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_separator: Option<Vec<u32>>,
    /// Version 2: the prompt as text around the history, tokenized with the
    /// model's tokenizer when the sidecar is loaded (into `prompt_prefix`,
    /// `prompt_suffix` and `history_separator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_template: Option<PromptTemplate>,
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

/// A prompt as text: `The user bought {history}. Next:`, the history's
/// items (each its SID tokens) joined by `separator`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptTemplate {
    /// The tokenizer file, relative to the sidecar's folder.
    pub tokenizer: PathBuf,
    /// The text, holding `{history}` once.
    pub text: String,
    /// Text between history items [default: `sep_id` after each item].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
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
    pub prompt_template: Option<PromptTemplate>,
    /// The folder the sidecar is written to (tokenizer paths are relative to it).
    pub dir: PathBuf,
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
    Names(SidTokenNames),
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
        s.resolve(path.parent().unwrap_or(Path::new(".")))
            .map_err(err)?;
        s.check().map_err(err)?;
        Ok(s)
    }

    /// Fills what the tokenizer-backed fields stand for: `sid_token_ids`
    /// from `sid_token_names`, and the prompt's ids from `prompt_template`
    /// (tokenizer paths relative to `dir`).
    fn resolve(&mut self, dir: &Path) -> Result<(), String> {
        if let Some(names) = &self.sid_token_names {
            let tokenizer = HfTokenizer::open(&dir.join(&names.tokenizer))
                .map_err(|e| format!("sid_token_names: {e}"))?;
            self.sid_token_ids = Some(
                tokenizer
                    .sid_token_ids(&names.template, &self.codebook_sizes, self.sid_token_limit)
                    .map_err(|e| format!("sid_token_names: {e}"))?,
            );
        }
        if let Some(t) = &self.prompt_template {
            if !self.prompt_prefix.is_empty()
                || !self.prompt_suffix.is_empty()
                || self.history_separator.is_some()
            {
                return Err("prompt_template replaces prompt_prefix, prompt_suffix and \
                            history_separator: give one or the other"
                    .into());
            }
            let e = |e: String| format!("prompt_template: {e}");
            let tokenizer = HfTokenizer::open(&dir.join(&t.tokenizer)).map_err(e)?;
            let ids = tokenizer
                .template_ids(&t.text, t.separator.as_deref(), self.sid_vocab_id(0))
                .map_err(e)?;
            self.prompt_prefix = ids.prefix;
            self.prompt_suffix = ids.suffix;
            self.history_separator = ids.separator;
        }
        Ok(())
    }

    /// The file's form of a resolved sidecar: what the tokenizer-backed
    /// fields stand for left out again.
    fn unresolved(mut self) -> Self {
        if self.sid_token_names.is_some() {
            self.sid_token_ids = None;
        }
        if self.prompt_template.is_some() {
            self.prompt_prefix.clear();
            self.prompt_suffix.clear();
            self.history_separator = None;
        }
        self
    }

    /// A sidecar for a model of `vocab_size` tokens serving `index`: the SID
    /// tokens from `sid_token_offset` to the end of the vocabulary, the
    /// special ids and prompt limits of `init`; checked, index included.
    ///
    /// The result is what the file holds (names, not the ids they resolve
    /// to); it is checked resolved.
    pub fn init(vocab_size: u32, index: &Index, init: &SidecarInit) -> Result<Self, String> {
        let codebook_sizes = index.layout().codebook_sizes().to_vec();
        let (offset, names, limit) = match &init.sid_tokens {
            SidTokensInit::Offset(offset) => (
                Some(*offset),
                None,
                vocab_size.checked_sub(*offset).ok_or_else(|| {
                    format!("sid_token_offset {offset} is beyond the vocabulary of {vocab_size}")
                })?,
            ),
            SidTokensInit::Names(names) => {
                let tokenizer = HfTokenizer::open(&init.dir.join(&names.tokenizer))?;
                let limit = tokenizer.count_sid_tokens(&names.template, &codebook_sizes);
                (None, Some(names.clone()), limit)
            }
        };
        let v2 = names.is_some()
            || init.bos_id.is_none()
            || !init.prompt_prefix.is_empty()
            || !init.prompt_suffix.is_empty()
            || init.prompt_template.is_some();
        let mut s = Sidecar {
            format: "sidx-generator".into(),
            version: if v2 { 2 } else { 1 },
            vocab_size,
            pad_id: init.pad_id,
            bos_id: init.bos_id,
            sep_id: init.sep_id,
            end_of_sid_id: init.end_of_sid_id.unwrap_or(init.sep_id),
            sid_token_offset: offset,
            sid_token_ids: None,
            sid_token_names: names,
            prompt_prefix: init.prompt_prefix.clone(),
            prompt_suffix: init.prompt_suffix.clone(),
            history_separator: None,
            prompt_template: init.prompt_template.clone(),
            codebook_sizes,
            sid_token_limit: limit,
            max_positions: init.max_positions,
            max_history_items: init.max_history_items,
            decoder_start_id: init.decoder_start_id,
        };
        s.resolve(&init.dir)?;
        s.check()?;
        s.check_index(index)?;
        Ok(s.unresolved())
    }

    /// Parses and checks sidecar JSON (token names need [`Sidecar::load`],
    /// which knows the folder of the tokenizer).
    pub fn parse(text: &str) -> Result<Self, String> {
        let s: Sidecar = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if s.sid_token_names.is_some() || s.prompt_template.is_some() {
            return Err(
                "sid_token_names and prompt_template are resolved only when the \
                        sidecar is loaded from a file (they name a tokenizer beside it)"
                    .into(),
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
            || self.history_separator.is_some()
            || self.prompt_template.is_some()
            || self.bos_id.is_none();
        if self.version == 1 && v2 {
            return Err(
                "version 1 needs bos_id and sid_token_offset and has no sid_token_ids, \
                        sid_token_names, prompt_prefix, prompt_suffix, history_separator or \
                        prompt_template (those are version 2)"
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
            (
                "history_separator",
                self.history_separator.as_ref().unwrap_or(&Vec::new()),
            ),
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
        i64::from(self.sid_vocab_id(t))
    }

    fn sid_vocab_id(&self, t: TokenId) -> u32 {
        match &self.sid_token_ids {
            Some(ids) => ids.get(usize::from(t)).copied().unwrap_or(u32::MAX),
            None => self.sid_token_offset.unwrap_or(0) + u32::from(t),
        }
    }

    /// The prompt for a history of SIDs (oldest first): BOS, the prefix,
    /// each SID followed by SEP (or the SIDs joined by the history
    /// separator), the suffix — keeping the most recent items that fit.
    pub fn prompt<'a>(
        &self,
        history: impl DoubleEndedIterator<Item = &'a [TokenId]>,
        max_sid_len: usize,
    ) -> Vec<i64> {
        let fixed = usize::from(self.bos_id.is_some())
            + self.prompt_prefix.len()
            + self.prompt_suffix.len();
        let budget = (self.max_positions as usize).saturating_sub(1 + fixed + max_sid_len);
        let sep = self.history_separator.as_ref().map_or(1, Vec::len);
        let mut kept: Vec<&[TokenId]> = Vec::new();
        let mut len = 0;
        for sid in history.rev().take(self.max_history_items as usize) {
            if len + sid.len() + sep > budget {
                break;
            }
            len += sid.len() + sep;
            kept.push(sid);
        }
        let mut out = Vec::with_capacity(len + fixed);
        out.extend(self.bos_id.map(i64::from));
        out.extend(self.prompt_prefix.iter().map(|&t| i64::from(t)));
        for (i, sid) in kept.iter().rev().enumerate() {
            match &self.history_separator {
                Some(between) if i > 0 => out.extend(between.iter().map(|&t| i64::from(t))),
                _ => {}
            }
            out.extend(sid.iter().map(|&t| self.vocab_id(t)));
            if self.history_separator.is_none() {
                out.push(i64::from(self.sep_id));
            }
        }
        out.extend(self.prompt_suffix.iter().map(|&t| i64::from(t)));
        out
    }
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

    /// A word-level `tokenizer.json` (words split on whitespace): `hello` 5,
    /// `world` 6, `,` 7, and the SID tokens of layers 1, 2 (4 codes each)
    /// and 2 disambiguation codes, `<a_0>`…`<c_1>`, added at 100 + t.
    fn write_tokenizer(dir: &Path) {
        let mut added = Vec::new();
        let mut vocab = serde_json::json!({"<unk>": 0, "hello": 5, "world": 6, ",": 7});
        for t in 0..10u32 {
            let (letter, code) = match t {
                0..4 => ('a', t),
                4..8 => ('b', t - 4),
                _ => ('c', t - 8),
            };
            let name = format!("<{letter}_{code}>");
            vocab[&name] = (100 + t).into();
            added.push(
                serde_json::json!({"id": 100 + t, "content": name, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": false}),
            );
        }
        let tok = serde_json::json!({"version": "1.0", "truncation": null, "padding": null,
            "added_tokens": added, "normalizer": null,
            "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}});
        std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
    }

    fn named_v2() -> serde_json::Value {
        let mut v = v1();
        let o = v.as_object_mut().unwrap();
        o.insert("version".into(), 2.into());
        o.insert("vocab_size".into(), 200.into());
        o.remove("sid_token_offset");
        o.insert(
            "sid_token_names".into(),
            serde_json::json!({"tokenizer": "tokenizer.json", "template": "<{letter}_{code}>"}),
        );
        v
    }

    #[test]
    fn names_resolve_through_tokenizer_json() {
        let dir = tempfile::tempdir().unwrap();
        write_tokenizer(dir.path());
        let mut v = named_v2();
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

    #[test]
    fn a_text_template_is_tokenized_around_the_history() {
        let dir = tempfile::tempdir().unwrap();
        write_tokenizer(dir.path());
        let mut v = named_v2();
        v["prompt_template"] = serde_json::json!({"tokenizer": "tokenizer.json",
            "text": "hello world {history} world", "separator": " , "});
        let path = dir.path().join("generator.json");
        std::fs::write(&path, v.to_string()).unwrap();
        let s = Sidecar::load(&path).unwrap();
        assert_eq!(
            (&s.prompt_prefix[..], &s.prompt_suffix[..]),
            (&[5, 6][..], &[6][..])
        );
        assert_eq!(s.history_separator.as_deref(), Some(&[7][..]));
        let history: [&[TokenId]; 2] = [&[0, 4], &[1, 5, 8]];
        assert_eq!(
            s.prompt(history.into_iter(), 3),
            vec![1, 5, 6, 100, 104, 7, 101, 105, 108, 6],
            "BOS, prefix, the SIDs joined by the separator, suffix"
        );
        // Without a separator each item is followed by sep_id.
        v["prompt_template"]["separator"] = serde_json::Value::Null;
        std::fs::write(&path, v.to_string()).unwrap();
        let s = Sidecar::load(&path).unwrap();
        assert_eq!(
            s.prompt(history.into_iter(), 3),
            vec![1, 5, 6, 100, 104, 2, 101, 105, 108, 2, 6]
        );
        // {history} must be there once; ids and a template are exclusive.
        v["prompt_template"]["text"] = "hello world".into();
        std::fs::write(&path, v.to_string()).unwrap();
        let e = Sidecar::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("prompt_template") && e.contains("{history}"),
            "{e}"
        );
        v["prompt_template"]["text"] = "hello {history}".into();
        v["prompt_prefix"] = serde_json::json!([5]);
        std::fs::write(&path, v.to_string()).unwrap();
        let e = Sidecar::load(&path).unwrap_err().to_string();
        assert!(e.contains("one or the other"), "{e}");
    }
}
