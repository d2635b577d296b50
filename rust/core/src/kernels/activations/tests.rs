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
fn epilogue_row_adds_bias_activates_then_adds_the_residual() {
    // Every part present or absent, identity included: the f32 result of
    // act(x + bias) + residual computed one value at a time (bias and
    // residual adds are exact to reproduce; the activation within its
    // tolerance, so the residual is kept small next to it).
    let mut rng = Rng::new(22);
    for isa in dispatch::available() {
        for n in LENGTHS {
            let x = rng.vec(n, -6.0, 6.0);
            let bias = rng.vec(n, -1.0, 1.0);
            let residual = rng.vec(n, -1.0, 1.0);
            for act in [None, Some(Activation::Relu), Some(Activation::Gelu)] {
                let f = |v: f32| match act {
                    None => v as f64,
                    Some(Activation::Relu) => reference::relu(v),
                    Some(Activation::Gelu) => reference::gelu(v),
                };
                for (b, r) in [(false, false), (true, false), (false, true), (true, true)] {
                    let (bias, residual) = (b.then_some(&bias[..]), r.then_some(&residual[..]));
                    let mut got = x.clone();
                    epilogue_row(isa, act, &mut got, bias, residual);
                    let want: Vec<f64> = (0..n)
                        .map(|j| {
                            let v = f(x[j] + bias.map_or(0.0, |b| b[j]));
                            v + residual.map_or(0.0, |r| r[j] as f64)
                        })
                        .collect();
                    assert_close(
                        &got,
                        &want,
                        GELU_REL,
                        1e-6,
                        &format!("{isa:?} {act:?} n={n} bias {b} residual {r}"),
                    );
                }
            }
        }
    }
}

#[test]
fn epilogue_row_checks_its_lengths() {
    let isa = dispatch::selected();
    let mut x = vec![0.0f32; 5];
    for (bias, residual) in [
        (Some(&[0.0f32; 4][..]), None),
        (None, Some(&[0.0f32; 6][..])),
    ] {
        let mut x = x.clone();
        let caught =
            std::panic::catch_unwind(move || epilogue_row(isa, None, &mut x, bias, residual));
        assert!(
            caught.is_err(),
            "bias {bias:?} residual {residual:?} accepted for a row of 5"
        );
    }
    epilogue_row(isa, None, &mut x, Some(&[1.0; 5]), Some(&[2.0; 5]));
    assert_eq!(x, vec![3.0; 5]);
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
