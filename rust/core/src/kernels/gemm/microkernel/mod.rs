//! Micro-kernels: the innermost loop of the GEMM, one per instruction set.
//!
//! A micro-kernel computes one *tile* C[r × 16·s] = beta·C + Ã·B̃ over a KC
//! slice of the shared dimension, keeping the whole tile in registers: Ã is a
//! packed A row panel (r values per k step, see `pack`), B̃ is `s` strips of
//! 16 columns ([`BPanel`]). The big tile (MR × NR, NR = 16·STRIPS) is what
//! large products run on; products with few rows use a thin tile that is
//! wider (more strips) so enough independent accumulators hide FMA latency.
//!
//! The loops are written once in `generic` over the portable vector type;
//! each ISA's file holds only its blocking constants and its table of tiles.

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512;
mod generic;
#[cfg(target_arch = "aarch64")]
pub(super) mod neon;
pub(super) mod scalar;

use super::pack::STRIP;

/// Where a tile's B operand lives: element (p, j) of the kc × 16·s block is
/// at `ptr + p·k_stride + (j / 16)·strip_stride + j % 16`. Packed strips have
/// `k_stride = 16`; a row-major B read in place has `k_stride = ldb` and
/// `strip_stride = 16`. Unless `pack_into` is null, the tile also writes
/// the block there as packed strips (element (p, j) at `pack_into + p·16 +
/// (j / 16)·16·kc + j % 16`), so that the other row panels sharing this B
/// read it from there. Unless `next` is null, it is the next micro-panel
/// of the same packed B (same strides), which the tile starts on its way
/// from memory ([`NEXT_PANEL_STEPS`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct BPanel {
    pub ptr: *const f32,
    pub k_stride: usize,
    pub strip_stride: usize,
    pub pack_into: *mut f32,
    pub next: *const f32,
}

/// A tile given the next micro-panel (`BPanel::next`) prefetches one line
/// of each of its strips every this many k steps: one line in 16, and the
/// L2's own streamer, seeing the addresses climb through each page, brings
/// in the lines between. So a micro-panel that the first row panel's tile
/// reads from DRAM arrives while the other row panels' tiles run from L2,
/// instead of in one stall; with every line prefetched, the prefetches
/// (each holding one of the core's few L1 miss buffers for a DRAM round
/// trip) starve the tiles' own loads and it was slower. Standalone model
/// of M = 36 (4 row panels, 9 × 48 tiles, 192 MiB of packed B): 118 →
/// 129 GFLOP/s; every 8 lines 122, every 64 125–129; L2 hint (T1) 122–128.
pub(super) const NEXT_PANEL_STEPS: usize = 16;

impl BPanel {
    /// Packed strips from `ptr` on, each holding `k` rows of 16 (so strip
    /// stride 16·`k`); a tile reads its kc rows from the first.
    pub(super) fn packed(ptr: *const f32, k: usize) -> BPanel {
        BPanel {
            ptr,
            k_stride: STRIP,
            strip_stride: k * STRIP,
            pack_into: std::ptr::null_mut(),
            next: std::ptr::null(),
        }
    }
}

/// Elements of the largest tile any kernel has (r·s ≤ 28 strips of 16).
pub(super) const MAX_TILE: usize = 28 * 16;

/// One instruction set's micro-kernel and the cache blocking tuned for it.
pub(super) trait MicroKernel {
    /// Rows of the big tile.
    const MR: usize;
    /// Strips (of 16 columns) of the big tile: NR = 16·STRIPS.
    const STRIPS: usize;
    /// Rows of A packed per block (A block MC×KC stays in L2).
    const MC: usize;
    /// Shared-dimension slice per block (ideally a B micro-panel KC×NR stays
    /// in L1; longer slices trade that for fewer passes over C).
    const KC: usize;
    /// Columns of B swept per block (a KC×NC block of B stays in L3).
    const NC: usize;

    /// The widest tile, in strips (STRIPS, or a power of two above it), for
    /// a panel of `rows ≤ MR` rows.
    fn max_strips(rows: usize) -> usize;

    /// C[rows × 16·strips] (leading dimension `ldc`) = beta·C + Ã·B̃ over `kc`
    /// steps; `beta == 0` writes C without reading it.
    ///
    /// # Safety
    /// The CPU runs this kernel's ISA; `1 ≤ rows ≤ MR`; `strips` is STRIPS,
    /// `max_strips(rows)` or a power of two below it; `a` is readable for `kc·rows` f32; `b` for
    /// `kc` rows of `strips` strips; `c` writable (and, unless `beta == 0`,
    /// readable) for `rows` rows of `16·strips` f32 at stride `ldc`; unless
    /// `b.pack_into` is null, it is writable for `16·strips·kc` f32.
    #[allow(clippy::too_many_arguments)] // a BLIS micro-kernel's operands, kept flat
    unsafe fn tile(
        rows: usize,
        strips: usize,
        kc: usize,
        a: *const f32,
        b: BPanel,
        c: *mut f32,
        ldc: usize,
        beta: f32,
    );

