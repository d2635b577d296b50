//! Cache-line aligned f32 storage for packed operands.
//!
//! The micro-kernels load whole 64-byte vectors from packed panels; a panel
//! that straddled cache lines would split every one of those loads.

/// One cache line of f32s; the unit the buffer is allocated in.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; LINE]);

const LINE: usize = 16;

/// `len` f32s starting on a 64-byte boundary, zero-initialised.
#[derive(Clone)]
pub(super) struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBuf {
    pub(super) fn zeroed(len: usize) -> Self {
        AlignedBuf {
            lines: vec![Line([0.0; LINE]); len.div_ceil(LINE)],
            len,
        }
    }

    pub(super) fn as_slice(&self) -> &[f32] {
        // SAFETY: `Line` is repr(C) over [f32; 16] with no padding (64 bytes,
        // align 64), so the Vec holds `lines.len() * 16 >= len` initialised f32s.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.len) }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in `as_slice`; `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), self.len) }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} f32)", self.len)
    }
}

/// What a thread's scratch buffer holds.
#[derive(Clone, Copy)]
pub(super) enum Scratch {
    /// The packed A block of one work item.
    ABlock = 0,
    /// B packed for one `gemm` call.
    PackedB = 1,
    /// The partial sums of one threaded GEMV.
    GemvPartials = 2,
    /// The copy of the B micro-panel the tiles are at (see `driver`).
    BPanelCopy = 3,
}

/// Scratch buffers larger than this are freed after use rather than kept.
const MAX_KEPT: usize = 16 << 20;

thread_local! {
    static SCRATCH: [std::cell::Cell<Option<AlignedBuf>>; 4] = const { [const { std::cell::Cell::new(None) }; 4] };
}

/// Runs `f` on `len` f32s of this thread's `kind` scratch buffer (contents
/// arbitrary), kept between calls: a fresh multi-megabyte allocation per
/// call would cost a page fault per 4 KiB. A nested call on the same thread
/// finds the slot empty and allocates its own.
pub(super) fn with_scratch<R>(kind: Scratch, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let slot = kind as usize;
    let kept = SCRATCH
        .with(|s| s[slot].take())
        .filter(|buf| buf.lines.len() * LINE >= len);
    let mut buf = kept.unwrap_or_else(|| AlignedBuf::zeroed(len));
    buf.len = len;
    let result = f(buf.as_mut_slice());
    if len * std::mem::size_of::<f32>() <= MAX_KEPT {
        SCRATCH.with(|s| s[slot].set(Some(buf)));
    }
    result
}
