//! One suite for every ISA this host runs, against the f64 reference.

use super::reference::{self, GELU_GOLDEN};
use super::*;
use crate::test_util::{assert_close, Rng, LENGTHS};

/// Measured ≤ 5e-7 relative; tiny (subnormal) results are only close in
/// absolute terms.
const GELU_REL: f64 = 1e-6;
const GELU_ABS: f64 = 1e-37;

fn gelu_on(isa: Isa, x: &[f32]) -> Vec<f32> {
    let mut y = x.to_vec();
    activation_with(isa, Activation::Gelu, &mut y, None);
    y
}

#[test]
fn reference_gelu_matches_mpmath() {
    for (x, want) in GELU_GOLDEN {
        let got = reference::gelu(x);
        assert!(
            (got - want).abs() <= 1e-13 * want.abs(),
            "gelu({x}) = {got:e}, mpmath {want:e}"
        );
    }
}

#[test]
fn gelu_matches_reference_over_the_whole_range() {
    // A dense sweep of [-15, 15] plus tiny and huge magnitudes.
    let mut x: Vec<f32> = (0..30_001).map(|i| -15.0 + i as f32 * 1e-3).collect();
    for e in -38..=38 {
        let m = 10f32.powi(e);
        x.extend([m, -m, 1.7 * m, -1.7 * m]);
    }
    x.extend([
        0.0,
        -0.0,
        1e4,
        -1e4,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        1e-45,
    ]);
    let want: Vec<f64> = x.iter().map(|&v| reference::gelu(v)).collect();
    for isa in dispatch::available() {
        let got = gelu_on(isa, &x);
        assert_close(&got, &want, GELU_REL, GELU_ABS, &format!("{isa:?}"));
        // Beyond the erfc range GELU is exactly x (or a zero) in f32.
        for (&xi, &gi) in x.iter().zip(&got) {
            if xi >= 14.0 {
                assert_eq!(gi, xi, "{isa:?}: gelu({xi})");
            }
            if xi <= -15.0 {
                assert_eq!(gi, 0.0, "{isa:?}: gelu({xi})");
            }
        }
    }
}

#[test]
fn gelu_golden_values() {
    let (x, want): (Vec<f32>, Vec<f64>) = GELU_GOLDEN.iter().copied().unzip();
    for isa in dispatch::available() {
        assert_close(
            &gelu_on(isa, &x),
            &want,
            GELU_REL,
            GELU_ABS,
            &format!("{isa:?}"),
        );
    }
}

#[test]
fn relu_and_gelu_all_lengths_with_and_without_bias() {
    let mut rng = Rng::new(20);
    for isa in dispatch::available() {
        for n in LENGTHS {
            let x = rng.vec(n, -6.0, 6.0);
            let bias = rng.vec(n, -1.0, 1.0);
            for act in [Activation::Relu, Activation::Gelu] {
                let f = match act {
                    Activation::Relu => reference::relu,
                    Activation::Gelu => reference::gelu,
                };
                let mut got = x.clone();
                activation_with(isa, act, &mut got, None);
                let want: Vec<f64> = x.iter().map(|&v| f(v)).collect();
                assert_close(
                    &got,
                    &want,
                    GELU_REL,
                    GELU_ABS,
                    &format!("{isa:?} {act:?} n={n}"),
                );

                let mut got = x.clone();
                activation_with(isa, act, &mut got, Some(&bias));
                let want: Vec<f64> = x.iter().zip(&bias).map(|(&v, &b)| f(v + b)).collect();
                assert_close(
                    &got,
                    &want,
                    GELU_REL,
                    GELU_ABS,
                    &format!("{isa:?} {act:?} n={n} bias"),
                );
            }
        }
    }
}

#[test]
fn parallel_entry_points_match_reference() {
    let mut rng = Rng::new(21);
    let (rows, n) = (150, 513);
    let x = rng.vec(rows * n, -5.0, 5.0);
    let bias = rng.vec(n, -1.0, 1.0);
    for act in [Activation::Relu, Activation::Gelu] {
        let f = match act {
            Activation::Relu => reference::relu,
            Activation::Gelu => reference::gelu,
        };
        let mut whole = x.clone();
        match act {
            Activation::Relu => relu_inplace(&mut whole),
            Activation::Gelu => gelu_inplace(&mut whole),
        }
        let want: Vec<f64> = x.iter().map(|&v| f(v)).collect();
        assert_close(&whole, &want, GELU_REL, GELU_ABS, &format!("{act:?}"));

        let mut whole = x.clone();
        bias_activation_inplace(act, &mut whole, Some(&bias));
        let want: Vec<f64> = x
            .iter()
            .zip(bias.iter().cycle())
            .map(|(&v, &b)| f(v + b))
            .collect();
        assert_close(&whole, &want, GELU_REL, GELU_ABS, &format!("{act:?} bias"));
    }
}

#[test]
fn activations_of_infinities_and_nan_match_torch() {
    // Every lane position of a vector and of the scalar tail.
    for isa in dispatch::available() {
        for len in [1, 7, 16, 17, 33] {
            let pos = gelu_on(isa, &vec![f32::INFINITY; len]);
            assert!(
                pos.iter().all(|&v| v == f32::INFINITY),
                "{isa:?} gelu(+inf) = {pos:?}"
            );
            // torch gives NaN for gelu(-inf); the limit 0 is what we define.
            let neg = gelu_on(isa, &vec![f32::NEG_INFINITY; len]);
            assert!(
                neg.iter().all(|&v| v == 0.0),
                "{isa:?} gelu(-inf) = {neg:?}"
            );
            let mut r = vec![f32::INFINITY; len];
            activation_with(isa, Activation::Relu, &mut r, None);
            assert!(
                r.iter().all(|&v| v == f32::INFINITY),
                "{isa:?} relu(+inf) = {r:?}"
            );
            // NaN propagates through both, as in torch.
            for act in [Activation::Relu, Activation::Gelu] {
                let mut x = vec![f32::NAN; len];
                activation_with(isa, act, &mut x, None);
                assert!(x.iter().all(|v| v.is_nan()), "{isa:?} {act:?}(NaN) = {x:?}");
            }
        }
    }
}
