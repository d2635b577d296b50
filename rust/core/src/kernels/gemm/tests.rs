//! One suite, run against every ISA this host has, holding each kernel to a
//! plain f64 reference.

use super::buffer::AlignedBuf;
use super::*;
use crate::kernels::dispatch;
use crate::test_util::{in_pool, storage, Layout, Rng, LAYOUTS};

/// C = beta·C + A·B accumulated in f64, plus the bound on f32 rounding error
/// for each element: k·2⁻²³·(Σ|a·b| + |beta·c|) (generous; a wrong index or
/// a missed k step is off by O(1) of that sum).
fn reference(a: MatRef, b: MatRef, beta: f32, c: &[f32], ldc: usize) -> (Vec<f32>, Vec<f32>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let mut out = c.to_vec();
    let mut bound = vec![0.0f32; c.len()];
    for i in 0..m {
        for j in 0..n {
            let (mut acc, mut mag) = (0.0f64, 0.0f64);
            for p in 0..k {
                let t = a.at(i, p) as f64 * b.at(p, j) as f64;
                acc += t;
                mag += t.abs();
            }
            let old = if beta == 0.0 {
                0.0
            } else {
                beta as f64 * c[i * ldc + j] as f64
            };
            out[i * ldc + j] = (acc + old) as f32;
            bound[i * ldc + j] =
                ((k + 2) as f64 * f32::EPSILON as f64 * (mag + old.abs()) + 1e-30) as f32;
        }
    }
    (out, bound)
}

fn assert_close(got: &[f32], want: &[f32], bound: &[f32], what: &str) {
    assert_eq!(got.len(), want.len());
    for (idx, ((&g, &w), &e)) in got.iter().zip(want).zip(bound).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else {
            (g - w).abs() <= e
        };
        assert!(
            ok,
            "{what}: element {idx}: got {g}, want {w} (tolerance {e})"
        );
    }
}

/// Runs gemm and gemm_packed for one case on `isa` and checks both.
#[allow(clippy::too_many_arguments)]
fn check_case(
    isa: Isa,
    m: usize,
    k: usize,
    n: usize,
    la: Layout,
    lb: Layout,
    beta: f32,
    rng: &mut Rng,
) {
    let (ad, ars, acs) = storage(la, m, k, rng);
    let (bd, brs, bcs) = storage(lb, k, n, rng);
    let a = MatRef::new(&ad, m, k, ars, acs);
    let b = MatRef::new(&bd, k, n, brs, bcs);
    let ldc = n + rng.below(3);
    let c0 = rng.vec((m * ldc).max(1), -1.0, 1.0);
    let (want, bound) = reference(a, b, beta, &c0, ldc);
    let what = format!(
        "{} m={m} k={k} n={n} A {la:?} B {lb:?} beta={beta}",
        isa.name()
    );

    let mut c = c0.clone();
    gemm_with(isa, a, b, beta, &mut c, ldc);
    assert_close(&c, &want, &bound, &format!("gemm {what}"));

    let mut c = c0.clone();
    gemm_packed_with(isa, a, &PackedB::pack(b), beta, &mut c, ldc);
    assert_close(&c, &want, &bound, &format!("gemm_packed {what}"));
}

#[test]
fn shapes_around_tile_and_block_edges() {
    // 0/1, odd sizes, MR (4, 6, 9) ± 1, strips (16, 32, 48, 64, 128) ± 1,
    // KC (171, 256, 512) ± 1, MC (64, 120, 162), NC (2048 columns).
    let dims = [
        0, 1, 2, 3, 5, 7, 8, 9, 10, 13, 15, 17, 29, 31, 33, 47, 49, 63, 65,
    ];
    let mut rng = Rng::new(0x5EED);
    for isa in dispatch::available() {
        for &m in &dims {
            for &n in &dims {
                let k = dims[rng.below(dims.len())];
                check_case(
                    isa,
                    m,
                    k,
                    n,
                    Layout::RowMajor,
                    Layout::RowMajor,
                    0.0,
                    &mut rng,
                );
            }
        }
        // Near KC and strip edges (beta 0), then several row blocks, a
        // ragged NC block and several K slices (beta 1); GEMVs with a
        // ragged last block of B's rows and two column pieces; B's
        // micro-panels copied over several KC slices; B packed whole first
        // (M > 256).
        for (m, k, n, beta) in [
            (1, 255, 127, 0.0),
            (1, 257, 129, 0.0),
            (1, 130, 40, 1.0),
            (1, 600, 2100, 0.5),
            (30, 520, 530, 1.0),
            (64, 300, 1030, 0.5),
            (6, 256, 200, 0.0),
            (8, 300, 129, 0.0),
            (29, 257, 97, 0.0),
            (64, 100, 70, 0.0),
            (65, 255, 33, 1.0),
            (120, 257, 47, 1.0),
            (169, 64, 40, 1.0),
            (170, 513, 17, 1.0),
            (200, 40, 2100, 1.0),
            (70, 1025, 40, 1.0),
            (300, 70, 50, 0.5),
            (10, 172, 97, 1.0),
            (163, 345, 49, 0.5),
        ] {
            check_case(
                isa,
                m,
                k,
                n,
                Layout::RowMajor,
                Layout::RowMajor,
                beta,
                &mut rng,
            );
        }
    }
}

