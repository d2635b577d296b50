//! The micro-kernel bodies, written once over [`F32Vec`] and instantiated per
//! ISA by [`isa_entry_points!`] inside `#[target_feature]` functions.
//!
//! A 16-column strip is `Q = 16 / V::LANES` vectors: one zmm (AVX-512), two
//! ymm (AVX2), four q registers (NEON) or sixteen f32 (scalar). The bodies are
//! `#[inline(always)]` and the vector methods `#[inline]`, so after inlining
//! the whole tile (R × S × Q accumulators) lives in one function compiled for
//! its ISA and stays in registers.

use super::{BPanel, NEXT_PANEL_STEPS, STRIP};
use crate::kernels::simd::F32Vec;

/// How many k steps ahead the tile prefetches a B read in place: enough to
/// cover an L3 miss (~80 cycles) at a full tile's ~14 cycles per step.
/// Measured on AVX-512 (one thread): M = 32, K = 512, N = 2048 went from 71
/// to 91 GFLOP/s, packed 1024³ from 114 to 124; 4 and 16 were no better.
const B_PREFETCH_ROWS: usize = 8;

/// The same over packed B, whose strips a model's weights stream from
/// DRAM: a miss there takes ~300 cycles. Measured on AVX-512 (one thread,
/// 26 packed 512×2048 weights in turn, 100 MiB): M = 32 97 → 103 GFLOP/s.
const PACKED_B_PREFETCH_ROWS: usize = 32;

/// How many rows of B ahead the GEMV prefetches its columns: the hardware
/// prefetchers follow one stream per row poorly when the rows are short
/// pieces of a wider matrix. Measured on AVX-512 at K = N = 512 (B in L2):
/// 28 → 34 GFLOP/s; 8 rows ahead was no better.
const GEMV_PREFETCH_ROWS: usize = 4;

/// See [`super::MicroKernel::gemv`]: y[0..n] += Σ_{p<K} a[p] · B[p, 0..n],
/// `W` vectors of y at a time held in registers over all K rows, then
/// blocks of 8, 4, 2, 1 vectors, then the last columns (fewer than a
/// vector) through the vector that ends at column n ([`gemv_edge`]). Each
/// y[j] gets Σ_p a[p]·B[p, j] summed from zero over p = 0, 1, ..., K-1, one
/// fused multiply-add each, then added to it. When the ISA has masked loads
/// and B's rows all start at one offset in their cache lines,
/// [`gemv_line_aligned`] computes the same sums from whole lines instead.
/// `W1 = W + 1`.
///
/// # Safety
/// `V`'s ISA is available; `b` holds K = `a.len()` rows of `y.len()` f32 at
/// stride `ldb` (`check_gemv`).
#[inline(always)]
pub(super) unsafe fn gemv<V: F32Vec, const W: usize, const W1: usize>(
    a: &[f32],
    b: &[f32],
    ldb: usize,
    y: &mut [f32],
) {
    let (w, n) = (V::LANES, y.len());
    let (bp, yp) = (b.as_ptr(), y.as_mut_ptr());
    if V::MASKED && (ldb.is_multiple_of(w) || a.len() == 1) {
        // Floats from the cache line (one vector) boundary to B's first row;
        // with ldb a multiple of the vector, every row's.
        let offset = floats_past_vector::<V>(bp);
        // SAFETY: the caller's contract, passed on.
        return unsafe { gemv_line_aligned::<V, W, W1>(a, bp, ldb, y, offset) };
    }
    let mut j = 0;
    while j + W * w <= n {
        // SAFETY: columns j..j + W·w < n of y and of B's K rows are in bounds.
        unsafe { gemv_columns::<V, W>(a, bp.add(j), ldb, yp.add(j)) };
        j += W * w;
    }
    // The rest in blocks of W/2, W/4, ... vectors: each block is one more
    // pass down B's rows, so as few as the remaining width allows.
    macro_rules! remainder_block {
        ($v:literal) => {
            if $v < W && j + $v * w <= n {
                // SAFETY: as above for $v vectors' columns.
                unsafe { gemv_columns::<V, $v>(a, bp.add(j), ldb, yp.add(j)) };
                j += $v * w;
            }
        };
    }
    remainder_block!(8);
    remainder_block!(4);
    remainder_block!(2);
    remainder_block!(1);
    if j < n && n >= w {
        // The last columns through the vector ending at column n.
        let start = n - w;
        // SAFETY: columns start..n of B's rows are in bounds.
        unsafe { gemv_edge::<V>(a, bp.add(start), ldb, &mut y[start..n], j - start) };
        return;
    }
    for (jj, yj) in y.iter_mut().enumerate().skip(j) {
        let sum = a
            .iter()
            .enumerate()
            .fold(0.0f32, |sum, (p, &ap)| ap.mul_add(b[p * ldb + jj], sum));
        *yj += sum;
    }
}

