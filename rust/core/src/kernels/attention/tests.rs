//! One suite for every ISA this host runs and both paths, against the f64
//! reference. Heads are strided views into fused buffers, as in the model.

use super::reference;
use super::*;
use crate::test_util::{assert_close, Rng};

const NEG_INF: f32 = f32::NEG_INFINITY;

/// Fused [T×3E] buffers (E = 2·D, head 1 used) for queries and keys/values.
struct Case {
    q_buf: Vec<f32>,
    kv_buf: Vec<f32>,
    mask_buf: Vec<f32>,
    tq: usize,
    tk: usize,
    d: usize,
    dv: usize,
}

#[derive(Clone, Copy, Debug)]
enum MaskKind {
    None,
    /// [Tq×Tk], about a third -inf, some rows fully masked.
    Full,
    /// One [Tk] row broadcast (row_stride 0), like key padding.
    Broadcast,
    /// [Tq×Tk] stored transposed (col_stride ≠ 1).
    Transposed,
}

impl Case {
    fn new(rng: &mut Rng, tq: usize, tk: usize, d: usize, dv: usize) -> Self {
        let width = 3 * 2 * d.max(dv);
        let mut mask_buf: Vec<f32> = (0..tq * tk)
            .map(|_| {
                if rng.below(3) == 0 {
                    NEG_INF
                } else {
                    rng.uniform(-1.0, 1.0)
                }
            })
            .collect();
        if tq > 2 {
            // Query row 1 may attend to nothing.
            for j in 0..tk {
                mask_buf[tk + j] = NEG_INF;
            }
        }
        Case {
            q_buf: rng.vec(tq * width, -1.0, 1.0),
            kv_buf: rng.vec(tk * width, -1.0, 1.0),
            mask_buf,
            tq,
            tk,
            d,
            dv,
        }
    }

    fn views(&self, kind: MaskKind) -> (MatRef<'_>, MatRef<'_>, MatRef<'_>, Option<MatRef<'_>>) {
        let w = 3 * 2 * self.d.max(self.dv);
        let e = w / 3;
        let off = e / 2;
        let q = MatRef::new(&self.q_buf[off..], self.tq, self.d, w, 1);
        let k = MatRef::new(&self.kv_buf[e + off..], self.tk, self.d, w, 1);
        let v = MatRef::new(&self.kv_buf[2 * e + off..], self.tk, self.dv, w, 1);
        let mask = match kind {
            MaskKind::None => None,
            MaskKind::Full => Some(MatRef::row_major(&self.mask_buf, self.tq, self.tk)),
            MaskKind::Broadcast => Some(MatRef::new(&self.mask_buf, self.tq, self.tk, 0, 1)),
            MaskKind::Transposed => Some(MatRef::row_major(&self.mask_buf, self.tk, self.tq).t()),
        };
        (q, k, v, mask)
    }
}

/// Runs one path on one ISA into an out buffer with ldo = Dv + 3, checking
/// that the gap columns stay untouched.
fn run(
    isa: Isa,
    path: Path,
    views: (MatRef, MatRef, MatRef, Option<MatRef>),
    causal: bool,
    scale: f32,
) -> Vec<f32> {
    let (q, k, v, mask) = views;
    let (tq, dv) = (q.rows, v.cols);
    let ldo = dv + 3;
    let mut out = vec![7.0f32; tq * ldo];
    let problem = Problem::new(q, k, v, mask, causal, scale, out.len(), ldo);
    problem.run(isa, path, &mut out, ldo, &mut Vec::new());
    let mut dense = Vec::with_capacity(tq * dv);
    for row in out.chunks_exact(ldo) {
        assert!(row[dv..].iter().all(|&g| g == 7.0), "gap columns written");
        dense.extend_from_slice(&row[..dv]);
    }
    dense
}

fn check(isa: Isa, path: Path, case: &Case, kind: MaskKind, causal: bool) {
    let scale = 1.0 / (case.d.max(1) as f32).sqrt();
    let views = case.views(kind);
    let want = reference::attention(views.0, views.1, views.2, views.3, causal, scale);
    let got = run(isa, path, views, causal, scale);
    let what = format!(
        "{isa:?} {path:?} tq={} tk={} d={} dv={} {kind:?} causal={causal}",
        case.tq, case.tk, case.d, case.dv
    );
    assert_close(&got, &want, 1e-5, 1e-5, &what);
}

