//! One suite for every ISA this host runs, against the f64 reference.

use super::reference;
use super::*;
use crate::test_util::{assert_close, Rng, LENGTHS};

const EPS: f32 = 1e-5;

fn params(rng: &mut Rng, n: usize) -> (Vec<f32>, Vec<f32>) {
    (rng.vec(n, 0.5, 1.5), rng.vec(n, -1.0, 1.0))
}

#[test]
fn random_rows_with_offsets() {
    let mut rng = Rng::new(10);
    for isa in dispatch::available() {
        for n in LENGTHS {
            // Offsets make the mean large against the spread: a one-pass
            // E[x²] - E[x]² in f32 would lose every digit at 1e4.
            for (offset, spread) in [(0.0, 1.0), (3.0, 0.01), (1e4, 1.0), (-1e6, 10.0)] {
                let x: Vec<f32> = rng
                    .vec(n, -spread, spread)
                    .iter()
                    .map(|v| v + offset)
                    .collect();
                let (g, b) = params(&mut rng, n);
                let want = reference::layer_norm(&x, &g, &b, EPS);
                let mut got = vec![f32::NAN; n];
                layer_norm_row_with(isa, &x, &g, &b, EPS, &mut got);
                assert_close(
                    &got,
                    &want,
                    2e-6,
                    2e-6,
                    &format!("{isa:?} n={n} offset={offset}"),
                );
            }
        }
    }
}

#[test]
fn constant_rows_give_beta() {
    let mut rng = Rng::new(11);
    for isa in dispatch::available() {
        for n in LENGTHS {
            for c in [0.0f32, 1.0, -7.3, 12345.678, 1e20] {
                let x = vec![c; n];
                let (g, b) = params(&mut rng, n);
                let mut got = vec![f32::NAN; n];
                layer_norm_row_with(isa, &x, &g, &b, EPS, &mut got);
                let want: Vec<f64> = b.iter().map(|&v| v as f64).collect();
                assert_close(&got, &want, 0.0, 1e-6, &format!("{isa:?} n={n} c={c}"));
            }
        }
    }
}

#[test]
fn eps_is_used_as_given() {
    // Variance 1 (±1 alternating); eps = 3 gives 1/sqrt(4) = 0.5.
    for isa in dispatch::available() {
        let x: Vec<f32> = (0..10)
            .map(|j| if j % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let (g, b) = (vec![1.0; 10], vec![0.0; 10]);
        let mut got = vec![0.0; 10];
        layer_norm_row_with(isa, &x, &g, &b, 3.0, &mut got);
        assert!(
            got.iter().zip(&x).all(|(&y, &v)| y == 0.5 * v),
            "{isa:?}: {got:?}"
        );
    }
}

#[test]
fn fused_residual_matches_add_then_norm() {
    let mut rng = Rng::new(12);
    for isa in dispatch::available() {
        for n in LENGTHS {
            let x = rng.vec(n, -2.0, 2.0);
            let r: Vec<f32> = rng.vec(n, -2.0, 2.0).iter().map(|v| v + 100.0).collect();
            let (g, b) = params(&mut rng, n);
            let sum: Vec<f32> = x.iter().zip(&r).map(|(a, b)| a + b).collect();
            let want = reference::layer_norm(&sum, &g, &b, EPS);
            let mut got = x.clone();
            add_layer_norm_row_with(isa, &mut got, &r, &g, &b, EPS);
            assert_close(&got, &want, 1e-5, 1e-5, &format!("{isa:?} n={n}"));
        }
    }
}

#[test]
fn rows_variant_matches_reference() {
    let mut rng = Rng::new(13);
    let (rows, e) = (200, 257);
    let x = rng.vec(rows * e, -3.0, 3.0);
    let (g, b) = params(&mut rng, e);
    let mut all = vec![0.0; rows * e];
    layer_norm_rows(&x, &g, &b, EPS, &mut all);
    for (r, row) in x.chunks_exact(e).enumerate() {
        let want = reference::layer_norm(row, &g, &b, EPS);
        assert_close(
            &all[r * e..(r + 1) * e],
            &want,
            2e-6,
            2e-6,
            &format!("row {r}"),
        );
    }
}

#[test]
#[should_panic(expected = "lengths differ")]
fn mismatched_lengths_panic() {
    layer_norm_row(&[1.0, 2.0], &[1.0], &[0.0, 0.0], EPS, &mut [0.0, 0.0]);
}
