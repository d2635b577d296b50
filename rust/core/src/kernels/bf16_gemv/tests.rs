//! One suite for every ISA this host runs: bf16 rounding against a plain
//! f64 reference, the packing read back, and every product held to the
//! error bound of the module doc around the exact (f64) sum.

use super::reference;
use super::*;
use crate::test_util::{in_pool, storage, Layout, Rng, LAYOUTS};

/// Both NaN with the same sign, or the same bits.
fn same_rounding(got: f32, want: f32) -> bool {
    if want.is_nan() {
        got.is_nan() && got.is_sign_negative() == want.is_sign_negative()
    } else {
        got.to_bits() == want.to_bits()
    }
}

#[test]
fn bf16_rounding_golden_values() {
    let f = f32::from_bits;
    let one = 1.0f32;
    for (x, want) in [
        (one, one),
        (-one, -one),
        (0.0, 0.0),
        (-0.0, -0.0),
        // 1 + 2⁻⁸ is halfway between 1 (even) and 1 + 2⁻⁷ (odd): 1.
        (f(0x3F80_8000), one),
        (f(0x3F80_8001), f(0x3F81_0000)),
        (f(0x3F80_7FFF), one),
        // 1 + 3·2⁻⁸: halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶ (even).
        (f(0x3F81_8000), f(0x3F82_0000)),
        (f(0xBF81_8000), f(0xBF82_0000)),
        // A carry through the mantissa steps the exponent: 2 - 2⁻⁸ → 2.
        (f(0x3FFF_FFFF), 2.0),
        (f(0x3FFF_8000), 2.0),
        // Near f32::MAX: the largest bf16 is 0x7F7F0000; halfway past it
        // (ties to even: 0x7F7F is odd) and beyond round to inf.
        (f(0x7F7F_0000), f(0x7F7F_0000)),
        (f(0x7F7F_7FFF), f(0x7F7F_0000)),
        (f(0x7F7F_8000), f32::INFINITY),
        (f32::MAX, f32::INFINITY),
        (f32::MIN, f32::NEG_INFINITY),
        (f(0xFF7F_7FFF), f(0xFF7F_0000)),
        (f32::INFINITY, f32::INFINITY),
        (f32::NEG_INFINITY, f32::NEG_INFINITY),
        // Subnormals: bf16's spacing there is 2⁻¹³³ (0x0001_0000).
        (f(0x0000_0001), 0.0),
        (f(0x8000_0001), -0.0),
        (f(0x0000_8000), 0.0),
        (f(0x0000_8001), f(0x0001_0000)),
        (f(0x0001_8000), f(0x0002_0000)),
        (f(0x0002_8000), f(0x0002_0000)),
        (f(0x007F_FFFF), f32::MIN_POSITIVE),
        (f(0x007F_7FFF), f(0x007F_0000)),
        (f32::MIN_POSITIVE, f32::MIN_POSITIVE),
    ] {
        for (name, got) in [
            ("round_to_bf16", round_to_bf16(x)),
            ("reference", reference::round_to_bf16(x)),
        ] {
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{name}({x:e} = {:#010x}) = {got:e}, want {want:e}",
                x.to_bits()
            );
        }
    }
    // NaN stays NaN, with its sign, also when only its low 16 bits are set
    // (truncating those would give an infinity).
    for bits in [
        0x7FC0_0000u32,
        0x7F80_0001,
        0x7F80_FFFF,
        0xFF80_0001,
        0xFFFF_FFFF,
    ] {
        let x = f32::from_bits(bits);
        let got = round_to_bf16(x);
        assert!(got.is_nan(), "round_to_bf16({bits:#010x}) = {got:e}");
        assert_eq!(got.is_sign_negative(), x.is_sign_negative());
        assert_eq!(got.to_bits() & 0xFFFF, 0, "{bits:#010x}");
        assert!(reference::round_to_bf16(x).is_nan());
    }
}

#[test]
fn bf16_rounding_matches_reference_on_every_high_half() {
    // Every sign, exponent and kept mantissa, each with the low halves
    // that decide the rounding (0, just below, at and above the tie, all
    // ones) and two random ones; then random patterns.
    let mut rng = Rng::new(16);
    for high in 0..=0xFFFFu32 {
        let r = rng.next_u64();
        for low in [
            0,
            1,
            0x7FFF,
            0x8000,
            0x8001,
            0xFFFF,
            r as u32 & 0xFFFF,
            (r >> 32) as u32 & 0xFFFF,
        ] {
            let x = f32::from_bits(high << 16 | low);
            let (got, want) = (round_to_bf16(x), reference::round_to_bf16(x));
            assert!(
                same_rounding(got, want),
                "{:#010x}: got {:#010x}, want {:#010x}",
                x.to_bits(),
                got.to_bits(),
                want.to_bits()
            );
        }
    }
    for _ in 0..1_000_000 {
        let x = f32::from_bits(rng.next_u64() as u32);
        let (got, want) = (round_to_bf16(x), reference::round_to_bf16(x));
        assert!(same_rounding(got, want), "{:#010x}", x.to_bits());
    }
}

/// A weight [n×k] uniform in ±1 with awkward values mixed in: ties, values
/// that round up across a power of two, subnormals, zeros of both signs.
fn awkward_weight(n: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    let special = [
        f32::from_bits(0x3F80_8000),
        f32::from_bits(0x3F81_8000),
        f32::from_bits(0xBFFF_FFFF),
        f32::from_bits(0x0000_8001),
        f32::from_bits(0x8000_0001),
        -0.0,
        0.0,
        1e-30,
    ];
    (0..n * k)
        .map(|_| {
            if rng.below(8) == 0 {
                special[rng.below(special.len())]
            } else {
                rng.uniform(-1.0, 1.0)
            }
        })
        .collect()
}

#[test]
fn packing_reads_back_as_the_rounded_weight() {
    let mut rng = Rng::new(1);
    for (n, k) in [
        (1, 1),
        (1, 7),
        (16, 3),
        (127, 2),
        (128, 5),
        (129, 4),
        (300, 17),
        (33, 64),
    ] {
        let mut w = awkward_weight(n, k, &mut rng);
        // Specials that only the packing sees (the products avoid them).
        w[0] = f32::NAN;
        w[n * k - 1] = f32::MAX;
        if n * k > 2 {
            w[1] = f32::from_bits(0x7F80_0001);
        }
        let panels = Bf16Panels::from_linear_weight(&w, n, k);
        assert_eq!((panels.n(), panels.k()), (n, k));
        for j in 0..n {
            for p in 0..k {
                let (got, want) = (panels.get(j, p), round_to_bf16(w[j * k + p]));
                assert_eq!(got.to_bits(), want.to_bits(), "n={n} k={k} w[{j},{p}]");
            }
        }
        // The last panel's padding columns are zero.
        let last = n.div_ceil(PANEL) - 1;
        for p in 0..k {
            for jj in n - last * PANEL..PANEL {
                let word = panels.word((last * k + p) * 4 + jj / 32, jj % 16);
                let half = if jj % 32 < 16 {
                    word & 0xFFFF
                } else {
                    word >> 16
                };
                assert_eq!(half, 0, "n={n} k={k} padding column {jj} step {p}");
            }
        }
        assert_eq!(
            panels.words() as usize % 64,
            0,
            "panels must be line aligned"
        );
    }
}

/// Runs every available ISA on x [M×K] and the weight w [n×k] and checks
/// each result against the reference and its bound.
fn check_all_isas(x: MatRef, w: &[f32], n: usize, what: &str) {
    let k = x.cols;
    let panels = Bf16Panels::from_linear_weight(w, n, k);
    let w_rounded: Vec<f32> = w.iter().map(|&v| reference::round_to_bf16(v)).collect();
    let (exact, bound) = reference::gemv(x, &w_rounded, n);
    for isa in dispatch::available() {
        let mut out = vec![f32::NAN; x.rows * n];
        gemv_with(isa, x, &panels, &mut out);
        for (idx, ((&got, &want), &tol)) in out.iter().zip(&exact).zip(&bound).enumerate() {
            let err = (got as f64 - want).abs();
            assert!(
                err <= tol,
                "{} {what} m={} k={k} n={n}: out[{}, {}] = {got:e}, exact {want:e}, \
                 error {err:e} > bound {tol:e}",
                isa.name(),
                x.rows,
                idx / n,
                idx % n
            );
        }
    }
}

#[test]
fn shapes_layouts_and_panel_edges() {
    // K = 1 and ragged K blocks (64); N = 1 and around 16, 32, 64, 128.
    let ks = [1, 2, 3, 7, 16, 63, 64, 65, 130, 300];
    let ns = [
        1, 2, 15, 16, 17, 31, 32, 33, 64, 100, 127, 128, 129, 200, 257, 300,
    ];
    let mut rng = Rng::new(7);
    for m in 1..=5 {
        for &n in &ns {
            let k = ks[rng.below(ks.len())];
            let layout = LAYOUTS[rng.below(LAYOUTS.len())];
            let w = awkward_weight(n, k, &mut rng);
            let (data, rs, cs) = storage(layout, m, k, &mut rng);
            let x = MatRef::new(&data, m, k, rs, cs);
            check_all_isas(x, &w, n, &format!("{layout:?}"));
        }
    }
    // More rows than one sweep keeps (8): a second block of rows, odd ones
    // left over from the pairs.
    for m in [8, 9, 11, 17] {
        let (k, n) = (70, 260);
        let w = awkward_weight(n, k, &mut rng);
        let (data, rs, cs) = storage(Layout::PaddedRows, m, k, &mut rng);
        check_all_isas(MatRef::new(&data, m, k, rs, cs), &w, n, "many rows");
    }
    // Every K with one N, every N with one K.
    for k in ks {
        let w = rng.vec(45 * k, -1.0, 1.0);
        let values = rng.vec(2 * k, -1.0, 1.0);
        check_all_isas(MatRef::row_major(&values, 2, k), &w, 45, "k sweep");
    }
    for n in ns {
        let w = rng.vec(n * 20, -1.0, 1.0);
        let (data, rs, cs) = storage(Layout::Transposed, 3, 20, &mut rng);
        check_all_isas(MatRef::new(&data, 3, 20, rs, cs), &w, n, "n sweep");
    }
}

/// ±mantissa·2^e with e uniform in `exps` and the mantissa in [1, 2).
fn scaled(n: usize, exps: std::ops::Range<i32>, rng: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let e = exps.start + rng.below((exps.end - exps.start) as usize) as i32;
            let sign = if rng.below(2) == 0 { 1.0 } else { -1.0 };
            sign * rng.uniform(1.0, 2.0) * 2f32.powi(e)
        })
        .collect()
}

