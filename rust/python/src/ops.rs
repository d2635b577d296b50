//! `tr.ops` kernels. The Python layer (ops.py) has already validated shapes
//! and converted every array to C-contiguous float32; here we only borrow the
//! buffers, release the GIL, compute, and hand back a new array.

use numpy::{IntoPyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use transformer_rs_core::kernels::activations;

use crate::errors::compute;

/// relu(x) for a C-contiguous float32 array.
#[pyfunction]
pub fn relu<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let shape = x.shape().to_vec();
    let src = x.as_slice()?;
    let out = compute(py, || {
        let mut out = src.to_vec();
        activations::relu_inplace(&mut out);
        Ok(out)
    })?;
    out.into_pyarray(py).reshape(shape)
}
