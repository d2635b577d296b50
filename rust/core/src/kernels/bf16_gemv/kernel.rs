//! The panel loops, generic over the vector type; instantiated per ISA.
//!
//! ```text
//! panel q (128 columns, K·256 bytes)        rows_panels_generic
//!   blocks of ROW_BLOCK rows                 sums of the block in a stack buffer
//!     blocks of K_BLOCK steps (16 KiB)       row_block: the block stays in L1
//!       groups of R rows (1 or 2)            shared loads of the weights
//!         passes over 128/P columns          pass: 2·R·NV accumulators in registers
//! ```

use crate::kernels::simd::{isa_kernel, F32Vec};

/// Columns of a panel.
pub(super) const PANEL: usize = 128;
/// u32 words of a panel per k step: 4 groups (cache lines) of 16.
pub(super) const STEP_WORDS: usize = 64;
/// Words of a group: one cache line.
pub(super) const GROUP_WORDS: usize = 16;
/// k steps every row and pass sweeps before the next block: 16 KiB of a
/// panel, which the first pass brings into L1 for the others.
const K_BLOCK: usize = 64;
/// Rows whose sums one sweep over a panel keeps (in a stack buffer); more
/// rows sweep the panel again, from L2.
const ROW_BLOCK: usize = 8;

/// Every PREFETCH_EVERY steps, the first pass over a block prefetches the
/// four lines of the step PREFETCH_STEPS (32 KiB) ahead: one line in eight,
/// the L2 streamer bringing in the rest. Measured on AVX-512, one thread, N
/// = 32000, K = 512, M = 1 (four copies of the weight in turn, 131 MB):
/// 3.3–3.6 ms without, 2.75–3.0 with; 16 to 256 steps ahead and every 4 to
/// 16 steps within noise of this, every step slower (the prefetches hold
/// the line fill buffers the loads need).
const PREFETCH_STEPS: usize = 128;
const PREFETCH_EVERY: usize = 8;
/// ISAs that sweep a block in several passes (AVX2, NEON, scalar): the
/// first also prefetches, every step, the lines of the step this far ahead
/// that only the later passes load. Without it their loads of those lines
/// found them not even in L2: AVX2 at M = 1 3.5–4.4 ms, with it 3.0–3.2.
const NEAR_PREFETCH_STEPS: usize = 4;

/// out's base pointer, shared by the threads that write its disjoint
/// columns.
#[derive(Clone, Copy)]
pub(super) struct OutPtr(pub *mut f32);

/// One product: x [M×K] (row r is the K f32 at `x + r·x_stride`) times the
/// packed panels `words` (see the module doc), into out [M×N] row-major.
#[derive(Clone, Copy)]
pub(super) struct Job {
    pub x: *const f32,
    pub x_stride: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub words: *const u32,
    pub out: OutPtr,
}

// SAFETY: a Job only reads x and the panels, which its creator (`gemv_with`)
// borrows for the whole call, and writes out through the columns of the
// panels a call is given: the chunks handed to different threads are
// disjoint ranges of panels, hence of columns, and `gemv_with` holds out's
// `&mut` until every chunk is done.
unsafe impl Send for Job {}
// SAFETY: as for Send; the threads share only the pointer values.
unsafe impl Sync for Job {}

isa_kernel! {
    /// Rows 0..M × panels `panels` of `job` (see [`rows_panels_generic`]).
    pub(super) fn rows_panels(job: Job, panels: std::ops::Range<usize>) = rows_panels_generic
}

/// out[r, 128q + c] for every row r < M, panel q in `panels` and column c
/// of it below N. Caller guarantees `V`'s ISA and `Job`'s contract, K ≥ 1,
/// panels within ceil(N/128), and that no other thread accesses these
/// columns of out meanwhile.
#[inline(always)]
unsafe fn rows_panels_generic<V: F32Vec>(job: Job, panels: std::ops::Range<usize>) {
    let mut sums = [0.0f32; ROW_BLOCK * PANEL];
    for q in panels {
        let panel = job.words.add(q * job.k * STEP_WORDS);
        let col0 = q * PANEL;
        let valid = PANEL.min(job.n - col0);
        for r0 in (0..job.m).step_by(ROW_BLOCK) {
            let rows = ROW_BLOCK.min(job.m - r0);
            let x = job.x.add(r0 * job.x_stride);
            row_block::<V>(x, job.x_stride, rows, job.k, panel, &mut sums);
            for i in 0..rows {
                let out = job.out.0.add((r0 + i) * job.n + col0);
                std::ptr::copy_nonoverlapping(sums.as_ptr().add(i * PANEL), out, valid);
            }
        }
    }
}

