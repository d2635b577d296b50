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
        AlignedBuf { lines: vec![Line([0.0; LINE]); len.div_ceil(LINE)], len }
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
