//! Test helpers shared by every module of the crate: a small deterministic
//! RNG, the row lengths that exercise every SIMD tail, a closeness check,
//! strided matrix storage, a fresh thread pool.

/// xorshift64*: deterministic, good enough for test data.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [lo, hi).
    pub(crate) fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    pub(crate) fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    /// `n` parameters of a test model: within ±0.5 of 1 for a LayerNorm
    /// weight (`norm_weight`), of 0 otherwise, so activations stay in a
    /// sane range through every layer.
    pub(crate) fn params(&mut self, n: usize, norm_weight: bool) -> Vec<f32> {
        let base = if norm_weight { 1.0 } else { 0.0 };
        (0..n)
            .map(|_| base + 0.5 * self.uniform(-1.0, 1.0))
            .collect()
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Lengths 0, 1, odd ones, and around every multiple of 4, 8 and 16 lanes.
pub(crate) const LENGTHS: [usize; 20] = [
    0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 100,
];

/// Panics unless |got - want| ≤ rel·|want| + abs everywhere (NaN fails).
pub(crate) fn assert_close(got: &[f32], want: &[f64], rel: f64, abs: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (j, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let ok = err <= rel * w.abs() + abs || (g as f64 == w);
        assert!(ok, "{what}: [{j}] got {g:e}, want {w:e} (err {err:e})");
    }
}

/// A [rows×cols] operand stored one of four ways, viewed over its own
/// storage (`MatRef::new(&data, rows, cols, row_stride, col_stride)`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Layout {
    RowMajor,
    /// Stored transposed (column-major view).
    Transposed,
    /// Row-major with padded rows.
    PaddedRows,
    /// Every other column of a wider row-major matrix.
    EveryOtherCol,
}

pub(crate) const LAYOUTS: [Layout; 4] = [
    Layout::RowMajor,
    Layout::Transposed,
    Layout::PaddedRows,
    Layout::EveryOtherCol,
];

/// (data, row stride, column stride) of a random [rows×cols] operand in
/// `layout`, values uniform in ±1.
pub(crate) fn storage(
    layout: Layout,
    rows: usize,
    cols: usize,
    rng: &mut Rng,
) -> (Vec<f32>, usize, usize) {
    let (len, rs, cs) = match layout {
        Layout::RowMajor => (rows * cols, cols, 1),
        Layout::Transposed => (rows * cols, 1, rows),
        Layout::PaddedRows => (rows * (cols + 3), cols + 3, 1),
        Layout::EveryOtherCol => (rows * 2 * cols, 2 * cols, 2),
    };
    (rng.vec(len.max(1), -1.0, 1.0), rs, cs)
}

/// Runs `f` inside a fresh rayon pool of `threads` threads (the kernels'
/// parallel loops then split across those).
pub(crate) fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}
