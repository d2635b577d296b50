//! Scaled-dot-product attention for one (batch, head) item:
//! out = softmax(scale · q kᵀ + mask) · v.
//!
//! Three paths, chosen by shape:
//! - [`blocked`]: query rows in blocks; scores = q kᵀ and out = P v by GEMM,
//!   softmax (scale and mask fused) per row in between. Under `causal` a block
//!   only multiplies the keys its last row can see, so the fully masked tail
//!   of the score matrix is never computed.
//! - [`flash`]: Tk ≥ [`FLASH_MIN_KEYS`]: the same, over key blocks too, with
//!   an online softmax, so no score row spans all Tk keys.
//! - [`decode`]: Tq = 1 (a decoder step against a KV cache of Tk keys):
//!   vectorised dot products, softmax, and a weighted sum of V rows, with no
//!   GEMM call and no buffer beyond the Tk scores.

mod blocked;
mod decode;
mod flash;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use super::dispatch::{self, Isa};
use super::gemm::MatRef;
use super::simd::assert_available;

/// out[Tq×Dv] (row-major, leading dimension `ldo` ≥ Dv) =
/// softmax(scale · q kᵀ + mask) · v, with
/// - q [Tq×D], k [Tk×D], v [Tk×Dv]: any strides, so heads can be views into a
///   fused QKV buffer [T×3E] (row_stride 3E, col_stride 1);
/// - `mask`: additive [Tq×Tk] view (0 = attend, -inf = may not); row_stride 0
///   broadcasts one row (e.g. key padding) to every query;
/// - `causal`: query i sees keys j ≤ i only (top-left aligned, as PyTorch's
///   `is_causal`, also when Tq ≠ Tk).
///
/// A query that may attend to no key gets a row of zeros. Allocates its
/// scratch; see [`attention_head_scratch`] to reuse one.
#[allow(clippy::too_many_arguments)]
pub fn attention_head(
    q: MatRef,
    k: MatRef,
    v: MatRef,
    mask: Option<MatRef>,
    causal: bool,
    scale: f32,
    out: &mut [f32],
    ldo: usize,
) {
    attention_head_scratch(q, k, v, mask, causal, scale, out, ldo, &mut Vec::new())
}

/// From this many keys on, [`attention_head`] takes the flash path: the
/// blocked path's 64 × Tk score block then outgrows L2 next to K and V.
const FLASH_MIN_KEYS: usize = 1024;

/// [`attention_head`] with a caller-owned scratch buffer, grown as needed and
/// never shrunk: once warm (e.g. per decoding session), no allocation.
/// Needs at most min(Tq, 64)·(min(Tk, 1024) + 2) + Tk floats.
#[allow(clippy::too_many_arguments)]
pub fn attention_head_scratch(
    q: MatRef,
    k: MatRef,
    v: MatRef,
    mask: Option<MatRef>,
    causal: bool,
    scale: f32,
    out: &mut [f32],
    ldo: usize,
    scratch: &mut Vec<f32>,
) {
    let problem = Problem::new(q, k, v, mask, causal, scale, out.len(), ldo);
    let path = if problem.decode_applies() {
        Path::Decode
    } else if k.rows >= FLASH_MIN_KEYS {
        Path::Flash
    } else {
        Path::Blocked
    };
    problem.run(dispatch::selected(), path, out, ldo, scratch);
}

/// One attention problem, shapes checked.
#[derive(Clone, Copy)]
struct Problem<'a> {
    q: MatRef<'a>,
    k: MatRef<'a>,
    v: MatRef<'a>,
    mask: Option<MatRef<'a>>,
    causal: bool,
    scale: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Blocked,
    Decode,
    Flash,
}

