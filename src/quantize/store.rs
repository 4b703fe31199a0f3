//! Quantizer files: `codebooks.npy`, float32 `[L, M, D]` (layer, code,
//! dimension; `np.load` reads it), and `quantizer.json`, how it was trained.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Codebook, QuantizeError, ResidualQuantizer};
use crate::fsx::Staging;
use crate::npy;

pub const CODEBOOKS_FILE: &str = "codebooks.npy";
pub const QUANTIZER_FILE: &str = "quantizer.json";
const FORMAT: &str = "sidx-rq";

/// What `quantizer.json` records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizerMeta {
    pub format: String,
    pub version: u32,
    pub dim: usize,
    pub layers: usize,
    pub codebook_size: usize,
    pub seed: u64,
    /// Rows the codebooks were trained on.
    pub trained_on: usize,
    pub kmeans_iters: usize,
    /// Relative gain that stopped Lloyd iterations early (0: none; files
    /// written before it existed).
    #[serde(default)]
    pub kmeans_tol: f64,
    /// `kmeans||`, `kmeans++` or `random`.
    pub kmeans_init: String,
    /// Beam width items were encoded with.
    pub beam: usize,
    /// Items encoded and their mean squared reconstruction error.
    pub items: usize,
    pub mse: f64,
    /// `rq-kmeans` (files written before methods existed) or `rq-balanced`.
    #[serde(default)]
    pub method: super::Method,
    /// How `sidx quantize` resolved items sharing codes in its `sids.tsv`
    /// (absent from files written before `codes.npy`, and for `encode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collisions: Option<crate::sid::CollisionMode>,
}

impl QuantizerMeta {
    /// The `quantizer.json` beside a `codebooks.npy`, when there is one that parses.
    pub fn beside(codebooks: &Path) -> Option<Self> {
        let text = std::fs::read(codebooks.with_file_name(QUANTIZER_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn new(rq: &ResidualQuantizer) -> Self {
        Self {
            format: FORMAT.into(),
            version: 1,
            dim: rq.dim(),
            layers: rq.layers(),
            codebook_size: rq.codebooks()[0].k(),
            seed: 0,
            trained_on: 0,
            kmeans_iters: 0,
            kmeans_tol: 0.0,
            kmeans_init: String::new(),
            beam: 1,
            items: 0,
            mse: 0.0,
            method: super::Method::RqKmeans,
            collisions: None,
        }
    }
}

impl ResidualQuantizer {
    /// Stages `codebooks.npy` and `quantizer.json` under `dir`.
    pub fn stage(
        &self,
        staging: &mut Staging,
        dir: &Path,
        meta: &QuantizerMeta,
    ) -> Result<(), QuantizeError> {
        if let Some(l) = self
            .codebooks()
            .iter()
            .position(|c| c.k() != meta.codebook_size)
        {
            return Err(QuantizeError::Config(format!(
                "{CODEBOOKS_FILE} stores one codebook size; layer {} has {}, layer 1 {}",
                l + 1,
                self.codebooks()[l].k(),
                meta.codebook_size
            )));
        }
        let data: Vec<f32> = self
            .codebooks()
            .iter()
            .flat_map(|c| c.centroids())
            .copied()
            .collect();
        let shape = [self.layers(), meta.codebook_size, self.dim()];
        staging.write(&dir.join(CODEBOOKS_FILE), |w| {
            npy::write_to(w, &shape, &data)
        })?;
        let json = serde_json::to_vec_pretty(meta).expect("meta serializes");
        staging.write(&dir.join(QUANTIZER_FILE), |w| w.write_all(&json))?;
        Ok(())
    }

    /// Loads a quantizer from a `codebooks.npy` file (`[L, M, D]`).
    pub fn load(codebooks: &Path) -> Result<Self, QuantizeError> {
        let array = npy::read(codebooks)?;
        let [layers, k, dim] = array.shape[..] else {
            return Err(QuantizeError::Input {
                path: codebooks.to_owned(),
                msg: format!(
                    "expected shape [layers, codebook_size, dim], got {:?}",
                    array.shape
                ),
            });
        };
        if layers == 0 || k == 0 || dim == 0 {
            return Err(QuantizeError::Input {
                path: codebooks.to_owned(),
                msg: format!("empty codebooks, shape {:?}", array.shape),
            });
        }
        super::check_finite(&array.data, dim).map_err(|msg| QuantizeError::Input {
            path: codebooks.to_owned(),
            msg,
        })?;
        let books = array
            .data
            .chunks_exact(k * dim)
            .map(|c| Codebook::new(c.to_vec(), dim))
            .collect();
        Self::new(books)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Progress;
    use crate::quantize::TrainConfig;

    #[test]
    fn stage_then_load_roundtrips() {
        let x: Vec<f32> = (0..200).map(|i| ((i * 37) % 101) as f32 / 10.0).collect();
        let cfg = TrainConfig {
            layers: 2,
            codebook_size: 4,
            train_sample: None,
            kmeans_iters: 5,
            ..TrainConfig::default()
        };
        let rq = ResidualQuantizer::train(&x, 4, &cfg, &Progress::hidden()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut s = Staging::new();
        rq.stage(&mut s, dir.path(), &QuantizerMeta::new(&rq))
            .unwrap();
        s.commit().unwrap();
        let back = ResidualQuantizer::load(&dir.path().join(CODEBOOKS_FILE)).unwrap();
        assert_eq!(back, rq);
        let meta: QuantizerMeta =
            serde_json::from_slice(&std::fs::read(dir.path().join(QUANTIZER_FILE)).unwrap())
                .unwrap();
        assert_eq!((meta.layers, meta.codebook_size, meta.dim), (2, 4, 4));
    }
}