#[test]
fn views_and_beta() {
    let mut rng = Rng::new(42);
    for isa in dispatch::available() {
        for la in LAYOUTS {
            for lb in LAYOUTS {
                for beta in [0.0, 1.0, -0.5] {
                    let (m, k, n) = (
                        [1, 3, 9, 70][rng.below(4)],
                        1 + rng.below(40),
                        1 + rng.below(50),
                    );
                    check_case(isa, m, k, n, la, lb, beta, &mut rng);
                }
            }
        }
    }
}

#[test]
fn beta_zero_ignores_nan_in_c() {
    let mut rng = Rng::new(7);
    for isa in dispatch::available() {
        for (m, k, n) in [(1, 8, 5), (3, 17, 40), (20, 33, 130), (1, 0, 4)] {
            let (ad, bd) = (rng.vec(m * k, -1.0, 1.0), rng.vec(k * n, -1.0, 1.0));
            let (a, b) = (MatRef::row_major(&ad, m, k), MatRef::row_major(&bd, k, n));
            let (want, bound) = reference(a, b, 0.0, &vec![0.0; m * n], n);
            let mut c = vec![f32::NAN; m * n];
            gemm_with(isa, a, b, 0.0, &mut c, n);
            assert_close(&c, &want, &bound, &format!("gemm {} NaN C", isa.name()));
            let mut c = vec![f32::NAN; m * n];
            gemm_packed_with(isa, a, &PackedB::pack(b), 0.0, &mut c, n);
            assert_close(
                &c,
                &want,
                &bound,
                &format!("gemm_packed {} NaN C", isa.name()),
            );
        }
    }
}

#[test]
fn padding_of_c_is_untouched() {
    let mut rng = Rng::new(11);
    for isa in dispatch::available() {
        let (m, k, n, ldc) = (19, 23, 37, 45);
        let (ad, bd) = (rng.vec(m * k, -1.0, 1.0), rng.vec(k * n, -1.0, 1.0));
        let mut c = vec![f32::NAN; m * ldc];
        gemm_with(
            isa,
            MatRef::row_major(&ad, m, k),
            MatRef::row_major(&bd, k, n),
            0.0,
            &mut c,
            ldc,
        );
        for (i, row) in c.chunks(ldc).enumerate() {
            assert!(
                row[..n].iter().all(|x| x.is_finite()),
                "{} row {i} not written",
                isa.name()
            );
            assert!(
                row[n..].iter().all(|x| x.is_nan()),
                "{} row {i} padding written",
                isa.name()
            );
        }
    }
}

#[test]
fn linear_weight_packs_and_unpacks() {
    let mut rng = Rng::new(3);
    for isa in dispatch::available() {
        for (out_f, in_f, m) in [
            (1, 1, 1),
            (17, 5, 2),
            (33, 64, 9),
            (100, 31, 40),
            (0, 4, 1),
            (3, 0, 2),
        ] {
            let w = rng.vec(out_f * in_f, -1.0, 1.0);
            let packed = PackedB::from_linear_weight(&w, out_f, in_f);
            assert_eq!((packed.k(), packed.n()), (in_f, out_f));
            assert_eq!(packed.unpack_linear_weight(), w);
            let x = rng.vec(m * in_f, -1.0, 1.0);
            let (xa, wt) = (
                MatRef::row_major(&x, m, in_f),
                MatRef::row_major(&w, out_f, in_f).t(),
            );
            let (want, bound) = reference(xa, wt, 0.0, &vec![0.0; m * out_f], out_f);
            let mut y = vec![f32::NAN; m * out_f];
            gemm_packed_with(isa, xa, &packed, 0.0, &mut y, out_f);
            assert_close(
                &y,
                &want,
                &bound,
                &format!("x @ Wᵀ {} {m}x{in_f}x{out_f}", isa.name()),
            );
        }
    }
}

