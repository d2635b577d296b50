//! `NativeBertModel`: the BERT encoder behind `tr.BertModel` and
//! `tr.SentenceEncoder`. bert.py has already validated and converted every
//! argument (C-contiguous int64 ids, a bool padding mask); here we borrow the
//! buffers, check them against the model while holding the GIL, release it,
//! compute, and hand back a new array.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::{
    IntoPyArray, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use transformer_rs_core::bert::{BertInput, BertModel, Pooling, PoolingMode};

use crate::errors::{compute, to_py};
use crate::ops::c_slice;

/// An immutable, thread-safe loaded BERT encoder.
#[pyclass(frozen, name = "NativeBertModel", module = "transformer_rs._native")]
pub struct NativeBertModel {
    inner: Arc<BertModel>,
}

#[pymethods]
impl NativeBertModel {
    /// Loads `path/config.json` + `path/model.safetensors` (memory-mapped).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let model = compute(py, || BertModel::load(&path))?;
        Ok(NativeBertModel {
            inner: Arc::new(model),
        })
    }

    /// The parsed config as JSON text (config.json keys).
    #[getter]
    fn config_json(&self) -> String {
        self.inner.config().to_json()
    }

    /// last_hidden_state [B, T, E] for input_ids [B, T]; key_padding_mask
    /// [B, T] (True = padding) and token_type_ids [B, T] optional.
    #[pyo3(signature = (input_ids, key_padding_mask=None, token_type_ids=None))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        input_ids: PyReadonlyArray2<'py, i64>,
        key_padding_mask: Option<PyReadonlyArray2<'py, bool>>,
        token_type_ids: Option<PyReadonlyArray2<'py, i64>>,
    ) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let shape = input_ids.shape().to_vec();
        let ids = c_slice("input_ids", &input_ids)?;
        let mask = match &key_padding_mask {
            Some(a) => Some(c_slice("attention_mask", a)?),
            None => None,
        };
        let types = match &token_type_ids {
            Some(a) => Some(c_slice("token_type_ids", a)?),
            None => None,
        };
        let e = self.inner.config().hidden_size;
        let input = BertInput {
            input_ids: ids,
            token_type_ids: types,
            key_padding_mask: mask,
            batch: shape[0],
            seq_len: shape[1],
        };
        let out = compute(py, || self.inner.forward(input))?;
        out.into_pyarray(py).reshape([shape[0], shape[1], e])
    }

    /// Sentence embeddings [B, P·E] of B sentences packed back to back:
    /// input_ids [N] and token_type_ids [N] (None: all type 0) hold each
    /// sentence's tokens in turn, lengths [B] their counts;
    /// pooling names the modes ("cls", "max", "mean", "mean_sqrt_len"),
    /// concatenated in that order; normalize scales each to unit length.
    #[pyo3(signature = (input_ids, lengths, token_type_ids, pooling, normalize))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        input_ids: PyReadonlyArray1<'py, i64>,
        lengths: PyReadonlyArray1<'py, i64>,
        token_type_ids: Option<PyReadonlyArray1<'py, i64>>,
        pooling: Vec<String>,
        normalize: bool,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let ids = c_slice("input_ids", &input_ids)?;
        let types = match &token_type_ids {
            Some(a) => Some(c_slice("token_type_ids", a)?),
            None => None,
        };
        let lengths = c_slice("lengths", &lengths)?
            .iter()
            .map(|&len| usize::try_from(len))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| {
                PyValueError::new_err("lengths: expected token counts >= 0, got a negative one")
            })?;
        let modes = pooling
            .iter()
            .map(|name| PoolingMode::from_name(name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(to_py)?;
        let pooling = Pooling::new(modes, normalize).map_err(to_py)?;
        let batch = self.inner.sentences(ids, types, &lengths).map_err(to_py)?;
        let width = pooling.width(self.inner.config().hidden_size);
        let out = compute(py, || Ok(batch.encode(&pooling)))?;
        out.into_pyarray(py).reshape([lengths.len(), width])
    }
}
