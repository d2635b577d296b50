//! Matrix products: matmul (batched, broadcast) and linear (x·Wᵀ + b).

use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use rayon::prelude::*;
use transformer_rs_core::kernels::gemm::{gemm, MatRef};

use super::arrays::{c_slice, c_slice_opt, into_array, value_error, zeroed_output};
use super::batch::{broadcast, item_offsets, split_matrix};
use crate::errors::{compute, compute_on_calling_thread};

/// a [..., M, K] @ b [..., K, N] → [..., M, N], batch axes broadcast.
/// (ops.py turns 1-D operands into matrices and back.)
#[pyfunction]
pub fn matmul<'py>(
    py: Python<'py>,
    a: PyReadonlyArrayDyn<'py, f32>,
    b: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (a_batch, m, k) = split_matrix("a", "[..., M, K]", a.shape())?;
    let (b_batch, b_rows, n) = split_matrix("b", "[..., K, N]", b.shape())?;
    if b_rows != k {
        return Err(value_error(format!(
            "b: expected shape [..., {k}, N] to match a's last axis {k}, got {:?}",
            b.shape()
        )));
    }
    let batch = broadcast(&[("a", a_batch), ("b", b_batch)])?;
    let out_shape = [batch.as_slice(), &[m, n]].concat();
    let mut out = zeroed_output(&out_shape)?;
    if out.is_empty() {
        return into_array(py, &out_shape, out);
    }
    if k == 0 {
        return into_array(py, &out_shape, out); // sums over nothing: zeros
    }
    let a_items = item_offsets(&batch, a_batch, m * k);
    let b_items = item_offsets(&batch, b_batch, k * n);
    let (a, b) = (c_slice("a", &a)?, c_slice("b", &b)?);
    let b_shared = b_items.iter().all(|&o| o == b_items[0]);
    let a_dense = a_items.iter().enumerate().all(|(i, &o)| o == i * m * k);
    if b_shared && a_dense {
        // Every item multiplies the same B by consecutive A's: one GEMM with
        // M = items·M reads B once.
        let rows = a_items.len() * m;
        let product = || {
            gemm(
                matrix(a, 0, rows, k),
                matrix(b, b_items[0], k, n),
                0.0,
                &mut out,
                n,
            );
            Ok(())
        };
        compute_on_calling_thread(py, product)?;
    } else {
        compute(py, || {
            out.par_chunks_mut(m * n)
                .zip(a_items.par_iter().zip(&b_items))
                .for_each(|(c, (&ao, &bo))| {
                    gemm(matrix(a, ao, m, k), matrix(b, bo, k, n), 0.0, c, n);
                });
            Ok(())
        })?;
    }
    into_array(py, &out_shape, out)
}

/// The dense row-major `rows × cols` matrix starting at `data[offset]`.
fn matrix(data: &[f32], offset: usize, rows: usize, cols: usize) -> MatRef<'_> {
    MatRef::row_major(&data[offset..offset + rows * cols], rows, cols)
}

/// x [..., in] · weightᵀ + bias → [..., out]; weight [out, in] (PyTorch
/// layout, read through a transposed view: never copied), bias [out].
#[pyfunction]
#[pyo3(signature = (x, weight, bias=None))]
pub fn linear<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    weight: PyReadonlyArrayDyn<'py, f32>,
    bias: Option<PyReadonlyArrayDyn<'py, f32>>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let Some((&in_features, x_batch)) = x.shape().split_last() else {
        return Err(value_error(
            "x: expected shape [..., in_features], got a 0-d array".into(),
        ));
    };
    let out_features = match *weight.shape() {
        [out, inner] if inner == in_features => out,
        _ => {
            return Err(value_error(format!(
            "weight: expected shape [out_features, {in_features}] to match x's last axis, got {:?}",
            weight.shape()
        )))
        }
    };
    if let Some(bias) = &bias {
        if bias.shape() != [out_features] {
            return Err(value_error(format!(
                "bias: expected shape [{out_features}] (out_features), got {:?}",
                bias.shape()
            )));
        }
    }
    let out_shape = [x_batch, &[out_features]].concat();
    let mut out = zeroed_output(&out_shape)?;
    let (x, weight) = (c_slice("x", &x)?, c_slice("weight", &weight)?);
    let bias = c_slice_opt("bias", &bias)?;
    let product = || {
        linear_rows(x, in_features, weight, bias, out_features, &mut out);
        Ok(())
    };
    compute_on_calling_thread(py, product)?;
    into_array(py, &out_shape, out)
}

/// out [R×N] = x [R×K] · weightᵀ + bias, weight [N×K], bias [N]; `out` is
/// zeroed. Its only parallel loops are the GEMM's, which the calling thread
/// joins (the bias fill is a plain copy, cheap next to the product).
fn linear_rows(
    x: &[f32],
    k: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    out: &mut [f32],
) {
    if out.is_empty() {
        return;
    }
    let rows = out.len() / n;
    let beta = match bias {
        Some(bias) => {
            out.chunks_mut(n).for_each(|row| row.copy_from_slice(bias));
            1.0
        }
        None => 0.0,
    };
    if k > 0 {
        let w_t = MatRef::row_major(&weight[..n * k], n, k).t();
        gemm(
            MatRef::row_major(&x[..rows * k], rows, k),
            w_t,
            beta,
            out,
            n,
        );
    }
}
