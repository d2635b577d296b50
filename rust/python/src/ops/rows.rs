//! Row-wise ops over the last axis: softmax, log_softmax, layer_norm.
//! (ops.py moves another softmax axis last before calling these.)

use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use transformer_rs_core::kernels::{layer_norm as ln, softmax as sm};

use super::arrays::{c_slice, value_error, Output};
use crate::errors::compute;

/// softmax over the last axis of x [..., N].
#[pyfunction]
pub fn softmax<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    map_rows(py, x, sm::softmax_rows)
}

/// log_softmax over the last axis of x [..., N].
#[pyfunction]
pub fn log_softmax<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    map_rows(py, x, sm::log_softmax_rows)
}

/// A copy of x [..., N] with `kernel(rows, N)` applied in place (the kernel
/// parallelises over rows itself).
fn map_rows<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    kernel: fn(&mut [f32], usize),
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let shape = x.shape().to_vec();
    let Some(&n) = shape.last() else {
        return Err(value_error(
            "x: expected at least 1 dimension, got a 0-d array".into(),
        ));
    };
    let src = c_slice("x", &x)?;
    let mut out = Output::zeros(py, &shape)?;
    let y = out.data()?;
    compute(py, || {
        if n > 0 {
            y.copy_from_slice(src);
            kernel(y, n);
        }
        Ok(())
    })?;
    Ok(out.into_array())
}

/// Layer normalisation of x [..., E] over its last axis, with weight and
/// bias [E]: (x - mean) / sqrt(var + eps) · weight + bias.
#[pyfunction]
pub fn layer_norm<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    weight: PyReadonlyArrayDyn<'py, f32>,
    bias: PyReadonlyArrayDyn<'py, f32>,
    eps: f32,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let shape = x.shape().to_vec();
    let Some(&e) = shape.last() else {
        return Err(value_error(
            "x: expected shape [..., E], got a 0-d array".into(),
        ));
    };
    for (name, param) in [("weight", &weight), ("bias", &bias)] {
        if param.shape() != [e] {
            return Err(value_error(format!(
                "{name}: expected shape [{e}] to match x's last axis, got {:?}",
                param.shape()
            )));
        }
    }
    let (src, gamma, beta) = (
        c_slice("x", &x)?,
        c_slice("weight", &weight)?,
        c_slice("bias", &bias)?,
    );
    let mut out = Output::zeros(py, &shape)?;
    let y = out.data()?;
    compute(py, || {
        if e > 0 {
            ln::layer_norm_rows(src, gamma, beta, eps, y);
        }
        Ok(())
    })?;
    Ok(out.into_array())
}
