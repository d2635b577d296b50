//! y[1×N] = beta·y + a[1×K] · B[K×N] for a row-major B read in place.
//!
//! ```text
//! loop 2  ci: GEMV_COLS columns of y        (y's piece in L1)
//! loop 1  kb: a block of B's rows           (one contiguous stream of B)
//!         micro-kernel: partial = Σ_{p in block} a[p]·B[p, cols]
//! then    y[cols] += partial, blocks in order
//! ```
//!
//! Each (ci, kb) pair is a work item. Its partial sum starts from zero and
//! is added into y, blocks in order, so the rounding, and the result, is the
//! same for any number of threads: one thread adds each block's sums
//! straight into y (the kernel sums from zero and adds once), several write
//! them to buffers first and add those in the same order. Splitting K
//! rather than only N keeps each item's share of B one contiguous run of
//! rows, which the hardware prefetchers follow; a split of N alone would
//! hand each thread short pieces of every row.

use super::buffer::{with_scratch, Scratch};
use super::microkernel::{with_kernel, MicroKernel};
use super::{runs_on_calling_thread, MatRef};

use crate::kernels::dispatch::Isa;
use crate::parallel;

/// Columns of y one work item covers: its partial (8 KiB) stays in L1 while
/// the rows of B stream past.
const GEMV_COLS: usize = 2048;

/// B's size below which a GEMV stays on one thread even when the product
/// is large enough to split. Measured on two threads against one (Rust
/// loop, B in L2): K = 256, N = 512 (2^17) fell from 47 to 36 GFLOP/s, the
/// second thread's share no bigger than handing it over and adding up the
/// partials; K = N = 512 (2^18) rose from 35 to 56, each core keeping its
/// half of B in its own L2 from call to call.
const PAR_MIN_ELEMENTS: usize = 1 << 18;

/// Most blocks B's rows are split into (work items per column piece)...
const MAX_ROW_BLOCKS: usize = 8;
/// ...and the fewest rows a block has: below that, zeroing and adding a
/// block's partial stops being small next to its rows of B.
const MIN_BLOCK_ROWS: usize = 64;

/// C[1×N] = beta·C + a[1×K]·B[K×N] with B row-major (unit column stride):
/// see the module doc. K, N ≥ 1; shapes checked by the caller; `isa`
/// available.
pub(super) fn gemv(isa: Isa, a: MatRef, b: MatRef, beta: f32, c: &mut [f32]) {
    with_kernel!(isa, K => gemv_on::<K>(a, b, beta, c))
}

fn gemv_on<K: MicroKernel>(a: MatRef, b: MatRef, beta: f32, c: &mut [f32]) {
    let (k, n) = (a.cols, b.cols);
    // A's one row, copied only when strided.
    let a_row: std::borrow::Cow<[f32]> = if a.col_stride == 1 {
        std::borrow::Cow::Borrowed(&a.data[..k])
    } else {
        (0..k).map(|p| a.at(0, p)).collect()
    };
    let plan = Plan::new(k, n);
    // out[cols of item i] += item i's block sums.
    let item = |i: usize, out: &mut [f32]| {
        let (rows, cols) = plan.item(i);
        let b_block = &b.data[rows.start * b.row_stride + cols.start..];
        // SAFETY: `gemv`, the only way here, is only given available ISAs;
        // the kernel checks B's bounds itself.
        unsafe { K::gemv(&a_row[rows], b_block, b.row_stride, out) }
    };
    let y = &mut c[..n];
    if beta == 0.0 {
        y.fill(0.0);
    } else if beta != 1.0 {
        y.iter_mut().for_each(|v| *v *= beta);
    }
    if k * n < PAR_MIN_ELEMENTS || runs_on_calling_thread(1, k, n) {
        for i in 0..plan.items() {
            let cols = plan.item(i).1;
            item(i, &mut y[cols]);
        }
        return;
    }
    // Item i's partial is partials[i·width..][..its columns].
    let width = n.min(GEMV_COLS);
    with_scratch(Scratch::GemvPartials, plan.items() * width, |partials| {
        parallel::for_each_chunk_mut(partials, width, |i, out| {
            let out = &mut out[..plan.item(i).1.len()];
            // -0.0 is the identity of +: y + partial is then exactly what
            // one thread adds into y.
            out.fill(-0.0);
            item(i, out);
        });
        for (i, partial) in partials.chunks(width).enumerate() {
            let cols = plan.item(i).1;
            add(&mut y[cols.clone()], &partial[..cols.len()]);
        }
    });
}

/// The split of a K×N GEMV into work items, ordered column piece by column
/// piece, blocks of rows in order within each; depends on the shape only.
struct Plan {
    k: usize,
    n: usize,
    block_rows: usize,
    blocks: usize,
}

impl Plan {
    fn new(k: usize, n: usize) -> Plan {
        let block_rows = k.div_ceil(MAX_ROW_BLOCKS).max(MIN_BLOCK_ROWS);
        Plan {
            k,
            n,
            block_rows,
            blocks: k.div_ceil(block_rows),
        }
    }

    fn items(&self) -> usize {
        self.blocks * self.n.div_ceil(GEMV_COLS)
    }

    /// (rows of B, columns of y) of item `i`.
    fn item(&self, i: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let (ci, kb) = (i / self.blocks, i % self.blocks);
        let rows = kb * self.block_rows..((kb + 1) * self.block_rows).min(self.k);
        let cols = ci * GEMV_COLS..((ci + 1) * GEMV_COLS).min(self.n);
        (rows, cols)
    }
}

/// y += partial.
fn add(y: &mut [f32], partial: &[f32]) {
    y.iter_mut().zip(partial).for_each(|(y, p)| *y += p);
}
