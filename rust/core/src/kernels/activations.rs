//! Element-wise activations, in place. PLACEHOLDER BODIES (scalar).

/// x ← max(x, 0).
pub fn relu_inplace(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.max(0.0);
    }
}

/// x ← x·Φ(x) = 0.5·x·(1 + erf(x/√2)), the exact form of torch's GELU.
pub fn gelu_inplace(x: &mut [f32]) {
    for v in x.iter_mut() {
        let xf = *v as f64;
        *v = (0.5 * xf * (1.0 + erf(xf / std::f64::consts::SQRT_2))) as f32;
    }
}

fn erf(x: f64) -> f64 {
    // Abramowitz-Stegun 7.1.26 is too coarse; placeholder uses a series/CF split.
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = 1.0
        - t * (-x * x - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}