/// Floats from the vector boundary (on AVX-512, the cache line) at or
/// before `p` to `p`.
#[inline(always)]
fn floats_past_vector<V: F32Vec>(p: *const f32) -> usize {
    (p as usize / size_of::<f32>()) % V::LANES
}

/// [`gemv`] for B whose rows start `offset` (< LANES) floats past a cache
/// line boundary, with masked loads ([`F32Vec::MASKED`]). Vector v of a row
/// covers its columns v·LANES - offset .. + LANES, so every load is one
/// whole line (a NumPy array is 16-byte aligned: its vectors would
/// otherwise each straddle two lines). The first vector has its lanes
/// before column 0 masked off, the last those past column n-1, so the
/// ragged end takes no pass of its own either.
/// Passes over B's rows take W + 1 vectors where that leaves no remainder
/// (1×512×512: 33 vectors in passes of 17 and 16), W otherwise, then blocks of
/// 8, 4, 2, 1. Each y[j] gets the same sum as in [`gemv`], bit for bit.
/// Measured on AVX-512 at 1×512×512, B in L2 and 16 bytes past a line
/// (`gemm_gflops`, 8 alternating runs, called from outside the pool):
/// median 30 → 36 GFLOP/s; a standalone model of the loop gained 10–20% at
/// 16, 32 and 48 bytes past a line, and nothing with B in L3 (1×512×2048).
///
/// # Safety
/// As [`gemv`], and `V::MASKED`; B's rows are `ldb` apart with `ldb` a
/// multiple of LANES, or there is one row.
#[inline(always)]
unsafe fn gemv_line_aligned<V: F32Vec, const W: usize, const W1: usize>(
    a: &[f32],
    b: *const f32,
    ldb: usize,
    y: &mut [f32],
    offset: usize,
) {
    const { assert!(W1 == W + 1, "W1 is W + 1") };
    let (w, n) = (V::LANES, y.len());
    let vectors = (offset + n).div_ceil(w);
    // Lanes of data in vector v (of `vectors`).
    let lanes = |v: usize| {
        let start = if v == 0 { offset } else { 0 };
        let end = if v + 1 == vectors {
            offset + n - v * w
        } else {
            w
        };
        start..end
    };
    // Vector v's column 0 in B's rows and in y: before the data for v = 0,
    // where only its masked-off lanes point.
    let (b0, y0) = (b.wrapping_sub(offset), y.as_mut_ptr().wrapping_sub(offset));
    let mut v = 0;
    macro_rules! passes {
        ($width:expr, $count:expr) => {
            for _ in 0..$count {
                let (first, last) = (lanes(v), lanes(v + $width - 1));
                // SAFETY: vectors v..v + width lie within the `vectors` of
                // each row, whose lanes of data are in B and y; the other
                // lanes are masked off (caller: `V::MASKED`).
                unsafe {
                    gemv_masked_columns::<V, { $width }>(
                        a,
                        b0.wrapping_add(v * w),
                        ldb,
                        y0.wrapping_add(v * w),
                        first,
                        last,
                    )
                };
                v += $width;
            }
        };
    }
    let (full, rest) = (vectors / W, vectors % W);
    if rest <= full {
        passes!(W1, rest);
        passes!(W, full - rest);
    } else {
        passes!(W, full);
        // The rest in blocks of 8, 4, 2, 1 vectors, as in `gemv`.
        if 8 < W && vectors - v >= 8 {
            passes!(8, 1);
        }
        if 4 < W && vectors - v >= 4 {
            passes!(4, 1);
        }
        if 2 < W && vectors - v >= 2 {
            passes!(2, 1);
        }
        if 1 < W && vectors - v >= 1 {
            passes!(1, 1);
        }
    }
    debug_assert_eq!(v, vectors);
}

