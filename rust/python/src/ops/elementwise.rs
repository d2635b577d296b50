//! Element-wise activations: relu, gelu.

use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use transformer_rs_core::kernels::activations;

use super::arrays::{c_slice, Output};
use crate::errors::compute;

/// relu(x) = max(x, 0) of a C-contiguous float32 array of any shape.
#[pyfunction]
pub fn relu<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    map_copy(py, x, activations::relu_inplace)
}

/// gelu(x) = x·Φ(x) (exact erf form) of a C-contiguous float32 array.
#[pyfunction]
pub fn gelu<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    map_copy(py, x, activations::gelu_inplace)
}

/// A copy of x with `kernel` applied in place (the kernel parallelises
/// large inputs itself).
fn map_copy<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    kernel: fn(&mut [f32]),
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let shape = x.shape().to_vec();
    let src = c_slice("x", &x)?;
    let mut out = Output::zeros(py, &shape)?;
    let y = out.data()?;
    compute(py, || {
        y.copy_from_slice(src);
        kernel(y);
        Ok(())
    })?;
    Ok(out.into_array())
}
