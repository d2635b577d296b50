//! Argument errors, output buffers and result arrays shared by the op bindings.

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn};
use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// A `ValueError`; the message names the argument and what was expected.
pub fn value_error(message: String) -> PyErr {
    PyValueError::new_err(message)
}

/// Number of elements of an array of `shape`, or `MemoryError` if it
/// overflows (broadcast batch shapes can multiply up to absurd sizes).
pub fn element_count(shape: &[usize]) -> PyResult<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| PyMemoryError::new_err(format!("output of shape {shape:?} is too large")))
}

/// A zeroed buffer for `len` floats, or `MemoryError` (never an abort).
pub fn zeroed(len: usize) -> PyResult<Vec<f32>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|_| PyMemoryError::new_err(format!("cannot allocate {len} float32 values")))?;
    buf.resize(len, 0.0);
    Ok(buf)
}

/// A zeroed buffer for an output array of `shape`.
pub fn zeroed_output(shape: &[usize]) -> PyResult<Vec<f32>> {
    zeroed(element_count(shape)?)
}

/// Hands `data` (row-major, `shape`) to NumPy without copying.
pub fn into_array<'py>(py: Python<'py>, shape: &[usize], data: Vec<f32>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let array = ArrayD::from_shape_vec(IxDyn(shape), data)
        .map_err(|e| PyRuntimeError::new_err(format!("transformer_rs internal error (please report): {e}")))?;
    Ok(array.into_pyarray(py))
}