/// y[v·LANES..][..W·LANES] += Σ_p a[p] · B[p, v·LANES..][..W·LANES] (one pass of
/// [`gemv_line_aligned`]), reading only lanes `first` of the first vector
/// and `last` of the last (their intersection when W = 1), whole vectors
/// between.
///
/// # Safety
/// `V`'s ISA is available and `V::MASKED`; those lanes, and every lane of
/// the other vectors, are readable in B's `a.len()` rows at `b + p·ldb` and
/// readable and writable at `y`.
#[inline(always)]
unsafe fn gemv_masked_columns<V: F32Vec, const W: usize>(
    a: &[f32],
    b: *const f32,
    ldb: usize,
    y: *mut f32,
    first: std::ops::Range<usize>,
    last: std::ops::Range<usize>,
) {
    let w = V::LANES;
    let first = if W == 1 {
        first.start.max(last.start)..first.end.min(last.end)
    } else {
        first
    };
    // SAFETY: in bounds, or masked off, and on this ISA by the caller's
    // contract.
    unsafe {
        let acc = gemv_sums::<V, W>(a, b, ldb, |v, at| {
            if v == 0 {
                V::load_lanes(at, first.clone())
            } else if v + 1 == W {
                V::load_lanes(at, last.clone())
            } else {
                V::load(at)
            }
        });
        for (v, acc) in acc.iter().enumerate() {
            let at = y.wrapping_add(v * w);
            let lanes = if v == 0 {
                first.clone()
            } else if v + 1 == W {
                last.clone()
            } else {
                0..w
            };
            V::load_lanes(at, lanes.clone())
                .add(*acc)
                .store_lanes(at, lanes);
        }
    }
}

/// y[skip..] += Σ_p a[p] · B[p, skip..] for the columns 0..y.len() (≤ LANES)
/// of one vector, summed from zero, of which the first `skip` are dropped
/// (columns another pass has done).
///
/// # Safety
/// `V`'s ISA is available; B's `a.len()` rows hold LANES f32 at `b + p·ldb`.
#[inline(always)]
unsafe fn gemv_edge<V: F32Vec>(a: &[f32], b: *const f32, ldb: usize, y: &mut [f32], skip: usize) {
    // -0.0 is the identity of +, so y + sums is exactly y + the sums.
    let mut sums = [-0.0f32; STRIP];
    debug_assert!(y.len() <= V::LANES && V::LANES <= STRIP);
    // SAFETY: `sums` holds LANES f32; B's rows by the caller's contract.
    unsafe { gemv_columns::<V, 1>(a, b, ldb, sums.as_mut_ptr()) };
    for (yj, s) in y.iter_mut().zip(sums).skip(skip) {
        *yj += s;
    }
}

/// y[0..W·LANES] += Σ_p a[p] · B[p, 0..W·LANES], B's row p at `b + p·ldb`,
/// the sums in W accumulators from zero, added to y at the end.
///
/// # Safety
/// `V`'s ISA is available; y and B's `a.len()` rows hold W·LANES f32 at
/// `y` and `b + p·ldb`.
#[inline(always)]
unsafe fn gemv_columns<V: F32Vec, const W: usize>(
    a: &[f32],
    b: *const f32,
    ldb: usize,
    y: *mut f32,
) {
    let w = V::LANES;
    // SAFETY: in bounds and on this ISA by the caller's contract.
    unsafe {
        let acc = gemv_sums::<V, W>(a, b, ldb, |_, at| V::load(at));
        for (v, acc) in acc.iter().enumerate() {
            V::load(y.add(v * w)).add(*acc).store(y.add(v * w));
        }
    }
}