const KINDS: [MaskKind; 4] = [
    MaskKind::None,
    MaskKind::Full,
    MaskKind::Broadcast,
    MaskKind::Transposed,
];

#[test]
fn blocked_path_random_shapes_masks_and_causal() {
    let mut rng = Rng::new(30);
    // Tq = Tk, Tq < Tk, Tq > Tk; Tq across the 64-row block boundary.
    let shapes = [
        (1, 1, 1, 1),
        (5, 5, 8, 8),
        (7, 19, 16, 5),
        (19, 7, 17, 33),
        (70, 70, 16, 16),
        (130, 65, 8, 9),
        (3, 200, 64, 64),
    ];
    for isa in dispatch::available() {
        for &(tq, tk, d, dv) in &shapes {
            let case = Case::new(&mut rng, tq, tk, d, dv);
            for kind in KINDS {
                for causal in [false, true] {
                    check(isa, Path::Blocked, &case, kind, causal);
                }
            }
        }
    }
}

#[test]
fn flash_path_matches_reference_and_blocked_path() {
    let mut rng = Rng::new(35);
    // Tk across key-block boundaries (one key short of, at, past a block),
    // odd sizes, Tq across the query-block boundary, Tq > Tk under causal.
    let kb = flash::KEY_BLOCK;
    let shapes = [
        (1, 1, 1, 1),
        (3, 5, 8, 8),
        (7, kb - 1, 16, 5),
        (70, kb, 17, 33),
        (5, kb + 1, 64, 64),
        (66, 2 * kb + 37, 64, 64),
        (2 * kb + 9, 19, 8, 9),
    ];
    for isa in dispatch::available() {
        for &(tq, tk, d, dv) in &shapes {
            let case = Case::new(&mut rng, tq, tk, d, dv);
            for kind in KINDS {
                for causal in [false, true] {
                    check(isa, Path::Flash, &case, kind, causal);
                    let views = case.views(kind);
                    let flash = run(isa, Path::Flash, views, causal, 0.3);
                    let blocked = run(isa, Path::Blocked, views, causal, 0.3);
                    let blocked: Vec<f64> = blocked.iter().map(|&x| x as f64).collect();
                    let what = format!("{isa:?} tq={tq} tk={tk} d={d} {kind:?} causal={causal}");
                    assert_close(&flash, &blocked, 1e-5, 1e-6, &what);
                }
            }
        }
    }
}

#[test]
fn flash_path_survives_extreme_scores() {
    // Scores of ±1e30 in one row: the running max jumps by ~1e30 between
    // key blocks, and the rescale of earlier blocks must underflow to 0.
    let mut rng = Rng::new(36);
    let (tq, tk, d) = (3, 2 * flash::KEY_BLOCK + 5, 4);
    let q_buf = vec![1.0f32; tq * d];
    let mut k_buf = rng.vec(tk * d, -1.0, 1.0);
    let v_buf = rng.vec(tk * d, -1.0, 1.0);
    for c in 0..d {
        k_buf[(tk - 2) * d + c] = 1e30;
        k_buf[3 * d + c] = -1e30;
    }
    let q = MatRef::row_major(&q_buf, tq, d);
    let k = MatRef::row_major(&k_buf, tk, d);
    let v = MatRef::row_major(&v_buf, tk, d);
    let want = reference::attention(q, k, v, None, false, 1.0);
    for isa in dispatch::available() {
        let got = run(isa, Path::Flash, (q, k, v, None), false, 1.0);
        assert_close(&got, &want, 1e-5, 1e-5, &format!("{isa:?}"));
    }
}

