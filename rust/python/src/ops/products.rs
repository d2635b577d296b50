//! Matrix products: matmul (batched, broadcast) and linear (x·Wᵀ + b).

use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use rayon::prelude::*;
use transformer_rs_core::kernels::gemm::{gemm, MatRef};

use super::arrays::{c_slice, c_slice_opt, value_error, Output};
use super::batch::{broadcast, item_offsets, split_matrix};
use crate::errors::{compute, compute_on_calling_thread};

/// a [..., M, K] @ b [..., K, N] → [..., M, N], batch axes broadcast, for
/// C-contiguous float32 arrays of at least 2 dimensions; None for anything
/// else, which ops.py converts (1-D operands, other dtypes and layouts) and
/// passes again. The common case is then this one call with no checks in
/// Python (they cost ~0.7 µs, as much as NumPy's whole call overhead).
#[pyfunction]
pub fn matmul<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyArrayDyn<f32>>>> {
    let (Some((a_shape, a)), Some((b_shape, b))) = (c_matrices(a), c_matrices(b)) else {
        return Ok(None);
    };
    let (a_batch, m, k) = split_matrix("a", "[..., M, K]", a_shape)?;
    let (b_batch, b_rows, n) = split_matrix("b", "[..., K, N]", b_shape)?;
    if b_rows != k {
        return Err(value_error(format!(
            "b: expected shape [..., {k}, N] to match a's last axis {k}, got {b_shape:?}"
        )));
    }
    let batch = broadcast(&[("a", a_batch), ("b", b_batch)])?;
    let mut out = Output::zeros(py, &[batch.as_slice(), &[m, n]].concat())?;
    let c = out.data()?;
    if c.is_empty() || k == 0 {
        return Ok(Some(out.into_array())); // K = 0 sums over nothing: zeros
    }
    let a_items = item_offsets(&batch, a_batch, m * k);
    let b_items = item_offsets(&batch, b_batch, k * n);
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
                c,
                n,
            );
            Ok(())
        };
        compute_on_calling_thread(py, product)?;
    } else {
        compute(py, || {
            c.par_chunks_mut(m * n)
                .zip(a_items.par_iter().zip(&b_items))
                .for_each(|(c, (&ao, &bo))| {
                    gemm(matrix(a, ao, m, k), matrix(b, bo, k, n), 0.0, c, n);
                });
            Ok(())
        })?;
    }
    Ok(Some(out.into_array()))
}

/// The shape and elements of `x` if it is a float32 array of at least 2
/// dimensions in C order.
fn c_matrices<'a>(x: &'a Bound<'_, PyAny>) -> Option<(&'a [usize], &'a [f32])> {
    let x = x.cast::<PyArrayDyn<f32>>().ok()?;
    if x.ndim() < 2 || !x.is_c_contiguous() {
        return None;
    }
    // SAFETY: C-contiguous, so the slice is exactly x's elements. Nothing in
    // this crate writes to an argument, and like NumPy's own matmul we read
    // it with the GIL released; a `PyReadonlyArray` borrow would add only a
    // check against other rust-numpy code holding a mutable borrow of the same
    // array, for ~0.2 µs a call.
    let data = unsafe { x.as_slice() }.ok()?;
    Some((x.shape(), data))
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
    let mut out = Output::zeros(py, &[x_batch, &[out_features]].concat())?;
    let (x, weight) = (c_slice("x", &x)?, c_slice("weight", &weight)?);
    let bias = c_slice_opt("bias", &bias)?;
    let y = out.data()?;
    let product = || {
        linear_rows(x, in_features, weight, bias, out_features, y);
        Ok(())
    };
    compute_on_calling_thread(py, product)?;
    Ok(out.into_array())
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