/// The k loop of the GEMV passes: acc[v] = Σ_p a[p] · `load(v, B row p +
/// v·LANES)`, summed from zero over p in order, one fused multiply-add each;
/// B's row p at `b + p·ldb`.
///
/// # Safety
/// `V`'s ISA is available; `load` may be called for v < W on each of the
/// `a.len()` rows.
#[inline(always)]
unsafe fn gemv_sums<V: F32Vec, const W: usize>(
    a: &[f32],
    b: *const f32,
    ldb: usize,
    load: impl Fn(usize, *const f32) -> V,
) -> [V; W] {
    let w = V::LANES;
    // SAFETY: on this ISA by the caller's contract; a prefetch never
    // dereferences its address.
    unsafe {
        let mut acc = [V::splat(0.0); W];
        let mut row = b;
        for &ap in a {
            let av = V::splat(ap);
            let ahead = row.wrapping_add(GEMV_PREFETCH_ROWS * ldb);
            for (v, acc) in acc.iter_mut().enumerate() {
                if (v * w) % STRIP == 0 {
                    V::prefetch(ahead.wrapping_add(v * w));
                }
                *acc = av.mul_add(load(v, row.wrapping_add(v * w)), *acc);
            }
            row = row.wrapping_add(ldb);
        }
        acc
    }
}

/// C[R × 16S] = beta·C + Ã·B̃ with each strip held as `Q` vectors; see
/// [`super::MicroKernel::tile`] for the contract.
///
/// `Q · V::LANES == 16` is checked at compile time.
///
/// # Safety
/// `V`'s ISA is available, and `MicroKernel::tile`'s contract holds for
/// `rows = R`, `strips = S`.
// Index loops, not iterator adapters: on aarch64 LLVM left `Zip`'s helpers
// out of line in the `#[target_feature]` tiles and never unrolled them.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
pub(super) unsafe fn tile<V: F32Vec, const R: usize, const S: usize, const Q: usize>(
    kc: usize,
    a: *const f32,
    b: BPanel,
    c: *mut f32,
    ldc: usize,
    beta: f32,
) {
    const { assert!(Q * V::LANES == STRIP, "a strip is Q vectors") };
    let w = V::LANES;
    // SAFETY: `V`'s ISA is available (caller).
    let zero = unsafe { V::splat(0.0) };
    let mut acc = [[[zero; Q]; S]; R];
    // C is touched only after the k loop; start its (likely L2/L3) lines
    // on their way now so the stores do not stall on them.
    for i in 0..R {
        for s in 0..S {
            // SAFETY: a prefetch never dereferences its address.
            unsafe { V::prefetch(c.wrapping_add(i * ldc + s * STRIP)) };
        }
    }
    // A row of B read in place (its S strips side by side, rows a whole
    // number of vectors apart) that starts `shift` floats past a vector
    // boundary: NumPy's arrays are 16-byte aligned, and then each of its
    // vector loads would straddle two cache lines. With masked loads it is
    // read as whole lines instead (`k_steps`' SHIFTED).
    let shift = floats_past_vector::<V>(b.ptr);
    let shifted =
        V::MASKED && shift != 0 && b.strip_stride == STRIP && b.k_stride.is_multiple_of(w);
    // SAFETY: the caller's contract, passed on; the copy, when asked for,
    // goes to the kc·16·S values `b.pack_into` holds (`BPanel`); SHIFTED
    // only with `V::MASKED` and rows of B all `shift` past a boundary.
    unsafe {
        match (b.pack_into.is_null(), shifted) {
            (true, false) => k_steps::<V, R, S, Q, false, false>(kc, a, b, shift, &mut acc),
            (false, false) => k_steps::<V, R, S, Q, true, false>(kc, a, b, shift, &mut acc),
            (true, true) => k_steps::<V, R, S, Q, false, true>(kc, a, b, shift, &mut acc),
            (false, true) => k_steps::<V, R, S, Q, true, true>(kc, a, b, shift, &mut acc),
        }
    }
    // SAFETY: `V`'s ISA is available.
    let beta_v = unsafe { V::splat(beta) };
    for i in 0..R {
        for s in 0..S {
            for q in 0..Q {
                // SAFETY: row i < R, columns 16s+q·w..+w of C are writable,
                // and readable when beta != 0, by the caller's contract.
                unsafe {
                    let dst = c.add(i * ldc + s * STRIP + q * w);
                    let out = if beta == 0.0 {
                        acc[i][s][q]
                    } else {
                        beta_v.mul_add(V::load(dst), acc[i][s][q])
                    };
                    out.store(dst);
                }
            }
        }
    }
}