#[test]
fn extreme_magnitudes_stay_within_the_bound() {
    let mut rng = Rng::new(99);
    let (m, k, n) = (3, 200, 150);
    for (what, x_exps, w_exps) in [
        // Products of wildly different sizes in one sum.
        ("wide", -60..50, -60..50),
        // Large: products near 2¹¹⁰, sums near 2¹¹⁸ (no overflow).
        ("large", 55..60, 48..50),
        // Tiny: products in the subnormal range, some below it (the
        // K·2⁻¹⁴⁸ slack).
        ("underflow", -75..-62, -80..-70),
        // Weights in bf16's subnormal range or rounding to zero.
        ("tiny weights", -2..2, -150..-126),
    ] {
        let w = scaled(n * k, w_exps, &mut rng);
        let x = scaled(m * k, x_exps, &mut rng);
        check_all_isas(MatRef::row_major(&x, m, k), &w, n, what);
    }
    // Cancellation: a sum of ±1 products that is (nearly) zero.
    let w: Vec<f32> = (0..n * k)
        .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let x = vec![0.75f32; m * k];
    check_all_isas(MatRef::row_major(&x, m, k), &w, n, "cancellation");
}

#[test]
fn a_nan_weight_spoils_only_its_column() {
    let mut rng = Rng::new(3);
    let (m, k, n) = (2, 70, 300);
    let mut w = rng.vec(n * k, -1.0, 1.0);
    let bad = 161;
    w[bad * k + 33] = f32::NAN;
    let panels = Bf16Panels::from_linear_weight(&w, n, k);
    let x = rng.vec(m * k, -1.0, 1.0);
    for isa in dispatch::available() {
        let mut out = vec![0.0; m * n];
        gemv_with(isa, MatRef::row_major(&x, m, k), &panels, &mut out);
        for (idx, v) in out.iter().enumerate() {
            assert_eq!(
                v.is_nan(),
                idx % n == bad,
                "{} out[{idx}] = {v}",
                isa.name()
            );
        }
    }
}

