//! Cache-line aligned f32 storage for packed operands.
//!
//! The micro-kernels load whole 64-byte vectors from packed panels; a panel
//! that straddled cache lines would split every one of those loads.
//!
//! Buffers of 2 MiB or more start on a 2 MiB boundary of an anonymous
//! mapping whose whole 2 MiB pages are advised as huge pages (Linux
//! transparent huge pages; most systems enable them for advised regions
//! only, and NumPy advises its large arrays the same way). A model's packed
//! weights (most of a few hundred MB) and a packed B of several MB take one
//! TLB entry per 2 MiB instead of one per 4 KiB. Measured on one Xeon core,
//! alternating calls in one process: greedy decoding of Transformer-base at
//! B = 1 1.5–3% faster and its encoder at B = 1, S = 32 1–3% (both stream
//! the weights from DRAM); 1024³ and 2048³ unchanged within the noise.

/// One cache line of f32s; the unit small buffers are allocated in.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; LINE]);

const LINE: usize = 16;

/// Bytes of a huge page; buffers of at least one are mapped.
const HUGE_PAGE: usize = 2 << 20;

/// The memory behind an [`AlignedBuf`].
enum Storage {
    /// Small buffers: the global allocator, 64-byte aligned.
    Lines(Vec<Line>),
    /// Large buffers: an anonymous mapping, of which the f32s start at
    /// `offset`, the first 2 MiB boundary (zero-filled by the OS).
    Mapped {
        map: memmap2::MmapMut,
        offset: usize,
    },
}

/// `len` f32s starting on a 64-byte boundary, zero-initialised. The same
/// memory can be viewed as `len` u32 words (the bf16 panels of
/// `kernels::bf16_gemv`).
pub(crate) struct AlignedBuf {
    storage: Storage,
    len: usize,
}

impl AlignedBuf {
    pub(crate) fn zeroed(len: usize) -> Self {
        let bytes = len * std::mem::size_of::<f32>();
        if bytes >= HUGE_PAGE {
            if let Some(buf) = Self::mapped(len) {
                return buf;
            }
        }
        AlignedBuf {
            storage: Storage::Lines(vec![Line([0.0; LINE]); len.div_ceil(LINE)]),
            len,
        }
    }

    /// `len` f32s from a 2 MiB boundary of an anonymous mapping, their whole
    /// 2 MiB pages advised as huge pages (the tail stays in 4 KiB pages, so
    /// a buffer takes no more memory than it uses); None if the OS refuses
    /// the mapping (the caller then uses the allocator).
    fn mapped(len: usize) -> Option<Self> {
        let bytes = len * std::mem::size_of::<f32>();
        // Up to a huge page more than needed, so that a 2 MiB boundary lies
        // within the first: huge pages only back aligned 2 MiB ranges. The
        // slack is address space only; nothing touches it.
        let map = memmap2::MmapMut::map_anon(bytes + HUGE_PAGE).ok()?;
        let offset = map.as_ptr().align_offset(HUGE_PAGE);
        #[cfg(target_os = "linux")]
        {
            // Advice only: without transparent huge pages the mapping works
            // with 4 KiB pages.
            let whole_pages = bytes / HUGE_PAGE * HUGE_PAGE;
            let _ = map.advise_range(memmap2::Advice::HugePage, offset, whole_pages);
        }
        let buf = AlignedBuf {
            storage: Storage::Mapped { map, offset },
            len,
        };
        (buf.capacity() >= len).then_some(buf)
    }

    /// f32s the storage holds from the start of the buffer (≥ len): whole
    /// lines, or the mapping past `offset`.
    fn capacity(&self) -> usize {
        match &self.storage {
            Storage::Lines(lines) => lines.len() * LINE,
            Storage::Mapped { map, offset } => {
                map.len().saturating_sub(*offset) / std::mem::size_of::<f32>()
            }
        }
    }

    pub(crate) fn as_slice(&self) -> &[f32] {
        let ptr: *const f32 = match &self.storage {
            Storage::Lines(lines) => lines.as_ptr().cast(),
            // SAFETY: offset + len·4 ≤ the mapping's length: `capacity()`
            // ≥ len, checked by `mapped` and `with_scratch`.
            Storage::Mapped { map, offset } => unsafe { map.as_ptr().add(*offset).cast() },
        };
        // SAFETY: the storage holds `capacity ≥ len` initialised f32s from
        // `ptr` (a `Line` is repr(C) over [f32; 16], 64 bytes with no
        // padding; a mapping is zero-filled, page aligned, and f32 has no
        // invalid bit patterns).
        unsafe { std::slice::from_raw_parts(ptr, self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [f32] {
        let ptr: *mut f32 = match &mut self.storage {
            Storage::Lines(lines) => lines.as_mut_ptr().cast(),
            // SAFETY: as in `as_slice`.
            Storage::Mapped { map, offset } => unsafe { map.as_mut_ptr().add(*offset).cast() },
        };
        // SAFETY: as in `as_slice`; `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(ptr, self.len) }
    }

    /// The buffer as `len` u32 words.
    pub(crate) fn as_words(&self) -> &[u32] {
        let values = self.as_slice();
        // SAFETY: u32 has f32's size and alignment, and every bit pattern
        // is a valid u32.
        unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), values.len()) }
    }

    /// The buffer as `len` mutable u32 words.
    pub(crate) fn as_mut_words(&mut self) -> &mut [u32] {
        let values = self.as_mut_slice();
        // SAFETY: as in `as_words`, and every u32 written is a valid f32
        // bit pattern; the borrow of `self` stays unique.
        unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast(), values.len()) }
    }
}

impl Clone for AlignedBuf {
    fn clone(&self) -> Self {
        let mut copy = AlignedBuf::zeroed(self.len);
        copy.as_mut_slice().copy_from_slice(self.as_slice());
        copy
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
        .filter(|buf| buf.capacity() >= len);
    let mut buf = kept.unwrap_or_else(|| AlignedBuf::zeroed(len));
    buf.len = len;
    let result = f(buf.as_mut_slice());
    if len * std::mem::size_of::<f32>() <= MAX_KEPT {
        SCRATCH.with(|s| s[slot].set(Some(buf)));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small and mapped buffers alike: zeroed, aligned as promised, writable
    /// to the last element, and cloned by value.
    #[test]
    fn buffers_are_zeroed_aligned_and_clone_by_value() {
        let huge = HUGE_PAGE / 4;
        for len in [0, 1, 17, huge - 1, huge, huge + 5, 2 * huge + 16] {
            let mut buf = AlignedBuf::zeroed(len);
            let mapped = matches!(buf.storage, Storage::Mapped { .. });
            assert_eq!(mapped, len >= huge, "len {len}");
            let align = if mapped { HUGE_PAGE } else { 64 };
            assert_eq!(buf.as_slice().as_ptr() as usize % align, 0, "len {len}");
            assert_eq!(buf.as_slice().len(), len);
            assert!(buf.as_slice().iter().all(|&x| x == 0.0), "len {len}");
            for (i, x) in buf.as_mut_slice().iter_mut().enumerate() {
                *x = i as f32;
            }
            let copy = buf.clone();
            buf.as_mut_slice().fill(-1.0);
            assert!(copy
                .as_slice()
                .iter()
                .enumerate()
                .all(|(i, &x)| x == i as f32));
        }
    }
}
