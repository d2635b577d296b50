//! `NativeTransformer`: the encoder-decoder model behind `tr.Transformer`.
//! model.py has already validated and converted every argument (C-contiguous
//! int64 / float32 / bool arrays of the right rank); here we borrow the
//! buffers, release the GIL, compute, and hand back new arrays.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::{
    IntoPyArray, PyArray3, PyArrayMethods, PyReadonlyArray2, PyReadonlyArray3, PyReadonlyArrayDyn,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use transformer_rs_core::decoding::SearchOptions;
use transformer_rs_core::model::{TokenBatch, Transformer, TransformerConfig};
use transformer_rs_core::nn::Tensor;

use crate::errors::compute;
use crate::ops::c_slice;

/// An immutable, thread-safe loaded model (shared by every Python thread).
#[pyclass(frozen, name = "NativeTransformer", module = "transformer_rs._native")]
pub struct NativeTransformer {
    inner: Arc<Transformer>,
}

/// Per source, (new tokens, score) pairs, best first.
type RankedHypotheses = Vec<Vec<(Vec<i64>, f32)>>;

/// `shape` is a 2-D array's (PyReadonlyArray2 guarantees the rank, so the
/// indexing cannot fail); the core checks the ids against it.
fn tokens<'a>(ids: &'a [i64], shape: &[usize]) -> TokenBatch<'a> {
    TokenBatch::new(ids, shape[0], shape[1])
}

#[pymethods]
impl NativeTransformer {
    /// Loads `path/config.json` + `path/model.safetensors` (memory-mapped).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let model = compute(py, || Transformer::load(&path))?;
        Ok(NativeTransformer {
            inner: Arc::new(model),
        })
    }

    /// Builds a model from config.json text and named C-contiguous float32 arrays.
    #[staticmethod]
    fn from_tensors(
        py: Python<'_>,
        config_json: &str,
        names: Vec<String>,
        arrays: Vec<PyReadonlyArrayDyn<'_, f32>>,
    ) -> PyResult<Self> {
        if names.len() != arrays.len() {
            return Err(PyValueError::new_err(format!(
                "names and arrays differ in length ({} vs {})",
                names.len(),
                arrays.len()
            )));
        }
        let mut views = Vec::with_capacity(arrays.len());
        for a in &arrays {
            views.push((a.shape().to_vec(), c_slice("arrays", a)?));
        }
        let model = compute(py, || {
            let config = TransformerConfig::from_json(config_json)?;
            let tensors = names
                .into_iter()
                .zip(views)
                .map(|(name, (shape, data))| Ok((name, Tensor::new(shape, data.to_vec())?)))
                .collect::<transformer_rs_core::Result<Vec<_>>>()?;
            Transformer::from_tensors(config, tensors)
        })?;
        Ok(NativeTransformer {
            inner: Arc::new(model),
        })
    }

    /// Writes `path/config.json` + `path/model.safetensors`.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        compute(py, || self.inner.save(&path))
    }

    /// config.json text.
    #[getter]
    fn config_json(&self) -> String {
        self.inner.config().to_json()
    }

    /// memory [B, S, E] for src [B, S].
    fn encode<'py>(
        &self,
        py: Python<'py>,
        src: PyReadonlyArray2<'py, i64>,
    ) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let shape = src.shape().to_vec();
        let ids = c_slice("src", &src)?;
        let e = self.inner.config().d_model;
        let out = compute(py, || self.inner.encode(tokens(ids, &shape)))?;
        out.into_pyarray(py).reshape([shape[0], shape[1], e])
    }

    /// logits [B, T, V] for tgt [B, T], memory [B, S, E], mask [B, S] or None.
    #[pyo3(signature = (tgt, memory, memory_key_padding_mask=None))]
    fn decode<'py>(
        &self,
        py: Python<'py>,
        tgt: PyReadonlyArray2<'py, i64>,
        memory: PyReadonlyArray3<'py, f32>,
        memory_key_padding_mask: Option<PyReadonlyArray2<'py, bool>>,
    ) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let shape = tgt.shape().to_vec();
        let ids = c_slice("tgt", &tgt)?;
        let m = memory.shape();
        let memory_shape = [m[0], m[1], m[2]];
        let mem = c_slice("memory", &memory)?;
        let mask = match &memory_key_padding_mask {
            Some(a) => Some(c_slice("memory_key_padding_mask", a)?),
            None => None,
        };
        let v = self.inner.config().tgt_vocab_size;
        let out = compute(py, || {
            self.inner
                .decode(tokens(ids, &shape), mem, memory_shape, mask)
        })?;
        out.into_pyarray(py).reshape([shape[0], shape[1], v])
    }

    /// logits [B, T, V] for src [B, S], tgt [B, T].
    fn forward<'py>(
        &self,
        py: Python<'py>,
        src: PyReadonlyArray2<'py, i64>,
        tgt: PyReadonlyArray2<'py, i64>,
    ) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let (src_shape, tgt_shape) = (src.shape().to_vec(), tgt.shape().to_vec());
        let (src_ids, tgt_ids) = (c_slice("src", &src)?, c_slice("tgt", &tgt)?);
        let v = self.inner.config().tgt_vocab_size;
        let out = compute(py, || {
            self.inner
                .forward(tokens(src_ids, &src_shape), tokens(tgt_ids, &tgt_shape))
        })?;
        out.into_pyarray(py)
            .reshape([tgt_shape[0], tgt_shape[1], v])
    }

    /// Per source, up to `num_hypotheses` (new tokens, score), best first;
    /// greedy scores are NaN unless `return_scores`.
    #[allow(clippy::too_many_arguments)] // `Transformer.generate`'s arguments, flat
    fn generate(
        &self,
        py: Python<'_>,
        src: PyReadonlyArray2<'_, i64>,
        max_new_tokens: usize,
        beam_size: usize,
        length_penalty: f32,
        num_hypotheses: usize,
        return_scores: bool,
    ) -> PyResult<RankedHypotheses> {
        let shape = src.shape().to_vec();
        let ids = c_slice("src", &src)?;
        let cfg = self.inner.config();
        let opts = SearchOptions {
            max_new_tokens,
            beam_size,
            length_penalty,
            num_hypotheses,
            bos_id: cfg.bos_id,
            eos_id: cfg.eos_id,
            return_scores,
        };
        let hyps = compute(py, || self.inner.generate(tokens(ids, &shape), &opts))?;
        Ok(hyps
            .into_iter()
            .map(|hs| hs.into_iter().map(|h| (h.tokens, h.score)).collect())
            .collect())
    }
}
