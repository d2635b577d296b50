//! Packing: copying operands into the exact order the micro-kernels read.
//!
//! B [K×N] is cut into *strips* of [`STRIP`] columns; strip `s` holds rows
//! 0..K one after another, row `p` being `B[p, 16s .. 16s+16]` (the last strip
//! zero-padded). A kernel whose tile is NR = 16·S columns wide reads S
//! neighbouring strips. Strips span the whole K, so one packed B serves every
//! KC block: block `pc` of a strip starts at row `pc`.
//!
//! A rows [i0, i0+mc) × columns [p0, p0+kc) are cut into row panels of at
//! most MR rows; a panel of `r` rows is stored k-major (`r` values of column
//! `p`, then column `p+1`, ...), so the kernel reads it front to back.

use std::ops::Range;

use crate::parallel;

use super::microkernel::{with_kernel, MicroKernel};
use super::MatRef;
use crate::kernels::dispatch::Isa;
use crate::kernels::simd;

/// Columns per B strip: one AVX-512 vector, two AVX2 vectors, four NEON vectors.
pub(super) const STRIP: usize = 16;

/// Packing B in parallel pays off above this many elements.
pub(super) const PAR_PACK_MIN: usize = 1 << 16;

/// Splits `rows` rows into `ceil(rows / mr)` panels of near-equal height
/// (heights differ by at most one), as `(first row, height)`. Even heights
/// keep every tile close to the kernel's full MR instead of leaving one
/// thin remainder tile.
pub(super) fn row_panels(rows: usize, mr: usize) -> impl Iterator<Item = (usize, usize)> {
    let count = rows.div_ceil(mr);
    let (base, extra) = rows
        .checked_div(count)
        .map_or((0, 0), |base| (base, rows % count));
    (0..count).map(move |t| {
        let height = base + usize::from(t < extra);
        let start = t * base + t.min(extra);
        (start, height)
    })
}

/// Packs A[rows, p0..p0+kc] into `out` as the row panels of [`row_panels`]
/// (panels of at most K::MR rows); the panel starting at block row `r0`
/// begins at `out[r0 * kc]`.
pub(super) fn pack_a<K: MicroKernel>(
    a: MatRef,
    rows: Range<usize>,
    p0: usize,
    kc: usize,
    out: &mut [f32],
) {
    let all = 0..rows.len().div_ceil(K::MR);
    pack_a_panels::<K>(a, rows, p0, kc, all, out)
}

/// [`pack_a`] of the row panels `panels` only (indices into
/// [`row_panels`]`(rows.len(), K::MR)`), into `out` starting where the
/// first of them goes: the panel starting at block row `r0` begins at
/// `out[(r0 - f) * kc]`, f being the first panel's start.
pub(super) fn pack_a_panels<K: MicroKernel>(
    a: MatRef,
    rows: Range<usize>,
    p0: usize,
    kc: usize,
    panels: Range<usize>,
    out: &mut [f32],
) {
    let mc = rows.len();
    let mut origin = None;
    for (r0, height) in row_panels(mc, K::MR).take(panels.end).skip(panels.start) {
        let at = r0 - *origin.get_or_insert(r0);
        let panel = &mut out[at * kc..(at + height) * kc];
        let first = rows.start + r0;
        if a.col_stride == 1 {
            let src = &a.data[first * a.row_stride + p0..];
            // SAFETY: the driver only runs kernels of available ISAs.
            unsafe { K::pack_a_rows(src, a.row_stride, height, panel) };
            continue;
        }
        for i in 0..height {
            let base = (first + i) * a.row_stride + p0 * a.col_stride;
            for p in 0..kc {
                panel[p * height + i] = a.data[base + p * a.col_stride];
            }
        }
    }
}

/// [`MicroKernel::pack_a_rows`] one value at a time: row by row, each row of
/// A one sequential stream the prefetchers follow, the panel (h·kc values)
/// in L1 while its columns fill.
pub(super) fn pack_a_rows(a: &[f32], lda: usize, rows: usize, panel: &mut [f32]) {
    let kc = panel.len() / rows;
    assert_eq!(panel.len(), rows * kc, "pack_a: panel holds {rows} rows");
    for i in 0..rows {
        let src = &a[i * lda..][..kc];
        for (p, &x) in src.iter().enumerate() {
            // SAFETY: p·rows + i < kc·rows = panel.len() (asserted above). An
            // indexed store here kept its bounds check and ran 1.5× slower.
            unsafe { *panel.get_unchecked_mut(p * rows + i) = x };
        }
    }
}

/// Number of strips of a B with `n` columns.
pub(super) fn strip_count(n: usize) -> usize {
    n.div_ceil(STRIP)
}

/// Strips packed together by one task: a row-major B is then read in runs
/// of 8 × 64 bytes per row (fetched [`PACK_B_PREFETCH_ROWS`] rows ahead).
const STRIP_GROUP: usize = 8;

