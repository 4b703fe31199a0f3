//! `Index` (a memory-mapped version, following a root's `CURRENT`) and
//! `Vocab` (where SID tokens sit in a model's vocabulary), and the batched
//! constraint a logits processor calls once per beam step.

use std::path::{Path, PathBuf};

use numpy::ndarray::ArrayView1;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sidx::generate::Sidecar;
use sidx::index::{self, IndexStore, TokenId};
use sidx::sid::Token;

use crate::{sidx_err, value_err};

/// SID tokens in a model's vocabulary: SID token id `t` (the index's
/// layer-tagged id) is vocabulary id `to_model[t]`; `end_id` ends a SID.
#[pyclass(frozen, module = "sidx")]
pub struct Vocab {
    to_model: Vec<i64>,
    /// Vocabulary id → SID token id, -1 for other tokens.
    from_model: Vec<i32>,
    end_id: i64,
}

impl Vocab {
    fn build(to_model: Vec<i64>, end_id: i64) -> PyResult<Self> {
        let size = to_model.iter().copied().chain([end_id]).max().unwrap_or(0);
        if to_model.iter().chain([&end_id]).any(|&v| v < 0) {
            return Err(value_err("vocabulary ids must be non-negative"));
        }
        let mut from_model = vec![-1i32; size as usize + 1];
        for (t, &v) in to_model.iter().enumerate() {
            if from_model[v as usize] != -1 || v == end_id {
                return Err(value_err(format!(
                    "vocabulary id {v} is given to two tokens (SID token {t} and another)"
                )));
            }
            from_model[v as usize] = t as i32;
        }
        Ok(Self {
            to_model,
            from_model,
            end_id,
        })
    }

    /// The SID token of vocabulary id `v`, `None` for any other token.
    fn sid_token(&self, v: i64) -> Option<TokenId> {
        let t = *self.from_model.get(usize::try_from(v).ok()?)?;
        TokenId::try_from(t).ok()
    }

    /// Vocabulary ids allowed after `generated` (vocabulary ids of the SID
    /// so far) — children of its node, plus `end_id` where a SID ends;
    /// just `end_id` for a finished hypothesis (a non-SID token), a prefix
    /// no SID has, or a node with nothing allowed.
    fn allowed(&self, index: &index::Index, generated: ArrayView1<'_, i64>, out: &mut Vec<i64>) {
        out.clear();
        let mut node = Some(index.root());
        for &v in generated {
            node = match (node, self.sid_token(v)) {
                (Some(n), Some(t)) => index.child(n, t),
                _ => None,
            };
            if node.is_none() {
                break;
            }
        }
        if let Some(n) = node {
            out.extend(
                index
                    .children(n)
                    .iter()
                    .filter_map(|&t| self.to_model.get(usize::from(t)).copied()),
            );
            if index.is_terminal(n) {
                out.push(self.end_id);
            }
        }
        if out.is_empty() {
            out.push(self.end_id);
        }
    }
}

#[pymethods]
impl Vocab {
    /// SID token `t` at `offset + t` for `t < sid_token_limit` (sidx's
    /// training tooling), or the listed `sid_token_ids`; `end_id` ends a SID.
    #[new]
    #[pyo3(signature = (end_id, offset=None, sid_token_limit=None, sid_token_ids=None))]
    fn new(
        end_id: i64,
        offset: Option<i64>,
        sid_token_limit: Option<usize>,
        sid_token_ids: Option<Vec<i64>>,
    ) -> PyResult<Self> {
        let to_model = match (offset, sid_token_limit, sid_token_ids) {
            (Some(o), Some(n), None) => (0..n as i64).map(|t| o + t).collect(),
            (None, None, Some(ids)) => ids,
            _ => {
                return Err(value_err(
                    "give offset and sid_token_limit, or sid_token_ids",
                ));
            }
        };
        Self::build(to_model, end_id)
    }

