//! One suite for every ISA this host runs, against the f64 reference.

use super::reference;
use super::*;
use crate::test_util::{assert_close, Rng, LENGTHS};

const INF: f32 = f32::INFINITY;

/// eˣ is good to ~1.5e-7 relative; scale·x + mask rounds in f32 (|z| ≤ 8
/// here, so up to 5e-7 absolute on z, hence relative on p).
const REL: f64 = 2e-6;
const ABS: f64 = 1e-30;

#[test]
fn softmax_random_rows_scales_and_masks() {
    let mut rng = Rng::new(1);
    for isa in dispatch::available() {
        for n in LENGTHS {
            for scale in [1.0, 0.125, -0.5] {
                for masked in [false, true] {
                    let x = rng.vec(n, -8.0, 8.0);
                    let mask: Vec<f32> = (0..n)
                        .map(|_| {
                            if rng.below(3) == 0 {
                                -INF
                            } else {
                                rng.uniform(-1.0, 1.0)
                            }
                        })
                        .collect();
                    let mask = masked.then_some(&mask[..]);
                    let want = reference::softmax(&x, scale, mask);
                    let mut got = x.clone();
                    softmax_row_with(isa, &mut got, scale, mask);
                    assert_close(
                        &got,
                        &want,
                        REL,
                        ABS,
                        &format!("{isa:?} n={n} scale={scale} mask={masked}"),
                    );
                }
            }
        }
    }
}

#[test]
fn softmax_rows_with_huge_values_are_finite() {
    for isa in dispatch::available() {
        for n in [2, 9, 17, 33] {
            let x: Vec<f32> = (0..n).map(|j| [1e30, -1e30, 0.0, 3.0][j % 4]).collect();
            let mut got = x.clone();
            softmax_row_with(isa, &mut got, 1.0, None);
            assert_close(
                &got,
                &reference::softmax(&x, 1.0, None),
                REL,
                ABS,
                &format!("{isa:?} n={n}"),
            );
            // Only the 1e30 entries share the mass.
            let share = 1.0 / n.div_ceil(4) as f32;
            assert!(got
                .iter()
                .enumerate()
                .all(|(j, &p)| p == if j % 4 == 0 { share } else { 0.0 }));
        }
    }
}

#[test]
fn softmax_fully_masked_rows_are_zeros() {
    for isa in dispatch::available() {
        for n in LENGTHS {
            let mask = vec![-INF; n];
            // Huge scores too: scale·x overflows to +inf, and +inf - inf must
            // not leak a NaN through a masked position.
            for x0 in [0.5f32, 3e38] {
                let mut x = vec![x0; n];
                softmax_row_with(isa, &mut x, 10.0, Some(&mask));
                assert!(x.iter().all(|&p| p == 0.0), "{isa:?} n={n} x={x0}: {x:?}");
            }
        }
    }
}

#[test]
fn softmax_overflowing_scores_share_the_mass() {
    for isa in dispatch::available() {
        for n in [3, 8, 17] {
            // scale·x = +inf at j = 1 and j = n-1 (not masked), 1e31 elsewhere.
            let mut x = vec![1e30f32; n];
            x[1] = 3e38;
            x[n - 1] = 3e38;
            let mut mask = vec![0.0f32; n];
            mask[0] = -INF;
            let mut got = x.clone();
            softmax_row_with(isa, &mut got, 10.0, Some(&mask));
            for (j, &p) in got.iter().enumerate() {
                let want = if j == 1 || j == n - 1 { 0.5 } else { 0.0 };
                assert_eq!(p, want, "{isa:?} n={n} j={j}: {got:?}");
            }
        }
    }
}

