//! Argument errors, output buffers and result arrays shared by the op bindings.

use numpy::ndarray::{ArrayD, Dimension, IxDyn};
use numpy::{
    Element, IntoPyArray, PyArrayDyn, PyReadonlyArray, PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;

/// A `ValueError`; the message names the argument and what was expected.
pub fn value_error(message: String) -> PyErr {
    PyValueError::new_err(message)
}

/// The elements of argument `name` in row-major order. `TypeError` unless
/// C-contiguous: NumPy also calls a Fortran-ordered array contiguous, and
/// reading that as row-major would silently transpose it.
pub fn c_slice<'a, T: Element, D: Dimension>(
    name: &str,
    array: &'a PyReadonlyArray<'_, T, D>,
) -> PyResult<&'a [T]> {
    if !array.is_c_contiguous() {
        return Err(PyTypeError::new_err(format!(
            "{name}: expected a C-contiguous {} array",
            std::any::type_name::<T>()
        )));
    }
    Ok(array.as_slice()?)
}

/// [`c_slice`] of an optional argument.
pub fn c_slice_opt<'a>(
    name: &str,
    array: &'a Option<PyReadonlyArrayDyn<'_, f32>>,
) -> PyResult<Option<&'a [f32]>> {
    array.as_ref().map(|a| c_slice(name, a)).transpose()
}

/// Number of elements of an array of `shape`; like NumPy, `ValueError` when
/// the shape is too big for any array (even one with a zero axis), as
/// broadcast batch shapes can multiply up to absurd sizes.
pub fn element_count(shape: &[usize]) -> PyResult<usize> {
    let nonzero = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |n, &d| n.checked_mul(d));
    match nonzero {
        Some(n)
            if n.checked_mul(std::mem::size_of::<f32>())
                .is_some_and(|bytes| bytes <= isize::MAX as usize) =>
        {
            Ok(if shape.contains(&0) { 0 } else { n })
        }
        _ => Err(value_error(format!(
            "the result's shape {shape:?} is too big for an array"
        ))),
    }
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
pub fn into_array<'py>(
    py: Python<'py>,
    shape: &[usize],
    data: Vec<f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let array = ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| {
        PyRuntimeError::new_err(format!(
            "transformer_rs internal error (please report): {e}"
        ))
    })?;
    Ok(array.into_pyarray(py))
}