#[test]
fn threads_give_the_single_thread_result() {
    let mut rng = Rng::new(99);
    for isa in dispatch::available() {
        // Each shape is past PAR_MIN_FMAS, so 3 threads really split it: the
        // GEMV, a thin tile, B read in place, B packed (two row splits).
        for (m, k, n) in [
            (1, 2048, 8200),
            (5, 1800, 1900),
            (40, 700, 610),
            (300, 250, 230),
            (90, 430, 440),
        ] {
            assert!(
                m * k * n >= PAR_MIN_FMAS,
                "{m}x{k}x{n} is too small to thread"
            );
            let (ad, bd) = (rng.vec(m * k, -1.0, 1.0), rng.vec(k * n, -1.0, 1.0));
            let (a, b) = (MatRef::row_major(&ad, m, k), MatRef::row_major(&bd, k, n));
            let packed = PackedB::pack(b);
            let run = |threads| {
                in_pool(threads, || {
                    let mut c = vec![0.0; m * n];
                    gemm_with(isa, a, b, 0.0, &mut c, n);
                    let mut cp = vec![0.0; m * n];
                    gemm_packed_with(isa, a, &packed, 0.0, &mut cp, n);
                    (c, cp)
                })
            };
            let single = run(1);
            assert_eq!(single, run(3), "{} m={m} k={k} n={n}", isa.name());
            // From outside any pool the calling thread joins the kernel
            // pool's workers (`parallel::for_each_index`): same result.
            crate::parallel::set_num_threads(2).unwrap();
            let mut c = vec![0.0; m * n];
            gemm_with(isa, a, b, 0.0, &mut c, n);
            let mut cp = vec![0.0; m * n];
            gemm_packed_with(isa, a, &packed, 0.0, &mut cp, n);
            assert_eq!(single, (c, cp), "outside {} m={m} k={k} n={n}", isa.name());
        }
    }
}

#[test]
fn nested_inside_parallel_loop() {
    use rayon::prelude::*;
    let mut rng = Rng::new(5);
    // Past PAR_MIN_FMAS: the inner gemm itself runs parallel loops.
    let (m, k, n) = (64, 512, 520);
    assert!(m * k * n >= PAR_MIN_FMAS);
    let (ad, bd) = (rng.vec(m * k, -1.0, 1.0), rng.vec(k * n, -1.0, 1.0));
    let (a, b) = (MatRef::row_major(&ad, m, k), MatRef::row_major(&bd, k, n));
    let (want, bound) = reference(a, b, 0.0, &vec![0.0; m * n], n);
    let results: Vec<Vec<f32>> = in_pool(2, || {
        (0..6)
            .into_par_iter()
            .map(|_| {
                let mut c = vec![0.0; m * n];
                gemm(a, b, 0.0, &mut c, n);
                c
            })
            .collect()
    });
    for c in results {
        assert_close(&c, &want, &bound, "nested gemm");
    }
}

#[test]
#[should_panic(expected = "A is 2x3 but B is 4x2")]
fn mismatched_shapes_panic() {
    let d = [0.0; 12];
    gemm(
        MatRef::row_major(&d, 2, 3),
        MatRef::row_major(&d, 4, 2),
        0.0,
        &mut [0.0; 4],
        2,
    );
}

#[test]
fn threading_follows_the_product_size_and_the_threads_at_hand() {
    // A decoder step's generator product is split, from inside a pool or
    // from a Python thread alike; a tiny product never is.
    let (m, k, n) = (1, 512, 32000);
    assert!(m * k * n >= PAR_MIN_FMAS);
    crate::parallel::set_num_threads(2).unwrap();
    assert!(!runs_on_calling_thread(m, k, n));
    assert!(!in_pool(2, || runs_on_calling_thread(m, k, n)));
    assert!(in_pool(1, || runs_on_calling_thread(m, k, n)));
    assert!(runs_on_calling_thread(1, 64, 64));
}