/// Rows of a row-major B that `pack_b_strips` fetches ahead. Measured at
/// 1024³ on one thread (perf, six alternating runs): packing B 4.95% →
/// 4.2% of the product's time; 4 rows ahead the same.
const PACK_B_PREFETCH_ROWS: usize = 8;

/// Packs all of B [K×N] into `out` (`strip_count(N) · K · 16` elements),
/// padding columns set to 0; on the kernel pool if `parallel`, with `isa`'s
/// kernels (available: checked by the caller).
pub(super) fn pack_b(isa: Isa, b: MatRef, out: &mut [f32], parallel: bool) {
    let group_len = b.rows * STRIP * STRIP_GROUP;
    if group_len == 0 {
        return;
    }
    let pack_group = |g: usize, strips: &mut [f32]| pack_b_strips(isa, b, g * STRIP_GROUP, strips);
    if parallel {
        parallel::for_each_chunk_mut(out, group_len, pack_group);
    } else {
        out.chunks_mut(group_len)
            .enumerate()
            .for_each(|(g, strips)| pack_group(g, strips));
    }
}

/// Packs the strips from `first` on into `out`: whole strips of K×16, as
/// many as `out` holds.
fn pack_b_strips(isa: Isa, b: MatRef, first: usize, out: &mut [f32]) {
    let strip_len = b.rows * STRIP;
    if b.col_stride != 1 {
        for (s, strip) in out.chunks_mut(strip_len).enumerate() {
            let j0 = (first + s) * STRIP;
            if b.row_stride == 1 && j0 + STRIP <= b.cols {
                // A column-major B (a Linear weight as Wᵀ, the keys as Kᵀ
                // in attention) has its 16 columns as 16 contiguous rows of
                // Bᵀ: packing them is packing a 16-row panel of A, which
                // the ISA's kernel does by 8 × 8 blocks transposed in
                // registers (one value at a time was ~3% of the encoder's
                // time at B=8, S=128, in the keys alone).
                let columns = &b.data[j0 * b.col_stride..];
                // SAFETY: the caller checked that `isa` is available; the
                // slice bounds are checked.
                with_kernel!(isa, K => unsafe {
                    K::pack_a_rows(columns, b.col_stride, STRIP, strip)
                });
            } else {
                pack_b_strip(b, first + s, strip);
            }
        }
        return;
    }
    // Row-major B: walk the rows once, scattering each into the strips.
    let j0 = first * STRIP;
    let width = (out.len() / strip_len * STRIP).min(b.cols - j0);
    for p in 0..b.rows {
        // Rows a page or more apart: the hardware prefetchers do not
        // follow from one to the next.
        let ahead = b
            .data
            .as_ptr()
            .wrapping_add((p + PACK_B_PREFETCH_ROWS) * b.row_stride + j0);
        for line in (0..width).step_by(STRIP) {
            simd::prefetch_line(ahead.wrapping_add(line));
        }
        let row = &b.data[p * b.row_stride + j0..][..width];
        let mut pieces = row.chunks_exact(STRIP);
        for (s, src) in pieces.by_ref().enumerate() {
            // Fixed-size copies: moves of whole vectors, not a memcpy call each.
            let dst: &mut [f32; STRIP] = (&mut out[s * strip_len + p * STRIP..][..STRIP])
                .try_into()
                .expect("a strip row is STRIP long");
            *dst = src.try_into().expect("a piece is STRIP long");
        }
        let tail = pieces.remainder();
        if !tail.is_empty() {
            let dst = &mut out[width / STRIP * strip_len + p * STRIP..][..STRIP];
            dst[..tail.len()].copy_from_slice(tail);
            dst[tail.len()..].fill(0.0);
        }
    }
}

/// Packs strip `s` of B (columns 16s..16s+16, all K rows) into `strip`
/// [K×16], padding columns set to 0.
pub(super) fn pack_b_strip(b: MatRef, s: usize, strip: &mut [f32]) {
    let j0 = s * STRIP;
    let width = STRIP.min(b.cols - j0);
    if width < STRIP {
        strip.fill(0.0);
    }
    if b.col_stride == 1 {
        // Row-major B: each strip row is a contiguous copy.
        for (p, dst) in strip.chunks_exact_mut(STRIP).enumerate() {
            let src = p * b.row_stride + j0;
            dst[..width].copy_from_slice(&b.data[src..src + width]);
        }
    } else {
        // Column-major B (e.g. a Linear weight seen as Wᵀ): walk each column
        // contiguously; the strip (K×64 bytes) stays in cache meanwhile.
        for jj in 0..width {
            let col = (j0 + jj) * b.col_stride;
            for p in 0..b.rows {
                strip[p * STRIP + jj] = b.data[col + p * b.row_stride];
            }
        }
    }
}
