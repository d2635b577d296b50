//! Leading batch axes broadcast by NumPy's rules, turned into one offset per
//! output item for each operand, so a broadcast operand is read in place
//! (offset repeats) and never materialised.

use pyo3::prelude::*;

use super::arrays::value_error;

/// Splits the shape `[..., rows, cols]` of argument `name` into
/// (batch axes, rows, cols); `what` spells the expected shape for the error.
pub fn split_matrix<'s>(
    name: &str,
    what: &str,
    shape: &'s [usize],
) -> PyResult<(&'s [usize], usize, usize)> {
    match shape {
        [batch @ .., rows, cols] => Ok((batch, *rows, *cols)),
        _ => Err(value_error(format!(
            "{name}: expected shape {what}, got {shape:?}"
        ))),
    }
}

/// The broadcast of the named batch shapes (NumPy rules: right-aligned,
/// each axis equal or 1).
pub fn broadcast(operands: &[(&str, &[usize])]) -> PyResult<Vec<usize>> {
    let ndim = operands.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; ndim];
    for (name, shape) in operands {
        let pad = ndim - shape.len();
        for (axis, &d) in shape.iter().enumerate() {
            let o = &mut out[pad + axis];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                let others: Vec<_> = operands.iter().map(|(n, s)| format!("{n} {s:?}")).collect();
                return Err(value_error(format!(
                    "{name}: batch shape {shape:?} does not broadcast with the others ({})",
                    others.join(", ")
                )));
            }
        }
    }
    Ok(out)
}

/// Checks that batch shape `shape` of argument `name` broadcasts to `target`
/// without enlarging it.
pub fn check_broadcasts_to(name: &str, shape: &[usize], target: &[usize]) -> PyResult<()> {
    let fits = shape.len() <= target.len()
        && shape
            .iter()
            .rev()
            .zip(target.iter().rev())
            .all(|(&d, &t)| d == 1 || d == t);
    if fits {
        Ok(())
    } else {
        Err(value_error(format!(
            "{name}: batch shape {shape:?} does not broadcast to {target:?}"
        )))
    }
}

/// For each item of the output batch `out_batch` (row-major order), the
/// offset of the operand's matrix: its batch shape `batch` is right-aligned
/// against `out_batch`, axes of size 1 repeat, and each matrix holds
/// `matrix_len` elements. `batch` must broadcast to `out_batch`.
pub fn item_offsets(out_batch: &[usize], batch: &[usize], matrix_len: usize) -> Vec<usize> {
    let pad = out_batch.len() - batch.len();
    // Element stride of each output axis in the operand; 0 where it repeats.
    let mut strides = vec![0usize; out_batch.len()];
    let mut stride = matrix_len;
    for (axis, &d) in batch.iter().enumerate().rev() {
        strides[pad + axis] = if d == 1 { 0 } else { stride };
        stride *= d;
    }
    let items: usize = out_batch.iter().product();
    let mut offsets = Vec::with_capacity(items);
    let mut index = vec![0usize; out_batch.len()];
    let mut offset = 0usize;
    for _ in 0..items {
        offsets.push(offset);
        // Odometer step over the output batch index.
        for axis in (0..out_batch.len()).rev() {
            index[axis] += 1;
            offset += strides[axis];
            if index[axis] < out_batch[axis] {
                break;
            }
            offset -= strides[axis] * index[axis];
            index[axis] = 0;
        }
    }
    offsets
}