/// The k loop of [`tile`]: acc[i][s][q] += Σ_k Ã[k, i] · B̃[k, 16s + q·LANES..];
/// with `COPY`, each B vector loaded is also stored to `b.pack_into` as
/// packed strips (k stride 16, strip stride 16·kc) for the tiles after this
/// one to read instead of B. Unless `b.next` is null, every
/// [`NEXT_PANEL_STEPS`] steps it prefetches one line of each strip of the
/// next micro-panel, at the same k. With `SHIFTED`, each row of B (S
/// strips side by side) starts `shift` (0 < shift < LANES) floats past a
/// vector boundary, and is read as the S·Q + 1 whole vectors from that
/// boundary on (masked loads at both ends, so nothing outside the row is
/// read), each of its vectors joined from two of them
/// ([`F32Vec::concat_shifted`]): the same values as reading it in place,
/// without loads that straddle cache lines. Measured on AVX-512 with a
/// standalone model of the copying tile (9 × 48, B 16 bytes past a line):
/// 88 → 107 GFLOP/s (B in L3), 113 → 125 (B in L2), against 113 and 131
/// for an aligned B.
///
/// # Safety
/// As [`tile`]; with `COPY`, `b.pack_into` is writable for 16·S·kc f32;
/// with `SHIFTED`, `V::MASKED`, `b.strip_stride` is 16 and every row of B
/// starts `shift` floats past a multiple of LANES.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn k_steps<
    V: F32Vec,
    const R: usize,
    const S: usize,
    const Q: usize,
    const COPY: bool,
    const SHIFTED: bool,
>(
    kc: usize,
    a: *const f32,
    b: BPanel,
    shift: usize,
    acc: &mut [[[V; Q]; S]; R],
) {
    let w = V::LANES;
    let (mut a_step, mut b_row, mut copy_row) = (a, b.ptr, b.pack_into);
    // B read in place has rows a page or more apart, which the hardware
    // prefetchers do not follow: fetch the row a few steps ahead. Over
    // packed B the address is further on in the same stream.
    let ahead = if b.k_stride == STRIP {
        PACKED_B_PREFETCH_ROWS
    } else {
        B_PREFETCH_ROWS
    } * b.k_stride;
    // SAFETY: `V`'s ISA is available (caller).
    let index = unsafe { V::shift_index(shift) };
    let mut k = 0;
    while k < kc {
        if !b.next.is_null() {
            for s in 0..S {
                let line = b.next.wrapping_add(s * b.strip_stride + k * b.k_stride);
                // SAFETY: a prefetch never dereferences its address.
                unsafe { V::prefetch(line) };
            }
        }
        let steps = (kc - k).min(NEXT_PANEL_STEPS);
        k += steps;
        for _ in 0..steps {
            for s in 0..S {
                // SAFETY: a prefetch never dereferences its address.
                unsafe { V::prefetch(b_row.wrapping_add(ahead + s * b.strip_stride)) };
            }
            if SHIFTED {
                // The row's last line, which its S strips reach into.
                // SAFETY: as above.
                unsafe { V::prefetch(b_row.wrapping_add(ahead + S * STRIP - 1)) };
            }
            // SAFETY: the current row of B is readable as `b_row_vectors`
            // needs (the caller's contract).
            let bv =
                unsafe { b_row_vectors::<V, S, Q, SHIFTED>(b_row, b.strip_stride, shift, index) };
            if COPY {
                for s in 0..S {
                    for q in 0..Q {
                        // SAFETY: the copy's strip s holds 16 writable f32
                        // at this k step (caller).
                        unsafe { bv[s][q].store(copy_row.add(s * kc * STRIP + q * w)) };
                    }
                }
            }
            for i in 0..R {
                // SAFETY: the current k step of Ã holds R readable f32.
                let ai = unsafe { V::splat(*a_step.add(i)) };
                for s in 0..S {
                    for q in 0..Q {
                        // SAFETY: `V`'s ISA is available.
                        acc[i][s][q] = unsafe { ai.mul_add(bv[s][q], acc[i][s][q]) };
                    }
                }
            }
            // Wrapping: after the last step these point past the operands and
            // are never read.
            a_step = a_step.wrapping_add(R);
            b_row = b_row.wrapping_add(b.k_stride);
            copy_row = copy_row.wrapping_add(STRIP);
        }
    }
}

