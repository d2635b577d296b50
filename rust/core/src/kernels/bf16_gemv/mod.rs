//! Approximate logits from bf16 weights: out[M×N] = x[M×K] · W̃ᵀ, where
//! W̃ [N×K] is a Linear weight W (PyTorch layout, N = out_features, K =
//! in_features) rounded to bfloat16 once, and the products are summed in
//! f32.
//!
//! **Why.** A decoder step's output projection (N = 32000 words, K = 512, M
//! = the rows being decoded, a handful) is a GEMV that streams the whole
//! weight from DRAM: 65.5 MB in f32. Its bf16 copy is half that, so a
//! screening pass over the vocabulary costs little more than half the time
//! (one thread of a 2-core AVX-512 VM, weights not in cache: 2.75 ms, 11.9
//! GB/s, against 4.7 ms for `gemm_packed`; AVX2 2.8 ms; M = 4: 3.5 ms
//! against 5.1); the caller bounds the rounding rigorously and recomputes
//! the few candidate columns exactly.
//! The contract is therefore an error bound, not bit patterns: for finite
//! x and W̃ and no overflow,
//!
//! ```text
//! |out[r, j] − Σ_p x[r, p]·w̃[j, p]| ≤ γ_K·Σ_p |x[r, p]·w̃[j, p]| + K·2⁻¹⁴⁸
//! ```
//!
//! with γ_K = K·u/(1 − K·u), u = 2⁻²⁴ (each column summed in f32, in one
//! order; the last term covers underflow).
//!
//! **Layout** ([`Bf16Panels`]). Panels of 128 columns of W̃ᵀ
//! (rows of W̃), the last one zero-padded, each one contiguous stream of
//! K·256 bytes, k-major: for each p < K, 4 groups of 16 u32 words (one
//! 64-byte cache line each). Word i of group g at step p holds
//! w̃[col0 + 32g + i, p] in its low 16 bits and w̃[col0 + 32g + 16 + i, p] in
//! its high 16 bits, so one vector of 16 words becomes two f32 vectors with
//! one shift (`w << 16`: columns 32g..32g+15) and one mask (`w & 0xFFFF0000`:
//! columns 32g+16..32g+31); see `F32Vec::load_bf16_pairs`.
//!
//! **Loops** (`kernel`). Panels outer, rows inner: each panel streams from
//! DRAM once, in blocks of 64 k steps (16 KiB) that stay in L1 while every
//! row (up to 8, then again from L2) takes its sums from them, two rows at a
//! time sharing the loads where the registers allow. Within a block, the
//! sums of 128 columns stay in registers over all its steps (AVX-512: 8
//! vectors per row, one pass; narrower ISAs: two or more passes over fewer
//! columns). Large products split the panels into contiguous chunks across
//! the kernel pool; every column is summed by one call in one order, so the
//! result does not depend on the number of threads.

mod kernel;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use super::dispatch::{self, Isa};
use super::gemm::{AlignedBuf, MatRef};
use super::simd::assert_available;
use kernel::{GROUP_WORDS, PANEL, STEP_WORDS};

/// Products whose weight has at least this many elements (N·K) are split
/// across the kernel pool when it has more than one thread: below it, a
/// hand-over costs more than the share (as for the f32 GEMV).
const PAR_MIN_ELEMENTS: usize = 1 << 18;

/// Work items per thread when split: a little slack for a thread that
/// starts late, with each item still a long contiguous run of panels.
const ITEMS_PER_THREAD: usize = 4;

/// W [N×K] (PyTorch Linear layout) rounded to bf16 and packed in panels
/// (see the module doc for the layout).
#[derive(Clone, Debug)]
pub struct Bf16Panels {
    k: usize,
    n: usize,
    /// `n.div_ceil(PANEL)` panels of K·4 cache lines each, as u32 words,
    /// every line starting a 64-byte boundary (huge pages when large, as
    /// for the packed f32 weights).
    words: AlignedBuf,
}

impl Bf16Panels {
    /// Rounds W [out_features × in_features] (row-major f32) to bf16, round
    /// to nearest, ties to even (NaN stays NaN; values that round past
    /// f32::MAX become ±inf), and packs it. Panics if w.len() !=
    /// out_features·in_features.
    pub fn from_linear_weight(w: &[f32], out_features: usize, in_features: usize) -> Self {
        let (n, k) = (out_features, in_features);
        assert_eq!(
            Some(w.len()),
            n.checked_mul(k),
            "Bf16Panels::from_linear_weight: weight has {} elements, expected {n}x{k}",
            w.len()
        );
        let panel_words = k * STEP_WORDS;
        let mut words = AlignedBuf::zeroed(n.div_ceil(PANEL) * panel_words);
        if panel_words > 0 {
            // Panel `q` from rows 128q.. of W, each row read in order.
            let pack = |q: usize, panel: &mut [u32]| {
                let col0 = q * PANEL;
                for jj in 0..PANEL.min(n - col0) {
                    let (group, lane) = (jj / 32, jj % 16);
                    let shift = if jj % 32 < 16 { 0 } else { 16 };
                    let row = &w[(col0 + jj) * k..][..k];
                    for (p, &v) in row.iter().enumerate() {
                        let bits = u32::from(half::bf16::from_f32(v).to_bits());
                        panel[(p * 4 + group) * GROUP_WORDS + lane] |= bits << shift;
                    }
                }
            };
            if n * k >= PAR_MIN_ELEMENTS && crate::parallel::loop_threads() > 1 {
                crate::parallel::for_each_chunk_mut(words.as_mut_words(), panel_words, pack);
            } else {
                for (q, panel) in words
                    .as_mut_words()
                    .chunks_exact_mut(panel_words)
                    .enumerate()
                {
                    pack(q, panel);
                }
            }
        }
        Bf16Panels { k, n, words }
    }