#[test]
fn softmax_masked_positions_are_exact_zeros_and_rows_sum_to_one() {
    let mut rng = Rng::new(2);
    for isa in dispatch::available() {
        let n = 77;
        let x = rng.vec(n, -30.0, 30.0);
        let mask: Vec<f32> = (0..n)
            .map(|j| if j % 3 == 1 { -INF } else { 0.0 })
            .collect();
        let mut got = x.clone();
        softmax_row_with(isa, &mut got, 1.0, Some(&mask));
        assert!(got.iter().zip(&mask).all(|(&p, &m)| m == 0.0 || p == 0.0));
        let sum: f64 = got.iter().map(|&p| p as f64).sum();
        assert!((sum - 1.0).abs() < 1e-6, "{isa:?}: sum {sum}");
    }
}

#[test]
fn log_softmax_random_and_extreme_rows() {
    let mut rng = Rng::new(3);
    for isa in dispatch::available() {
        for n in LENGTHS {
            let x = rng.vec(n, -20.0, 20.0);
            let mut got = x.clone();
            log_softmax_row_with(isa, &mut got);
            // x - max is exact-ish; the log-sum adds ~1e-7 absolute.
            assert_close(
                &got,
                &reference::log_softmax(&x),
                1e-6,
                2e-6,
                &format!("{isa:?} n={n}"),
            );

            let x: Vec<f32> = (0..n)
                .map(|j| [1e30, -1e30, 0.0, 5.0, -3e38][j % 5])
                .collect();
            let mut got = x.clone();
            log_softmax_row_with(isa, &mut got);
            assert!(got.iter().all(|v| v.is_finite()), "{isa:?} n={n}: {got:?}");
            assert_close(
                &got,
                &reference::log_softmax(&x),
                1e-6,
                2e-6,
                &format!("{isa:?} n={n} extreme"),
            );
        }
    }
}

/// The public entry points use whatever ISA is selected, so they are held to
/// the reference, not bitwise to one ISA's row kernel.
#[test]
fn row_parallel_variants_match_reference() {
    let mut rng = Rng::new(4);
    // 300 × 129 is above the parallel threshold.
    let (rows, n) = (300, 129);
    let x = rng.vec(rows * n, -8.0, 8.0);
    let mut all = x.clone();
    softmax_rows(&mut all, n);
    let mut all_log = x.clone();
    log_softmax_rows(&mut all_log, n);
    for (r, row) in x.chunks_exact(n).enumerate() {
        let got = &all[r * n..(r + 1) * n];
        assert_close(
            got,
            &reference::softmax(row, 1.0, None),
            REL,
            ABS,
            &format!("row {r}"),
        );
        let got = &all_log[r * n..(r + 1) * n];
        assert_close(
            got,
            &reference::log_softmax(row),
            1e-6,
            2e-6,
            &format!("log row {r}"),
        );
    }
}

#[test]
fn a_nan_makes_the_whole_row_nan_as_in_torch() {
    for isa in dispatch::available() {
        for n in LENGTHS.into_iter().filter(|&n| n > 0) {
            for at in [0, n / 2, n - 1] {
                let mut x: Vec<f32> = (0..n).map(|j| j as f32 * 0.25).collect();
                x[at] = f32::NAN;
                let mut soft = x.clone();
                softmax_row_with(isa, &mut soft, 1.0, None);
                assert!(
                    soft.iter().all(|p| p.is_nan()),
                    "{isa:?} n={n} at={at}: {soft:?}"
                );
                let mut log = x.clone();
                log_softmax_row_with(isa, &mut log);
                assert!(
                    log.iter().all(|p| p.is_nan()),
                    "{isa:?} n={n} at={at}: {log:?}"
                );
                // A NaN where the mask says "ignore" is ignored.
                let mut mask = vec![0.0f32; n];
                mask[at] = -INF;
                let mut masked = x.clone();
                softmax_row_with(isa, &mut masked, 1.0, Some(&mask));
                let finite = masked.iter().all(|p| p.is_finite());
                assert!(
                    finite && masked[at] == 0.0,
                    "{isa:?} n={n} at={at}: {masked:?}"
                );
            }
        }
    }
}