/// One k step's row of B̃: S strips of Q vectors, strip s at `row + s ·
/// strip_stride`. With `SHIFTED` (strips side by side, `row` `shift` floats
/// past a vector boundary), read as the S·Q + 1 whole vectors from that
/// boundary on, the first and last masked to the row's values, each of the
/// row's vectors joined from two of them ([`F32Vec::concat_shifted`],
/// `index` = `shift_index(shift)`).
///
/// # Safety
/// `V`'s ISA is available; the S strips of 16 f32 at `row` are readable;
/// with `SHIFTED`, `V::MASKED`, `strip_stride` is 16 and 0 < `shift` <
/// LANES.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn b_row_vectors<V: F32Vec, const S: usize, const Q: usize, const SHIFTED: bool>(
    row: *const f32,
    strip_stride: usize,
    shift: usize,
    index: V,
) -> [[V; Q]; S] {
    let w = V::LANES;
    // SAFETY: the caller's contract: every load below reads values of the
    // row (masked loads only the lanes that hold them).
    unsafe {
        let mut bv = [[V::splat(0.0); Q]; S];
        if SHIFTED {
            // Wrapping: the boundary before the row may lie before B.
            let base = row.wrapping_sub(shift);
            let mut line = V::load_lanes(base, shift..w);
            for s in 0..S {
                for q in 0..Q {
                    let t = s * Q + q;
                    let at = base.wrapping_add((t + 1) * w);
                    let next = if t + 1 == S * Q {
                        V::load_lanes(at, 0..shift)
                    } else {
                        V::load(at)
                    };
                    bv[s][q] = V::concat_shifted(line, next, index);
                    line = next;
                }
            }
        } else {
            for s in 0..S {
                for q in 0..Q {
                    bv[s][q] = V::load(row.add(s * strip_stride + q * w));
                }
            }
        }
        bv
    }
}

/// The ISA's `tile` and `gemv` entry points over vector type `$V`, the
/// GEMV holding `$gemv_vectors` vectors of y in registers.
macro_rules! isa_entry_points {
    ($V:ty, $features:literal, gemv_vectors: $gemv_vectors:literal) => {
        /// C[R × 16S] = beta·C + Ã·B̃; see [`MicroKernel::tile`] for the contract.
        // One function per tile shape, as on x86 (where `#[target_feature]`
        // already prevents inlining): NEON is a baseline aarch64 feature, so
        // every shape would otherwise be inlined into the `tiles!` match.
        #[inline(never)]
        #[target_feature(enable = $features)]
        unsafe fn tile<const R: usize, const S: usize>(
            kc: usize,
            a: *const f32,
            b: $crate::kernels::gemm::microkernel::BPanel,
            c: *mut f32,
            ldc: usize,
            beta: f32,
        ) {
            const Q: usize = 16 / <$V as $crate::kernels::simd::F32Vec>::LANES;
            // SAFETY: the caller upholds `MicroKernel::tile`'s contract and
            // this function enables `$V`'s ISA.
            unsafe {
                $crate::kernels::gemm::microkernel::generic::tile::<$V, R, S, Q>(
                    kc, a, b, c, ldc, beta,
                )
            }
        }

        /// See [`MicroKernel::gemv`]; `b` holds `a.len()` rows of `y.len()` at `ldb`.
        #[target_feature(enable = $features)]
        unsafe fn gemv(a: &[f32], b: &[f32], ldb: usize, y: &mut [f32]) {
            // SAFETY: the caller guarantees the ISA and (`check_gemv`) the bounds.
            unsafe {
                $crate::kernels::gemm::microkernel::generic::gemv::<
                    $V,
                    $gemv_vectors,
                    { $gemv_vectors + 1 },
                >(a, b, ldb, y)
            }
        }
    };
}
pub(super) use isa_entry_points;