    /// The mapping a generator sidecar (`generator.json`) records — the
    /// one `sidx serve generator` decodes with.
    #[staticmethod]
    fn from_sidecar(path: PathBuf) -> PyResult<Self> {
        let s = Sidecar::load(&path).map_err(sidx_err)?;
        let to_model = (0..s.sid_token_limit)
            .map(|t| TokenId::try_from(t).map(|t| s.vocab_id(t)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| value_err("sid_token_limit exceeds 16-bit token ids"))?;
        Self::build(to_model, i64::from(s.end_of_sid_id))
    }

    #[getter]
    fn end_id(&self) -> i64 {
        self.end_id
    }

    /// Vocabulary id of each SID token id.
    #[getter]
    fn sid_token_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        self.to_model.clone().into_pyarray(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "Vocab({} SID tokens, end_id={})",
            self.to_model.len(),
            self.end_id
        )
    }
}

/// A memory-mapped, verified index version. Opened on a root (the
/// directory holding `CURRENT` and `versions/`), it serves the current
/// version and `reload()` follows `CURRENT`; opened on a version
/// directory, that version.
#[pyclass(module = "sidx")]
pub struct Index {
    index: index::Index,
    root: Option<PathBuf>,
}

fn open(path: &Path) -> PyResult<(index::Index, Option<PathBuf>)> {
    if !path.is_dir() {
        return Err(sidx_err(format!(
            "{}: no such index root or version directory",
            path.display()
        )));
    }
    if path.join(index::CURRENT_FILE).exists() {
        let index = IndexStore::new(path).open_current().map_err(sidx_err)?;
        return Ok((index, Some(path.to_owned())));
    }
    Ok((index::Index::open(path).map_err(sidx_err)?, None))
}

/// A prefix of Python ints as 16-bit SID token ids.
fn token_ids(prefix: &[i64]) -> PyResult<Vec<TokenId>> {
    prefix
        .iter()
        .map(|&t| {
            TokenId::try_from(t)
                .map_err(|_| value_err(format!("token id {t} is not a 16-bit SID token id")))
        })
        .collect()
}