    /// y[0..n] += Σ_{p<K} a[p] · B[p, 0..n], B row-major (row `p` at
    /// `b[p·ldb..][..n]`, K = `a.len()`, n = `y.len()`): the GEMV of one row of
    /// A, walking a few rows of B front to back at a time so the hardware
    /// prefetchers see plain sequential streams. Each sum starts from zero
    /// and is added to y once, so y + this call equals y + (the same call on
    /// a zeroed y), bit for bit.
    ///
    /// # Safety
    /// The CPU runs this kernel's ISA. (Slice bounds are checked.)
    unsafe fn gemv(a: &[f32], b: &[f32], ldb: usize, y: &mut [f32]);

    /// Packs one row panel of a row-major A: `panel[p·h + i] = a[i·lda + p]`
    /// for the h = `rows` (≤ MR) rows starting at `a[0]`, p < kc =
    /// `panel.len() / rows`. The default moves one value at a time.
    ///
    /// # Safety
    /// The CPU runs this kernel's ISA. (Slice bounds are checked.)
    unsafe fn pack_a_rows(a: &[f32], lda: usize, rows: usize, panel: &mut [f32]) {
        super::pack::pack_a_rows(a, lda, rows, panel)
    }
}

/// Panics unless `b` holds K = `a.len()` rows of `n` columns at stride `ldb`.
pub(super) fn check_gemv(a: &[f32], b: &[f32], ldb: usize, n: usize) {
    if !a.is_empty() && n > 0 {
        assert!(
            (a.len() - 1) * ldb + n <= b.len(),
            "gemv: B too short for {}x{n} at stride {ldb}",
            a.len()
        );
    }
}

/// Implements [`MicroKernel::max_strips`] and [`MicroKernel::tile`] from one
/// list of the tiles an ISA instantiates, `rows => [strips, ...]` with the
/// strips ascending, the widest last: each row count lists STRIPS, its
/// widest, and every power of two below it (what loop 2 asks for).
/// Expands inside the `impl MicroKernel` block, next to the ISA's own
/// `tile::<R, S>` function.
macro_rules! tiles {
    ($($r:literal => [$($s:literal),+]),+ $(,)?) => {
        fn max_strips(rows: usize) -> usize {
            match rows {
                $($r => *[$($s),+].last().unwrap(),)+
                _ => Self::STRIPS,
            }
        }

        unsafe fn tile(
            rows: usize,
            strips: usize,
            kc: usize,
            a: *const f32,
            b: BPanel,
            c: *mut f32,
            ldc: usize,
            beta: f32,
        ) {
            // SAFETY: the caller upholds `MicroKernel::tile`'s contract (this
            // CPU runs the kernel's ISA; a, b and c span the tile), which is
            // exactly the contract of the ISA's `tile::<R, S>`.
            unsafe {
                match (rows, strips) {
                    $($(($r, $s) => tile::<$r, $s>(kc, a, b, c, ldc, beta),)+)+
                    (r, s) => unreachable!("no {r}-row {s}-strip tile"),
                }
            }
        }
    };
}
pub(super) use tiles;

/// Evaluates `$body` with `$K` naming the micro-kernel type of `$isa`.
macro_rules! with_kernel {
    ($isa:expr, $K:ident => $body:expr) => {
        match $isa {
            $crate::kernels::dispatch::Isa::Scalar => {
                type $K = $crate::kernels::gemm::microkernel::scalar::Scalar;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            $crate::kernels::dispatch::Isa::Avx2 => {
                type $K = $crate::kernels::gemm::microkernel::avx2::Avx2;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            $crate::kernels::dispatch::Isa::Avx512 => {
                type $K = $crate::kernels::gemm::microkernel::avx512::Avx512;
                $body
            }
            #[cfg(target_arch = "aarch64")]
            $crate::kernels::dispatch::Isa::Neon => {
                type $K = $crate::kernels::gemm::microkernel::neon::Neon;
                $body
            }
            #[allow(unreachable_patterns)]
            other => unreachable!("no GEMM kernel for {}", other.name()),
        }
    };
}
pub(super) use with_kernel;
