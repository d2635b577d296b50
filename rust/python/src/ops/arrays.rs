//! Argument errors, output buffers and result arrays shared by the op bindings.

use std::os::raw::c_int;

use numpy::ndarray::{ArrayD, Dimension, IxDyn};
use numpy::npyffi::{npy_intp, PY_ARRAY_API};
use numpy::{
    Element, IntoPyArray, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArray,
    PyReadonlyArrayDyn, PyUntypedArrayMethods,
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

/// A new result array: allocated and zeroed by NumPy, written through a
/// plain slice (with the GIL released) before anything else sees it, then
/// returned. NumPy owns the memory from the start, which costs less per call
/// than handing it a Rust buffer (the capsule that keeps a `Vec` alive).
pub struct Output<'py>(Bound<'py, PyArrayDyn<f32>>);

impl<'py> Output<'py> {
    /// A C-order float32 array of `shape`, zeroed; `ValueError` when no
    /// array can have that shape, `MemoryError` when it cannot be allocated
    /// (never an abort).
    pub fn zeros(py: Python<'py>, shape: &[usize]) -> PyResult<Self> {
        let len = element_count(shape)?;
        let mut dims: Vec<npy_intp> = shape.iter().map(|&d| d as npy_intp).collect();
        // SAFETY: `dims` holds `shape.len()` dimensions, each ≤ isize::MAX
        // (element_count); PyArray_Zeros steals the descriptor reference
        // `into_dtype_ptr` hands it, and returns a new reference or NULL
        // with an exception set.
        let array = unsafe {
            let ptr = PY_ARRAY_API.PyArray_Zeros(
                py,
                dims.len() as c_int,
                dims.as_mut_ptr(),
                f32::get_dtype(py).into_dtype_ptr(),
                0,
            );
            Bound::from_owned_ptr_or_err(py, ptr)
        }
        .map_err(|e| {
            if e.is_instance_of::<PyMemoryError>(py) {
                PyMemoryError::new_err(format!("cannot allocate {len} float32 values"))
            } else {
                e
            }
        })?;
        // NumPy made it with the dtype and C order asked for.
        Ok(Output(array.cast_into::<PyArrayDyn<f32>>()?))
    }

    /// The elements, row-major, to write the result into.
    pub fn data(&mut self) -> PyResult<&mut [f32]> {
        // SAFETY: a new array (`zeros`) that no Python or Rust code but this
        // `Output` refers to until `into_array`, so the slice is the only
        // access to its memory while it lives. (NumPy made it C-contiguous;
        // `as_slice_mut` checks.)
        Ok(unsafe { self.0.as_slice_mut() }?)
    }

    /// The finished result.
    pub fn into_array(self) -> Bound<'py, PyArrayDyn<f32>> {
        self.0
    }
}

/// Hands a result the core made, `data` (row-major, `shape`), to NumPy
/// without copying.
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