#[pymethods]
impl Index {
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        let (index, root) = open(&path)?;
        Ok(Self { index, root })
    }

    /// The catalog version served.
    #[getter]
    fn version(&self) -> u64 {
        self.index.version()
    }

    /// The version directory served.
    #[getter]
    fn path(&self) -> PathBuf {
        self.index.dir().to_owned()
    }

    /// Opens the version `CURRENT` names if it changed; True if it did.
    /// (A version directory opened directly never changes.)
    fn reload(&mut self) -> PyResult<bool> {
        let Some(root) = &self.root else {
            return Ok(false);
        };
        let store = IndexStore::new(root);
        match store.current().map_err(sidx_err)? {
            Some(v) if v != self.index.version() => {
                self.index = store.open_current().map_err(sidx_err)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// SID token ids that may follow `prefix` (token ids), ascending; empty
    /// when no SID starts with it.
    fn next_tokens<'py>(
        &self,
        py: Python<'py>,
        prefix: Vec<i64>,
    ) -> PyResult<Bound<'py, PyArray1<u16>>> {
        let ids = token_ids(&prefix)?;
        Ok(self
            .index
            .next_tokens(&ids)
            .allowed
            .to_vec()
            .into_pyarray(py))
    }

    /// The next tokens of many prefixes in one call, as CSR arrays:
    /// `(offsets int64 [B + 1], tokens uint16, complete bool [B])` — the
    /// tokens of prefix `b` are `tokens[offsets[b]:offsets[b + 1]]`.
    #[allow(clippy::type_complexity)]
    fn next_tokens_batch<'py>(
        &self,
        py: Python<'py>,
        prefixes: Vec<Vec<i64>>,
    ) -> PyResult<(
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyArray1<u16>>,
        Bound<'py, PyArray1<bool>>,
    )> {
        let mut offsets = Vec::with_capacity(prefixes.len() + 1);
        let mut tokens = Vec::new();
        let mut complete = Vec::with_capacity(prefixes.len());
        offsets.push(0i64);
        for p in &prefixes {
            let ids = token_ids(p)?;
            let next = self.index.next_tokens(&ids);
            tokens.extend_from_slice(next.allowed);
            complete.push(next.complete);
            offsets.push(tokens.len() as i64);
        }
        Ok((
            offsets.into_pyarray(py),
            tokens.into_pyarray(py),
            complete.into_pyarray(py),
        ))
    }

    /// Whether some SID starts with `prefix`.
    fn is_prefix(&self, prefix: Vec<i64>) -> PyResult<bool> {
        let ids = token_ids(&prefix)?;
        Ok(self.index.walk(&ids).is_some())
    }

    /// Whether `sid` (token ids) is a complete SID.
    fn is_complete(&self, sid: Vec<i64>) -> PyResult<bool> {
        let ids = token_ids(&sid)?;
        Ok(self.index.next_tokens(&ids).complete)
    }

    /// Item ids whose SID is exactly `sid`.
    fn items(&self, sid: Vec<i64>) -> PyResult<Vec<String>> {
        let ids = token_ids(&sid)?;
        Ok(self
            .index
            .items(&ids)
            .map(std::borrow::Cow::into_owned)
            .collect())
    }

    /// The SID (token ids) of an item, None if the item is unknown.
    fn sid(&self, item: &str) -> Option<Vec<u16>> {
        self.index.sid(item)
    }

    /// The `(layer, code)` of each token id.
    fn tokens(&self, sid: Vec<u16>) -> Vec<(u8, u32)> {
        sid.iter()
            .map(|&t| {
                let t = self.index.token(t);
                (t.layer, t.code)
            })
            .collect()
    }

    /// The token id of `(layer, code)` (1-based layers; layer L + 1 holds
    /// disambiguation codes).
    fn token_id(&self, layer: u8, code: u32) -> PyResult<u16> {
        self.index
            .token_id(Token::new(layer, code))
            .map_err(|e| value_err(e.to_string()))
    }

    /// Counts and layout of the version served.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.index.manifest();
        let d = PyDict::new(py);
        d.set_item("version", m.catalog_version)?;
        d.set_item("sids", m.sids)?;
        d.set_item("items", m.items)?;
        d.set_item("nodes", m.nodes)?;
        d.set_item("bytes", m.bytes())?;
        d.set_item(
            "codebook_sizes",
            self.index.layout().codebook_sizes().to_vec(),
        )?;
        d.set_item("max_sid_len", self.index.max_sid_len())?;
        d.set_item("collisions", m.collisions.to_string())?;
        d.set_item("path", self.index.dir())?;
        Ok(d)
    }

    /// The vocabulary ids each row of `generated` ([rows, t] int64: the
    /// tokens generated so far, prompt excluded) may take next, as
    /// `(rows, cols)` index arrays of the allowed cells of a
    /// `[rows, vocab]` logits matrix — one call per beam step for a whole
    /// batch of beams. A row that holds a non-SID token (finished), or a
    /// prefix no SID has, may only take `vocab.end_id`.
    fn allowed<'py>(
        &self,
        py: Python<'py>,
        vocab: &Vocab,
        generated: PyReadonlyArray2<'py, i64>,
    ) -> (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>) {
        let generated = generated.as_array();
        let (mut rows, mut cols) = (Vec::new(), Vec::new());
        let mut allowed = Vec::new();
        for (r, row) in generated.rows().into_iter().enumerate() {
            vocab.allowed(&self.index, row, &mut allowed);
            rows.extend(std::iter::repeat_n(r as i64, allowed.len()));
            cols.extend_from_slice(&allowed);
        }
        (rows.into_pyarray(py), cols.into_pyarray(py))
    }

    /// `allowed` for one sequence (a `prefix_allowed_tokens_fn` answer).
    fn allowed_one(&self, vocab: &Vocab, generated: PyReadonlyArray1<'_, i64>) -> Vec<i64> {
        let mut out = Vec::new();
        vocab.allowed(&self.index, generated.as_array(), &mut out);
        out
    }

    fn __repr__(&self) -> String {
        format!(
            "Index(version={}, sids={}, items={}, path={:?})",
            self.index.version(),
            self.index.sid_count(),
            self.index.item_count(),
            self.index.dir()
        )
    }
}