    /// K, in_features.
    pub fn k(&self) -> usize {
        self.k
    }

    /// N, out_features.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The packed words: panel q, step p, group g is the line
    /// `(q·K + p)·4 + g`.
    fn words(&self) -> *const u32 {
        self.words.as_words().as_ptr()
    }

    /// Word `lane` of cache line `line` of the panels.
    #[cfg(test)]
    fn word(&self, line: usize, lane: usize) -> u32 {
        self.words.as_words()[line * GROUP_WORDS + lane]
    }

    /// w̃[j, p], read back from the panels.
    #[cfg(test)]
    fn get(&self, j: usize, p: usize) -> f32 {
        assert!(j < self.n && p < self.k);
        let (q, jj) = (j / PANEL, j % PANEL);
        let word = self.word((q * self.k + p) * 4 + jj / 32, jj % 16);
        let bits = if jj % 32 < 16 {
            word << 16
        } else {
            word & 0xFFFF_0000
        };
        f32::from_bits(bits)
    }
}

/// `x` rounded to the nearest bf16 (ties to even), returned as the f32 with
/// that value: `half`'s conversion (the crate that also widens bf16
/// checkpoints). NaN stays NaN (made quiet, sign kept); values that round
/// past the largest bf16 (about f32::MAX) become ±inf; subnormals round
/// like the rest.
#[inline]
pub fn round_to_bf16(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// out[r·N + j] = Σ_{p<K} x[r, p]·w̃[j, p] for r < M = x.rows, j < N,
/// accumulated in f32 (see the module doc for the error bound). out is
/// [M×N] row-major. Runs on [`dispatch::selected`], split across the kernel
/// pool when large. Panics unless x.cols == K and out.len() == M·N.
pub fn gemv(x: MatRef, w: &Bf16Panels, out: &mut [f32]) {
    gemv_with(dispatch::selected(), x, w, out)
}

/// [`gemv`] on the kernel of `isa`. Panics unless `isa.is_available()`
/// (and the shapes fit, as for [`gemv`]).
pub fn gemv_with(isa: Isa, x: MatRef, w: &Bf16Panels, out: &mut [f32]) {
    assert_available(isa, "bf16 gemv");
    let (m, k, n) = (x.rows, w.k, w.n);
    assert_eq!(
        x.cols, k,
        "bf16 gemv: x has {} columns but the weight has K = {k}",
        x.cols
    );
    assert_eq!(
        Some(out.len()),
        m.checked_mul(n),
        "bf16 gemv: out has {} elements, expected {m}x{n}",
        out.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.fill(0.0);
        return;
    }
    // x's rows, each K contiguous f32: in place when unit-strided (checked
    // here, as MatRef's fields are public), else copied once.
    let copied: Vec<f32>;
    let (x_rows, x_stride) = if x.col_stride == 1 || k == 1 {
        let last = (m - 1)
            .checked_mul(x.row_stride)
            .and_then(|start| start.checked_add(k));
        assert!(
            last.is_some_and(|end| end <= x.data.len()),
            "bf16 gemv: x ({m}x{k}, row stride {}) exceeds its {} elements",
            x.row_stride,
            x.data.len()
        );
        (x.data.as_ptr(), x.row_stride)
    } else {
        copied = (0..m)
            .flat_map(|r| (0..k).map(move |p| x.at(r, p)))
            .collect();
        (copied.as_ptr(), k)
    };
    let panels = n.div_ceil(PANEL);
    let job = kernel::Job {
        x: x_rows,
        x_stride,
        m,
        k,
        n,
        words: w.words(),
        out: kernel::OutPtr(out.as_mut_ptr()),
    };
    // SAFETY: `isa` is available (asserted above). x: M rows of K f32 at
    // stride `x_stride` (bounds checked above, or the dense copy); words:
    // ceil(N/128) panels of K·64 u32 (`from_linear_weight`), 64-byte
    // aligned; out: M×N f32 (asserted), borrowed mutably for the call.
    // Each chunk writes columns of its own panels only (`kernel::Job`).
    let run = |chunk: std::ops::Range<usize>| unsafe { kernel::rows_panels(isa, job, chunk) };
    let threads = crate::parallel::loop_threads();
    if n * k < PAR_MIN_ELEMENTS || threads == 1 || panels == 1 {
        run(0..panels);
        return;
    }
    let items = panels.min(threads * ITEMS_PER_THREAD);
    crate::parallel::for_each_index(items, |i| run(i * panels / items..(i + 1) * panels / items));
}
