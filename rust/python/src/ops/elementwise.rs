//! Element-wise activations: relu, gelu.

use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use rayon::prelude::*;
use transformer_rs_core::kernels::activations;

use super::arrays::{c_slice, into_array, zeroed};
use crate::errors::compute;

/// Elements per parallel task: large enough to amortise scheduling.
const CHUNK: usize = 1 << 14;

/// relu(x) = max(x, 0) of a C-contiguous float32 array of any shape.
#[pyfunction]
pub fn relu<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    map_chunks(py, x, activations::relu_inplace)
}

/// gelu(x) = x·Φ(x) (exact erf form) of a C-contiguous float32 array.
#[pyfunction]
pub fn gelu<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    map_chunks(py, x, activations::gelu_inplace)
}

fn map_chunks<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    kernel: fn(&mut [f32]),
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let shape = x.shape().to_vec();
    let src = c_slice("x", &x)?;
    let mut out = zeroed(src.len())?;
    compute(py, || {
        out.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(o, s)| {
                o.copy_from_slice(s);
                kernel(o);
            });
        Ok(())
    })?;
    into_array(py, &shape, out)
}
