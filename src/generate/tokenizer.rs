//! The model's Hugging Face tokenizer (`tokenizer.json`, read with the
//! `tokenizers` crate): SID token names resolved to vocabulary ids, and a
//! prompt template's text tokenized as Hugging Face tokenizes the whole
//! prompt.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

/// A loaded `tokenizer.json`.
pub(super) struct HfTokenizer {
    inner: Tokenizer,
    path: PathBuf,
}

/// A prompt template's text as vocabulary ids.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TemplateIds {
    pub prefix: Vec<u32>,
    pub suffix: Vec<u32>,
    /// Between history items (when the template has a separator).
    pub separator: Option<Vec<u32>>,
}

impl HfTokenizer {
    pub fn open(path: &Path) -> Result<Self, String> {
        let inner =
            Tokenizer::from_file(path).map_err(|e| format!("tokenizer {}: {e}", path.display()))?;
        Ok(HfTokenizer {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// The vocabulary id of SID token id `0..limit` named by `template`
    /// (see [`sid_token_name`]), each of which the tokenizer must have.
    pub fn sid_token_ids(
        &self,
        template: &str,
        codebook_sizes: &[u32],
        limit: u32,
    ) -> Result<Vec<u32>, String> {
        (0..limit)
            .map(|t| {
                let name = sid_token_name(template, codebook_sizes, t);
                self.inner.token_to_id(&name).ok_or_else(|| {
                    format!(
                        "SID token {t} is {name:?}, which {} does not have",
                        self.path.display()
                    )
                })
            })
            .collect()
    }

    /// How many SID token ids, counted from 0, `template` names in this tokenizer.
    pub fn count_sid_tokens(&self, template: &str, codebook_sizes: &[u32]) -> u32 {
        (0..crate::index::TOKEN_ID_LIMIT)
            .take_while(|&t| {
                self.inner
                    .token_to_id(&sid_token_name(template, codebook_sizes, t))
                    .is_some()
            })
            .count() as u32
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| format!("tokenizer {}: {e}", self.path.display()))
    }

    /// The ids of `text` (which holds `{history}` once) before and after
    /// the history, and of `separator` between its items.
    ///
    /// Hugging Face tokenizes a whole prompt, and text beside an added token
    /// (the SID tokens of an LLM vocabulary are) is tokenized on its own. So
    /// each piece is tokenized in its context — next to the SID token with
    /// vocabulary id `sid_token`, split off again — which keeps what a
    /// pre-tokenizer does at a piece's edge (a prefix space, say) the same
    /// as in the whole prompt. Where that token is not one token of its own
    /// in this tokenizer, the pieces are tokenized alone.
    pub fn template_ids(
        &self,
        text: &str,
        separator: Option<&str>,
        sid_token: u32,
    ) -> Result<TemplateIds, String> {
        let (before, after) = match text.split_once("{history}") {
            Some((b, a)) if !a.contains("{history}") => (b, a),
            _ => return Err(format!("text {text:?} must hold {{history}} once")),
        };
        let sentinel = self
            .inner
            .id_to_token(sid_token)
            .filter(|s| self.encode(s).is_ok_and(|ids| ids == [sid_token]));
        let Some(s) = sentinel else {
            return Ok(TemplateIds {
                prefix: self.encode(before)?,
                suffix: self.encode(after)?,
                separator: separator.map(|t| self.encode(t)).transpose()?,
            });
        };
        let piece = |text: String, lead: bool, trail: bool| {
            let mut ids = self.encode(&text)?;
            let ok = (!lead || ids.first() == Some(&sid_token))
                && (!trail || ids.last() == Some(&sid_token))
                && ids.len() >= usize::from(lead) + usize::from(trail);
            if !ok {
                return Err(format!(
                    "{text:?} does not tokenize with {s:?} as a token of its own at its edge"
                ));
            }
            ids.truncate(ids.len() - usize::from(trail));
            ids.drain(..usize::from(lead));
            Ok(ids)
        };
        Ok(TemplateIds {
            prefix: piece(format!("{before}{s}"), false, true)?,
            suffix: piece(format!("{s}{after}"), true, false)?,
            separator: separator
                .map(|t| piece(format!("{s}{t}{s}"), true, true))
                .transpose()?,
        })
    }
}

/// The name of SID token id `t` under `template` for a layout of
/// `codebook_sizes`: `{layer}` (1-based), `{letter}` (a for layer 1, b, …;
/// the disambiguation layer is the letter after the last quantizer layer)
/// and `{code}` (within the layer).
pub(super) fn sid_token_name(template: &str, codebook_sizes: &[u32], t: u32) -> String {
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