#[test]
fn fused_epilogue_equals_separate_passes() {
    use crate::kernels::activations::{activation_with, Activation};
    let mut rng = Rng::new(17);
    for isa in dispatch::available() {
        // Thin and full tiles, one and several K slices, a ragged last
        // strip, several row blocks, a C wider than N.
        for (m, k, n, ldc) in [
            (1, 7, 33, 33),
            (3, 600, 70, 75),
            (20, 1100, 47, 47),
            (200, 64, 300, 301),
            (31, 0, 18, 18),
        ] {
            let (ad, bd) = (rng.vec(m * k, -1.0, 1.0), rng.vec(k * n, -1.0, 1.0));
            let (a, b) = (MatRef::row_major(&ad, m, k), MatRef::row_major(&bd, k, n));
            let packed = PackedB::pack(b);
            let bias = rng.vec(n, -1.0, 1.0);
            let skip_data = rng.vec(m * (n + 3), -1.0, 1.0);
            let skip = MatRef::new(&skip_data, m, n, n + 3, 1);
            let c0 = rng.vec(m * ldc, -1.0, 1.0);
            for (case, act) in [None, Some(Activation::Relu), Some(Activation::Gelu)]
                .into_iter()
                .enumerate()
            {
                let beta = if case == 1 { 0.5 } else { 0.0 };
                let epi = Epilogue {
                    bias: (case != 2).then_some(&bias[..]),
                    activation: act,
                    residual: (case != 1).then_some(skip),
                };
                let (mut want, mut bound) = reference(a, b, beta, &c0, ldc);
                for i in 0..m {
                    let row = &mut want[i * ldc..i * ldc + n];
                    match act {
                        Some(act) => activation_with(isa, act, row, epi.bias),
                        None => row.iter_mut().zip(&bias).for_each(|(c, b)| *c += b),
                    }
                    for (j, c) in row.iter_mut().enumerate() {
                        if epi.residual.is_some() {
                            *c += skip.at(i, j);
                        }
                    }
                    // GELU's slope is below 1.13; the adds round once more.
                    for (j, e) in bound[i * ldc..i * ldc + n].iter_mut().enumerate() {
                        *e = *e * 1.2 + 4.0 * f32::EPSILON * (want[i * ldc + j].abs() + 1.0);
                    }
                }
                for threads in [1, 3] {
                    let mut c = c0.clone();
                    in_pool(threads, || {
                        gemm_packed_fused_with(isa, a, &packed, beta, &mut c, ldc, epi)
                    });
                    let what = format!("{} {m}x{k}x{n} case {case} threads {threads}", isa.name());
                    for i in 0..m {
                        let (got, want) = (&c[i * ldc..][..n], &want[i * ldc..][..n]);
                        assert_close(got, want, &bound[i * ldc..][..n], &what);
                        // Padding columns of C are never touched.
                        assert_eq!(
                            c[i * ldc + n..(i + 1) * ldc],
                            c0[i * ldc + n..(i + 1) * ldc]
                        );
                    }
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "bias has 3 entries, N = 4")]
fn fused_epilogue_checks_its_shapes() {
    let packed = PackedB::pack(MatRef::row_major(&[0.0; 8], 2, 4));
    let epi = Epilogue {
        bias: Some(&[0.0; 3]),
        ..Epilogue::default()
    };
    gemm_packed_fused(
        MatRef::row_major(&[0.0; 2], 1, 2),
        &packed,
        0.0,
        &mut [0.0; 4],
        4,
        epi,
    );
}

#[test]
fn pack_a_rows_equals_one_value_at_a_time() {
    use super::microkernel::{with_kernel, MicroKernel};
    let mut rng = Rng::new(23);
    for isa in dispatch::available() {
        // Heights around the 8-row groups (one, several, rows left after
        // them), widths around the 8-column blocks, a row stride past kc.
        for rows in 1..=16 {
            for kc in [1, 7, 8, 9, 17, 64] {
                let lda = kc + 3;
                let a = rng.vec((rows - 1) * lda + kc, -1.0, 1.0);
                let mut want = vec![f32::NAN; rows * kc];
                pack::pack_a_rows(&a, lda, rows, &mut want);
                let mut got = vec![f32::NAN; rows * kc];
                // SAFETY: `available()` lists only ISAs this CPU runs.
                with_kernel!(isa, K => unsafe { K::pack_a_rows(&a, lda, rows, &mut got) });
                assert_eq!(got, want, "{} rows={rows} kc={kc}", isa.name());
            }
        }
    }
}

#[test]
fn gemv_at_every_offset_in_a_cache_line() {
    // B's rows start at the same offset in their cache lines (ldb a multiple
    // of 16), at every offset: with masked loads (AVX-512) the GEMV then
    // reads whole lines, masking off the lanes before column 0 and past the
    // last column. Every y[j] is the same sum, in the same order, at every
    // offset and on every ISA with FMA (all but the scalar kernel, whose
    // products round apart): bit-identical.
    let mut rng = Rng::new(31);
    let shapes = [
        (7, 32, 32),
        (130, 100, 112),
        (64, 512, 512),
        (9, 47, 64),
        (3, 1, 16),
        (5, 12, 16),
        (4, 257, 272),
        (2, 1000, 1024),
    ];
    for (k, n, ldb) in shapes {
        // The first result of an ISA with FMA.
        let mut fused: Option<Vec<f32>> = None;
        for (isa, c) in results_at_every_b_offset(1, k, n, ldb, &mut rng) {
            if isa != Isa::Scalar {
                let fused = fused.get_or_insert_with(|| c.clone());
                assert_eq!(
                    bits(&c),
                    bits(fused),
                    "{} k={k} n={n}: another sum",
                    isa.name()
                );
            }
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// C = 0.5·C + A[M×K]·B[K×N] on every ISA, with B's rows (`ldb` apart)
/// copied to start at each offset 0..16 floats past a cache line: checks
/// each result against the reference, and that each ISA's results are the
/// same bit for bit at every offset; returns each ISA's result.
fn results_at_every_b_offset(
    m: usize,
    k: usize,
    n: usize,
    ldb: usize,
    rng: &mut Rng,
) -> Vec<(Isa, Vec<f32>)> {
    let ad = rng.vec(m * k, -1.0, 1.0);
    let a = MatRef::row_major(&ad, m, k);
    let values = rng.vec(k * ldb, -1.0, 1.0);
    let c0 = rng.vec(m * n, -1.0, 1.0);
    let (want, bound) = reference(a, MatRef::new(&values, k, n, ldb, 1), 0.5, &c0, n);
    let mut results = Vec::new();
    for isa in dispatch::available() {
        // The result at offset 0.
        let mut first: Option<Vec<f32>> = None;
        let mut data = AlignedBuf::zeroed(16 + k * ldb);
        for offset in 0..16 {
            data.as_mut_slice()[offset..][..k * ldb].copy_from_slice(&values);
            let b = MatRef::new(&data.as_slice()[offset..], k, n, ldb, 1);
            let mut c = c0.clone();
            gemm_with(isa, a, b, 0.5, &mut c, n);
            let what = format!("{} m={m} k={k} n={n} ldb={ldb} offset={offset}", isa.name());
            assert_close(&c, &want, &bound, &what);
            let first = first.get_or_insert_with(|| c.clone());
            assert_eq!(bits(&c), bits(first), "{what}: another sum");
        }
        results.push((isa, first.expect("16 offsets")));
    }
    results
}

#[test]
fn row_major_b_read_in_place_at_every_offset_in_a_cache_line() {
    // B read in place (M ≤ 256: thin tiles for M ≤ MR, the first row
    // panel's tile copying it above), its rows starting at every offset in
    // their cache lines: with masked loads (AVX-512) each row is read as
    // whole lines and its vectors joined from two of them. Every C[i, j] is
    // the same sum, in the same order, at every offset: bit-identical on
    // each ISA. (Not across ISAs: the K slices depend on whether M ≤ MR.)
    // The last shape's rows are not a whole number of vectors apart, so
    // they start at different offsets and are read in place.
    let mut rng = Rng::new(37);
    let shapes = [
        (4, 40, 48, 48),
        (4, 300, 100, 112),
        (3, 64, 16, 16),
        (9, 33, 144, 144),
        (20, 200, 100, 112),
        (20, 5, 47, 48),
        (12, 400, 200, 208),
        (20, 30, 50, 50),
    ];
    for (m, k, n, ldb) in shapes {
        results_at_every_b_offset(m, k, n, ldb, &mut rng);
    }
}
