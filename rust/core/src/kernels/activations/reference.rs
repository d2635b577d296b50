//! Plain f64 GELU: x·Φ(x) with erfc from its Taylor series (|y| < 2) or its
//! continued fraction (|y| ≥ 2), both accurate to ~1e-14 relative here.

pub(super) fn gelu(x: f32) -> f64 {
    let x = x as f64;
    // Φ(x) = erfc(-x/√2)/2.
    0.5 * x * erfc(-x / std::f64::consts::SQRT_2)
}

pub(super) fn relu(x: f32) -> f64 {
    (x as f64).max(0.0)
}

fn erfc(y: f64) -> f64 {
    if y.abs() < 2.0 {
        1.0 - erf_series(y)
    } else if y > 0.0 {
        erfc_continued_fraction(y)
    } else {
        2.0 - erfc_continued_fraction(-y)
    }
}

/// erf(y) = 2/√π Σ (-1)ⁿ y^{2n+1} / (n!(2n+1)).
fn erf_series(y: f64) -> f64 {
    let (mut term, mut sum) = (y, y);
    for n in 1..60 {
        term *= -y * y / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// erfc(y) = e^{-y²}/√π · 1/(y + (1/2)/(y + 1/(y + (3/2)/(y + …)))), y ≥ 2,
/// evaluated bottom-up.
fn erfc_continued_fraction(y: f64) -> f64 {
    let mut k = y;
    for n in (1..=400).rev() {
        k = y + (n as f64 / 2.0) / k;
    }
    (-y * y).exp() / std::f64::consts::PI.sqrt() / k
}

/// x·Φ(x) at f32 inputs, by mpmath at 40 digits: checks the reference.
#[allow(clippy::excessive_precision)] // the digits as mpmath printed them
pub(super) const GELU_GOLDEN: [(f32, f64); 13] = [
    (-10000.0, 0.0),
    (-13.0, -7.952_313_719_414_843_6e-38),
    (-10.0, -7.619_853_024_160_526_1e-23),
    (-5.5, -1.044_425_935_623_824_6e-7),
    (-3.0, -0.004_049_694_094_890_283_6),
    (-1.0, -0.158_655_253_931_457_05),
    (-0.001_000_000_047_497_451_3, -0.000_499_601_081_496_917_12),
    (9.999_999_682_655_225e-21, 4.999_999_841_327_612_7e-21),
    (0.5, 0.345_731_230_637_006_55),
    (1.0, 0.841_344_746_068_542_95),
    (3.0, 2.995_950_305_905_109_7),
    (5.5, 5.499_999_895_557_406_4),
    (10.0, 10.0),
];