#[test]
fn empty_shapes() {
    for isa in dispatch::available() {
        // K = 0: every sum is empty.
        let panels = Bf16Panels::from_linear_weight(&[], 130, 0);
        let mut out = vec![f32::NAN; 2 * 130];
        gemv_with(isa, MatRef::row_major(&[], 2, 0), &panels, &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
        // M = 0, N = 0.
        let panels = Bf16Panels::from_linear_weight(&[1.0; 12], 4, 3);
        gemv_with(isa, MatRef::row_major(&[], 0, 3), &panels, &mut []);
        let panels = Bf16Panels::from_linear_weight(&[], 0, 3);
        gemv_with(isa, MatRef::row_major(&[1.0; 6], 2, 3), &panels, &mut []);
    }
}

#[test]
fn threads_give_the_single_thread_result() {
    let mut rng = Rng::new(12);
    for (m, k, n) in [(1, 512, 4000), (3, 100, 3000), (5, 600, 1000)] {
        assert!(
            n * k >= PAR_MIN_ELEMENTS,
            "{m}x{k}x{n} is too small to thread"
        );
        let w = rng.vec(n * k, -1.0, 1.0);
        let panels = Bf16Panels::from_linear_weight(&w, n, k);
        // Strided for every m (x is then copied per call).
        let (data, rs, cs) = storage(Layout::EveryOtherCol, m, k, &mut rng);
        let x = MatRef::new(&data, m, k, rs, cs);
        for isa in dispatch::available() {
            let run = || {
                let mut out = vec![f32::NAN; m * n];
                gemv_with(isa, x, &panels, &mut out);
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            let what = format!("{} m={m} k={k} n={n}", isa.name());
            // One thread: a single call over all panels.
            let single = in_pool(1, || {
                assert_eq!(crate::parallel::loop_threads(), 1);
                run()
            });
            // The kernel pool with 2 threads, called from outside it (the
            // caller joins its workers) and from one of its workers.
            crate::parallel::set_num_threads(2).unwrap();
            assert_eq!(single, run(), "outside the pool: {what}");
            assert_eq!(
                single,
                crate::parallel::install(run),
                "inside the pool: {what}"
            );
            // Inside another rayon pool (rayon's own splitting).
            assert_eq!(single, in_pool(3, run), "3-thread rayon pool: {what}");
        }
        // The default entry point is the selected ISA's.
        let mut out = vec![0.0; m * n];
        gemv(x, &panels, &mut out);
        let mut want = vec![0.0; m * n];
        gemv_with(dispatch::selected(), x, &panels, &mut want);
        assert_eq!(out, want);
        // And the threaded result is within the bound.
        check_all_isas(x, &w, n, "threaded");
    }
}

#[test]
#[should_panic(expected = "x has 4 columns but the weight has K = 3")]
fn mismatched_k_panics() {
    let panels = Bf16Panels::from_linear_weight(&[0.0; 6], 2, 3);
    gemv(MatRef::row_major(&[0.0; 4], 1, 4), &panels, &mut [0.0; 2]);
}

#[test]
#[should_panic(expected = "out has 3 elements, expected 1x2")]
fn wrong_out_length_panics() {
    let panels = Bf16Panels::from_linear_weight(&[0.0; 6], 2, 3);
    gemv(MatRef::row_major(&[0.0; 3], 1, 3), &panels, &mut [0.0; 3]);
}

#[test]
#[should_panic(expected = "weight has 5 elements, expected 2x3")]
fn wrong_weight_length_panics() {
    Bf16Panels::from_linear_weight(&[0.0; 5], 2, 3);
}

#[test]
#[should_panic(expected = "exceeds its 5 elements")]
fn a_view_past_its_data_panics() {
    // MatRef's fields are public: a view built by hand is checked too.
    let data = [0.0; 5];
    let x = MatRef {
        data: &data,
        rows: 2,
        cols: 3,
        row_stride: 3,
        col_stride: 1,
    };
    let panels = Bf16Panels::from_linear_weight(&[0.0; 6], 2, 3);
    gemv(x, &panels, &mut [0.0; 4]);
}