#[test]
fn decode_path_matches_reference_and_blocked_path() {
    let mut rng = Rng::new(31);
    for isa in dispatch::available() {
        for tk in [1, 2, 3, 4, 5, 8, 17, 64, 100] {
            for (d, dv) in [(1, 1), (7, 3), (16, 16), (64, 64), (33, 65), (64, 80)] {
                let case = Case::new(&mut rng, 1, tk, d, dv);
                for kind in KINDS {
                    for causal in [false, true] {
                        check(isa, Path::Decode, &case, kind, causal);
                        let views = case.views(kind);
                        let decode = run(isa, Path::Decode, views, causal, 0.3);
                        let blocked = run(isa, Path::Blocked, views, causal, 0.3);
                        let blocked: Vec<f64> = blocked.iter().map(|&x| x as f64).collect();
                        assert_close(
                            &decode,
                            &blocked,
                            1e-5,
                            1e-6,
                            &format!("{isa:?} tk={tk} d={d} {kind:?}"),
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn fully_masked_queries_and_empty_keys_give_zeros() {
    let mut rng = Rng::new(32);
    for isa in dispatch::available() {
        for path in [Path::Blocked, Path::Decode, Path::Flash] {
            let tq = if path == Path::Decode { 1 } else { 4 };
            let case = Case::new(&mut rng, tq, 9, 8, 8);
            let (q, k, v, _) = case.views(MaskKind::None);
            let all_masked = vec![NEG_INF; 9];
            let mask = MatRef::new(&all_masked, tq, 9, 0, 1);
            let got = run(isa, path, (q, k, v, Some(mask)), false, 1.0);
            assert!(got.iter().all(|&x| x == 0.0), "{isa:?} {path:?}: {got:?}");

            let no_keys = MatRef::new(&[], 0, 8, 8, 1);
            let got = run(
                isa,
                path,
                (q, no_keys, MatRef::new(&[], 0, 8, 8, 1), None),
                true,
                1.0,
            );
            assert!(
                got.iter().all(|&x| x == 0.0),
                "{isa:?} {path:?} Tk=0: {got:?}"
            );
        }
    }
}

#[test]
fn public_entry_points_agree_and_reuse_scratch() {
    let mut rng = Rng::new(33);
    let mut scratch = Vec::new();
    for (tq, tk) in [(1, 50), (20, 50), (100, 30)] {
        let case = Case::new(&mut rng, tq, tk, 16, 16);
        let (q, k, v, mask) = case.views(MaskKind::Full);
        let want = reference::attention(q, k, v, mask, true, 0.25);
        let mut a = vec![0.0; tq * 16];
        attention_head(q, k, v, mask, true, 0.25, &mut a, 16);
        let mut b = vec![0.0; tq * 16];
        attention_head_scratch(q, k, v, mask, true, 0.25, &mut b, 16, &mut scratch);
        assert_eq!(a, b);
        assert_close(&a, &want, 1e-5, 1e-5, &format!("tq={tq} tk={tk}"));
    }
}

#[test]
fn non_unit_column_strides_take_the_blocked_path() {
    let mut rng = Rng::new(34);
    // k stored transposed [D×Tk]; q is one row.
    let (tk, d) = (10, 6);
    let q_buf = rng.vec(d, -1.0, 1.0);
    let kt = rng.vec(d * tk, -1.0, 1.0);
    let v_buf = rng.vec(tk * 4, -1.0, 1.0);
    let (q, k, v) = (
        MatRef::row_major(&q_buf, 1, d),
        MatRef::row_major(&kt, d, tk).t(),
        MatRef::row_major(&v_buf, tk, 4),
    );
    let problem = Problem::new(q, k, v, None, false, 1.0, 4, 4);
    assert!(!problem.decode_applies());
    let mut out = vec![0.0; 4];
    attention_head(q, k, v, None, false, 1.0, &mut out, 4);
    assert_close(
        &out,
        &reference::attention(q, k, v, None, false, 1.0),
        1e-5,
        1e-5,
        "transposed k",
    );
}

#[test]
#[should_panic(expected = "mask is 2x3, expected 1x3")]
fn wrong_mask_shape_panics() {
    let x = [0.0f32; 12];
    let (q, kv) = (MatRef::row_major(&x, 1, 3), MatRef::row_major(&x, 3, 3));
    attention_head(
        q,
        kv,
        kv,
        Some(MatRef::row_major(&x, 2, 3)),
        false,
        1.0,
        &mut [0.0; 3],
        3,
    );
}