impl<'a> Problem<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        q: MatRef<'a>,
        k: MatRef<'a>,
        v: MatRef<'a>,
        mask: Option<MatRef<'a>>,
        causal: bool,
        scale: f32,
        out_len: usize,
        ldo: usize,
    ) -> Self {
        let (tq, tk, dv) = (q.rows, k.rows, v.cols);
        assert_eq!(
            q.cols, k.cols,
            "attention_head: q has head dim {} but k has {}",
            q.cols, k.cols
        );
        assert_eq!(
            v.rows, tk,
            "attention_head: v has {} rows but k has {}",
            v.rows, tk
        );
        for (name, m) in [("q", q), ("k", k), ("v", v)] {
            check_view(name, m);
        }
        if let Some(m) = mask {
            assert!(
                m.rows == tq && m.cols == tk,
                "attention_head: mask is {}x{}, expected {tq}x{tk}",
                m.rows,
                m.cols
            );
            check_view("mask", m);
        }
        assert!(ldo >= dv, "attention_head: ldo {ldo} < Dv {dv}");
        if tq > 0 && dv > 0 {
            assert!(
                (tq - 1) * ldo + dv <= out_len,
                "attention_head: out of {out_len} cannot hold {tq}x{dv} with ldo {ldo}"
            );
        }
        Problem {
            q,
            k,
            v,
            mask,
            causal,
            scale,
        }
    }

    /// The decode path needs one query and unit column strides.
    fn decode_applies(&self) -> bool {
        self.q.rows == 1
            && [self.q, self.k, self.v]
                .iter()
                .all(|m| m.col_stride == 1 || m.cols <= 1)
    }

    /// How many keys (a prefix) query i may see.
    fn visible_keys(&self, i: usize) -> usize {
        if self.causal {
            (i + 1).min(self.k.rows)
        } else {
            self.k.rows
        }
    }

    /// Entries `from..from + len` of mask row i, borrowed if contiguous,
    /// else gathered into `buf`.
    fn mask_row<'b>(
        &self,
        i: usize,
        from: usize,
        len: usize,
        buf: &'b mut [f32],
    ) -> Option<&'b [f32]>
    where
        'a: 'b,
    {
        let m = self.mask?;
        let start = i * m.row_stride + from * m.col_stride;
        if m.col_stride == 1 || len <= 1 {
            return Some(&m.data[start..start + len]);
        }
        for (j, b) in buf[..len].iter_mut().enumerate() {
            *b = m.data[start + j * m.col_stride];
        }
        Some(&buf[..len])
    }

    fn run(&self, isa: Isa, path: Path, out: &mut [f32], ldo: usize, scratch: &mut Vec<f32>) {
        assert_available(isa, "attention_head");
        let (tq, tk, dv) = (self.q.rows, self.k.rows, self.v.cols);
        if tq == 0 || dv == 0 {
            return;
        }
        if tk == 0 {
            for i in 0..tq {
                out[i * ldo..i * ldo + dv].fill(0.0);
            }
            return;
        }
        match path {
            Path::Decode => decode::attend(isa, self, &mut out[..dv], scratch),
            Path::Blocked => blocked::attend(isa, self, out, ldo, scratch),
            Path::Flash => flash::attend(isa, self, out, ldo, scratch),
        }
    }
}

/// Rows r0..r1 of m, as a view.
fn row_range(m: MatRef, r0: usize, r1: usize) -> MatRef {
    if r0 == r1 || m.cols == 0 {
        return MatRef { rows: r1 - r0, ..m };
    }
    MatRef::new(
        &m.data[r0 * m.row_stride..],
        r1 - r0,
        m.cols,
        m.row_stride,
        m.col_stride,
    )
}

/// MatRef's fields are public, so a view may not have come through
/// `MatRef::new`; the decode kernels read through raw pointers and need it.
fn check_view(name: &str, m: MatRef) {
    if m.rows > 0 && m.cols > 0 {
        let last = (m.rows - 1) * m.row_stride + (m.cols - 1) * m.col_stride;
        assert!(
            last < m.data.len(),
            "attention_head: {name} view {}x{} exceeds its {} elements",
            m.rows,
            m.cols,
            m.data.len()
        );
    }
}