/// sums[i·128 + c] = Σ_{p<K} x[i·stride + p]·w̃[col0 + c, p] for rows
/// i < `rows` (≤ ROW_BLOCK) and the panel at `panel` (K·64 words). Blocks of
/// K_BLOCK steps: each block, in L1 once the first pass brought it in, is
/// swept by every row, in passes over as many columns as the ISA holds in
/// registers, the sums kept in `sums` between blocks. So the panel streams
/// from DRAM at one steady pace whatever M, and every column is one FMA
/// chain over p = 0, 1, ..., K-1.
///
/// Rows go two at a time where the registers allow, sharing the loads and
/// conversions of the weights: AVX-512 at M = 4 4.0 → 3.5 ms, AVX2 (two
/// rows in four passes of 32 columns) 4.5 → 4.3 ms. Four rows at a time in
/// two passes on AVX-512 was slower (4.4 ms).
#[inline(always)]
unsafe fn row_block<V: F32Vec>(
    x: *const f32,
    stride: usize,
    rows: usize,
    k: usize,
    panel: *const u32,
    sums: &mut [f32; ROW_BLOCK * PANEL],
) {
    sums[..rows * PANEL].fill(0.0);
    let mut p0 = 0;
    while p0 < k {
        let steps = K_BLOCK.min(k - p0);
        let w = panel.add(p0 * STEP_WORDS);
        let mut i = 0;
        while i < rows {
            let x0 = x.add(i * stride + p0);
            let s = sums.as_mut_ptr().add(i * PANEL);
            let first = i == 0;
            let pair = i + 1 < rows;
            // (Rows, vectors of words per pass): 2·R·NV accumulators.
            if V::LANES >= 16 {
                // AVX-512 (32 registers): 8 or 16 accumulators, one pass.
                if pair {
                    passes::<V, 2, 4>([x0, x0.add(stride)], steps, w, s, first);
                } else {
                    passes::<V, 1, 4>([x0], steps, w, s, first);
                }
            } else if V::LANES >= 8 {
                // AVX2 (16 registers): 8 accumulators, two or four passes.
                if pair {
                    passes::<V, 2, 2>([x0, x0.add(stride)], steps, w, s, first);
                } else {
                    passes::<V, 1, 4>([x0], steps, w, s, first);
                }
            } else if V::LANES >= 4 {
                // NEON (32 registers): 16 accumulators, two or four passes.
                if pair {
                    passes::<V, 2, 4>([x0, x0.add(stride)], steps, w, s, first);
                } else {
                    passes::<V, 1, 8>([x0], steps, w, s, first);
                }
            } else {
                // Scalar: 16 accumulators, eight passes, one row.
                passes::<V, 1, 8>([x0], steps, w, s, first);
            }
            i += if pair && V::LANES >= 4 { 2 } else { 1 };
        }
        p0 += steps;
    }
}

/// All the passes of R rows over one block of `steps` steps from `w`, NV
/// vectors of words each; `prefetch` for the block's first rows.
#[inline(always)]
unsafe fn passes<V: F32Vec, const R: usize, const NV: usize>(
    x: [*const f32; R],
    steps: usize,
    w: *const u32,
    sums: *mut f32,
    prefetch: bool,
) {
    for w0 in (0..STEP_WORDS).step_by(NV * V::LANES) {
        pass::<V, R, NV>(x, steps, w, w0, sums, prefetch && w0 == 0);
    }
}

/// The columns of words w0 .. w0 + NV·LANES of each step (low and high
/// halves) over `steps` steps from `w`, for rows x[i]:
/// sums[i·128 + col] += Σ_p x[i][p]·w̃[col, p], the sums held in 2·R·NV
/// registers meanwhile. NV·LANES divides 64 and LANES divides 16, so no
/// vector straddles two groups.
#[inline(always)]
unsafe fn pass<V: F32Vec, const R: usize, const NV: usize>(
    x: [*const f32; R],
    steps: usize,
    w: *const u32,
    w0: usize,
    sums: *mut f32,
    prefetch: bool,
) {
    // Word w0 + v·LANES + l' is in group g = (w0 + v·LANES) / 16, lane l =
    // (w0 + v·LANES) % 16 + l': column 32g + l (low half), 32g + 16 + l
    // (high half).
    let column = |v: usize| {
        let word = w0 + v * V::LANES;
        32 * (word / GROUP_WORDS) + word % GROUP_WORDS
    };
    let mut lo = [[V::splat(0.0); NV]; R];
    let mut hi = [[V::splat(0.0); NV]; R];
    for i in 0..R {
        for v in 0..NV {
            lo[i][v] = V::load(sums.add(i * PANEL + column(v)));
            hi[i][v] = V::load(sums.add(i * PANEL + column(v) + 16));
        }
    }
    // Groups this pass loads; the first pass prefetches the others.
    let own_groups = (NV * V::LANES).div_ceil(GROUP_WORDS);
    let mut p = 0;
    while p < steps {
        let chunk = PREFETCH_EVERY.min(steps - p);
        if prefetch {
            let ahead = w.wrapping_add((p + PREFETCH_STEPS) * STEP_WORDS);
            for g in 0..STEP_WORDS / GROUP_WORDS {
                V::prefetch(ahead.wrapping_add(g * GROUP_WORDS).cast());
            }
        }
        for p in p..p + chunk {
            if prefetch && own_groups < STEP_WORDS / GROUP_WORDS {
                let near = w.wrapping_add((p + NEAR_PREFETCH_STEPS) * STEP_WORDS);
                for g in own_groups..STEP_WORDS / GROUP_WORDS {
                    V::prefetch(near.wrapping_add(g * GROUP_WORDS).cast());
                }
            }
            let xv = x.map(|x| V::splat(*x.add(p)));
            let wp = w.add(p * STEP_WORDS + w0);
            for v in 0..NV {
                let (l, h) = V::load_bf16_pairs(wp.add(v * V::LANES));
                for i in 0..R {
                    lo[i][v] = xv[i].mul_add(l, lo[i][v]);
                    hi[i][v] = xv[i].mul_add(h, hi[i][v]);
                }
            }
        }
        p += chunk;
    }
    for i in 0..R {
        for v in 0..NV {
            lo[i][v].store(sums.add(i * PANEL + column(v)));
            hi[i][v].store(sums.add(i * PANEL + column(v) + 16));
        }
    }
}
