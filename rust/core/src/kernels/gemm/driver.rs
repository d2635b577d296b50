//! The BLIS driver: five loops around the micro-kernel, each sizing one
//! operand block for one cache level, and the split of C among threads.
//!
//! ```text
//! loop 3  ic: MC rows of A / C             (parallel work items; hoisted, see run_on)
//! loop 5  jc: NC columns of B / C          (B block KC×NC in L3)
//! loop 4  pc: KC slice of the shared dim   (pack A block MC×KC -> L2)
//! loop 2  jr: NR columns = one B micro-panel (KC×NR in L1)
//! loop 1  ir: MR rows = one A micro-panel -> micro-kernel tile MR×NR
//! ```
//!
//! B comes packed whole (by `pack_b`, or a [`PackedB`](super::PackedB)) or
//! is a row-major matrix ([`BSource::Direct`], for few rows of A): up to MR
//! rows, one tile reads it in place; above, the first row panel's tile reads
//! each B micro-panel in place and copies it, packed, to an L1-sized scratch
//! that the other row panels read (`macro_kernel`).

use std::ops::Range;

use super::buffer::{with_scratch, AlignedBuf, Scratch};
use super::epilogue::Epilogue;
use super::microkernel::{with_kernel, BPanel, MicroKernel, MAX_TILE};
use super::pack::{pack_a, pack_a_panels, pack_b_strip, row_panels, strip_count, STRIP};
use super::{runs_on_calling_thread, MatRef};
use crate::kernels::dispatch::Isa;
use crate::parallel;

/// KC when one row panel reads B in place: short slices keep the rows of B
/// being read few (a handful of TLB pages and prefetch streams) while loop 2
/// sweeps along them. Measured on AVX-512 (Xeon; M = 4, K = 512, N = 2048).
const DIRECT_THIN_KC: usize = 32;

/// KC when several row panels share a row-major B through copied micro-panels
/// (`macro_kernel`): the copy, KC × NR (K = 512: 3 slices of 171, 32 KiB
/// on AVX-512), stays in L1 while the row panels pass over it. Read in
/// place by every row panel instead, a micro-panel's rows often lie a
/// power-of-two stride apart and fall into the same few L1 sets, evicting
/// each other between the tiles that share them. With the 32-column tile,
/// 256 (32 KiB) was best, 128 and 384 no better; with 48 columns 128–192
/// measured level with or above 256 (48 KiB, all of L1).
const COPY_KC: usize = 192;

/// Where the driver reads B [K×N] from.
pub(super) enum BSource<'a> {
    /// B [K×N] as packed strips (see `pack`) of K rows each.
    Strips {
        strips: &'a [f32],
        k: usize,
        n: usize,
    },
    /// A row-major B read in place; its last, partial strip (N % 16 columns)
    /// is packed into `edge` [K×16] so no read runs past a row.
    Direct { b: MatRef<'a>, edge: AlignedBuf },
}

impl<'a> BSource<'a> {
    /// B [K×N] packed whole, `strip_count(N)` strips of K rows.
    pub(super) fn strips(strips: &'a [f32], k: usize, n: usize) -> Self {
        BSource::Strips { strips, k, n }
    }

    /// B [K×N] with unit column stride (or a single column).
    pub(super) fn direct(b: MatRef<'a>) -> Self {
        let mut edge = AlignedBuf::zeroed(0);
        if !b.cols.is_multiple_of(STRIP) {
            edge = AlignedBuf::zeroed(b.rows * STRIP);
            pack_b_strip(b, b.cols / STRIP, edge.as_mut_slice());
        }
        BSource::Direct { b, edge }
    }

    fn n(&self) -> usize {
        match self {
            BSource::Strips { n, .. } => *n,
            BSource::Direct { b, .. } => b.cols,
        }
    }

    /// The panel starting at strip `js`, shared-dim row `pc`.
    fn panel(&self, js: usize, pc: usize) -> BPanel {
        match self {
            BSource::Strips { strips, k, .. } => {
                BPanel::packed(strips[(js * k + pc) * STRIP..].as_ptr(), *k)
            }
            BSource::Direct { b, edge } if js == b.cols / STRIP => {
                BPanel::packed(edge.as_slice()[pc * STRIP..].as_ptr(), b.rows)
            }
            BSource::Direct { b, .. } => BPanel {
                ptr: b.data[pc * b.row_stride + js * STRIP..].as_ptr(),
                k_stride: b.row_stride,
                strip_stride: STRIP,
                pack_into: std::ptr::null_mut(),
                next: std::ptr::null(),
            },
        }
    }

    /// The micro-panel at strip `js`, row `pc`, for the tiles before it to
    /// prefetch (`BPanel::next`): packed B only (a row-major B read in place
    /// is in cache or prefetched row by row), and null past `end`.
    fn next_panel(&self, js: usize, end: usize, pc: usize) -> *const f32 {
        match self {
            BSource::Strips { .. } if js < end => self.panel(js, pc).ptr,
            _ => std::ptr::null(),
        }
    }

    /// End of the strips from `js` (below `end`) that one [`BPanel`] covers.
    fn run_end(&self, js: usize, end: usize) -> usize {
        match self {
            BSource::Strips { .. } => end,
            BSource::Direct { b, .. } => {
                let full = b.cols / STRIP;
                if js < full {
                    end.min(full)
                } else {
                    end
                }
            }
        }
    }
}

/// C[M×N] = epi(beta·C + A[M×K]·B) on `isa`'s kernel (M, N, K ≥ 1; shapes,
/// C's extent and the epilogue checked by the caller, `isa` available).
pub(super) fn run(
    isa: Isa,
    a: MatRef,
    b: &BSource,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    epi: &Epilogue,
) {
    let out = Out {
        c: SharedMut(c.as_mut_ptr()),
        ldc,
        isa,
        epi,
    };
    with_kernel!(isa, K => run_on::<K>(a, b, beta, &out))
}

/// Where finished tiles go: C, and what to apply to them there.
struct Out<'a> {
    c: SharedMut,
    ldc: usize,
    isa: Isa,
    epi: &'a Epilogue<'a>,
}

/// The base pointer of a buffer (C, or the packed A blocks) shared by the
/// threads that write its disjoint parts.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every work item writes a part no other item touches (C: a block,
// see `Plan::item`; packed A: a row block's panels), and `run_on` holds the
// `&mut` to the buffer until all items finish.
unsafe impl Send for SharedMut {}
// SAFETY: as for Send; items only share the pointer value.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer `offset` elements past the base (a method, so closures
    /// capture the whole `Sync` wrapper, not its raw pointer field).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// One work item of loop 3: C rows × B strips, computed start to finish.
struct Item {
    rows: Range<usize>,
    strips: Range<usize>,
}

/// Work items per thread when a product is split: more than one, so that a
/// thread that starts late (a worker waking up) or runs slow (a busy core)
/// finds smaller pieces left, and the others are never kept waiting long.
/// 8 rather than 4: the Transformer-base encoder at B = 1, S = 128 on two
/// threads went from 28–34 to 26–27 ms (each layer's GEMMs end with less
/// of one thread waiting on the other's last item); 16 was no better.
const ITEMS_PER_THREAD: usize = 8;

/// Block sizes and the split of C into work items for one product.
struct Plan {
    kc: usize,
    nc_strips: usize,
    /// B is row-major and shared by several row panels: the first copies
    /// each micro-panel it reads for the others (`macro_kernel`).
    copy_b_panels: bool,
    /// Strips per tile in loop 2: STRIPS, or `max_strips(m)` for thin
    /// products; the last tiles of a block take powers of two below it.
    tile_strips: usize,
    /// C [M×N] is cut into `row_blocks` × `col_blocks` items, the columns
    /// in blocks of `chunk` strips (N has `n_strips`).
    m: usize,
    row_blocks: usize,
    col_blocks: usize,
    chunk: usize,
    n_strips: usize,
}

impl Plan {
    fn new<K: MicroKernel>(m: usize, n: usize, k: usize, threads: usize, direct: bool) -> Plan {
        let n_strips = strip_count(n);
        let thin = m <= K::MR;
        // Copying B's micro-panels pays as soon as two row panels share
        // them (AVX-512, one thread: 16×512×2048 85 → 97 GFLOP/s,
        // 32×512×2048 86 → 117 over packing whole blocks of B first).
        let copy_b_panels = direct && !thin;
        // Thin products (M ≤ MR) run one wide tile per column block; over a
        // packed B it streams the whole K with the C tile in registers.
        let kc_target = match (direct, thin) {
            (false, true) => k,
            (false, false) => K::KC,
            (true, true) => DIRECT_THIN_KC,
            (true, false) => COPY_KC,
        };
        // Equal slices: 2 × 150 rather than 256 + 44.
        let kc = k.div_ceil(k.div_ceil(kc_target));
        let (tile_strips, row_blocks) = if thin {
            (K::max_strips(m), 1)
        } else {
            let mut blocks = m.div_ceil(K::MC);
            if threads > 1 && blocks >= threads {
                blocks = blocks.div_ceil(threads) * threads;
            }
            (K::STRIPS, blocks)
        };
        // Too few row blocks for the threads: split the columns as well, in
        // whole tiles.
        let wanted_items = if threads > 1 {
            threads * ITEMS_PER_THREAD
        } else {
            1
        };
        let col_splits = wanted_items
            .div_ceil(row_blocks)
            .min(n_strips.div_ceil(tile_strips));
        let chunk = n_strips.div_ceil(col_splits).div_ceil(tile_strips) * tile_strips;
        Plan {
            kc,
            nc_strips: K::NC / STRIP,
            copy_b_panels,
            tile_strips,
            m,
            row_blocks,
            col_blocks: n_strips.div_ceil(chunk),
            chunk,
            n_strips,
        }
    }

    /// Number of work items.
    fn items(&self) -> usize {
        self.row_blocks * self.col_blocks
    }

    /// Work item `i` (< `items()`): computed, not stored, so a product
    /// allocates nothing (decoder steps run thousands of them).
    fn item(&self, i: usize) -> Item {
        let (r, c) = (i / self.col_blocks, i % self.col_blocks);
        let s0 = c * self.chunk;
        Item {
            rows: r * self.m / self.row_blocks..(r + 1) * self.m / self.row_blocks,
            strips: s0..(s0 + self.chunk).min(self.n_strips),
        }
    }
}

fn run_on<K: MicroKernel>(a: MatRef, b: &BSource, beta: f32, out: &Out) {
    let (m, k, n) = (a.rows, a.cols, b.n());
    let threads = if runs_on_calling_thread(m, k, n) {
        1
    } else {
        parallel::loop_threads()
    };
    let plan = Plan::new::<K>(m, n, k, threads, matches!(b, BSource::Direct { .. }));
    // Loop 3 (ic, MC), parallel: one work item per block of rows (and range
    // of columns). It is hoisted outside loops 5 and 4 because B is packed
    // before the loops (or read in place), so items share nothing: each runs
    // to the end without a barrier per KC slice.
    let items = plan.items();
    if plan.col_blocks > 1 {
        // Items of one row block would each pack the same rows of A: pack
        // every row block once, up front (row block rows r0..r1 at
        // r0·K, its K slices one after another), in parallel, and share
        // them.
        with_scratch(Scratch::ABlock, m * k, |a_all| {
            let base = SharedMut(a_all.as_mut_ptr());
            let units = APackUnits::new::<K>(&plan, k, threads);
            for_each_item(threads, units.count(), |u| {
                let unit = units.unit::<K>(u);
                // SAFETY: each unit owns its range of a_all (m·K long),
                // which no other unit shares (`APackUnits::unit`), and
                // a_all is borrowed mutably until every unit is packed.
                let out = unsafe { std::slice::from_raw_parts_mut(base.at(unit.offset), unit.len) };
                pack_a_panels::<K>(a, unit.rows, unit.pc, unit.kc, unit.panels, out);
            });
            let a_all: &[f32] = a_all;
            for_each_item(threads, items, |i| {
                let item = plan.item(i);
                let panels = APanels::Packed(&a_all[item.rows.start * k..item.rows.end * k]);
                item_loops::<K>(a, b, beta, out, &plan, &item, panels)
            })
        })
    } else {
        for_each_item(threads, items, |i| {
            let item = plan.item(i);
            with_scratch(Scratch::ABlock, item.rows.len() * plan.kc, |a_block| {
                item_loops::<K>(a, b, beta, out, &plan, &item, APanels::Pack(a_block))
            })
        })
    }
}

/// The split of packing A up front (`run_on`) into units of work: one
/// group of row panels of one K slice of one row block each. Groups split
/// a row block only when there are fewer blocks × slices than two per
/// thread (M ≤ MC: one row block, and one slice when K ≤ KC).
struct APackUnits<'a> {
    plan: &'a Plan,
    k: usize,
    slices: usize,
    groups: usize,
}

/// One unit: A[rows, pc..pc+kc]'s row panels `panels`, packed into
/// a_all[offset..offset + len].
struct APackUnit {
    rows: Range<usize>,
    pc: usize,
    kc: usize,
    panels: Range<usize>,
    offset: usize,
    len: usize,
}

impl<'a> APackUnits<'a> {
    fn new<K: MicroKernel>(plan: &'a Plan, k: usize, threads: usize) -> Self {
        let slices = k.div_ceil(plan.kc);
        let whole = plan.row_blocks * slices;
        let fewest_panels = (plan.m / plan.row_blocks).div_ceil(K::MR);
        let groups = if threads > 1 && whole < 2 * threads {
            (2 * threads).div_ceil(whole).min(fewest_panels).max(1)
        } else {
            1
        };
        APackUnits {
            plan,
            k,
            slices,
            groups,
        }
    }

    fn count(&self) -> usize {
        self.plan.row_blocks * self.slices * self.groups
    }

    /// Unit `u` (< `count()`), ordered by row block, then K slice, then
    /// group: a block's slices lie one after another, and a slice's panels
    /// too, so the units' ranges tile a_all without overlapping.
    fn unit<K: MicroKernel>(&self, u: usize) -> APackUnit {
        let (r, s, g) = (
            u / (self.slices * self.groups),
            u / self.groups % self.slices,
            u % self.groups,
        );
        let plan = self.plan;
        let rows = plan.item(r * plan.col_blocks).rows;
        let (pc, height) = (s * plan.kc, rows.len());
        let kc = plan.kc.min(self.k - pc);
        let count = height.div_ceil(K::MR);
        let panels = g * count / self.groups..(g + 1) * count / self.groups;
        // Block rows where a group's panels start and end.
        let row_at = |t: usize| row_panels(height, K::MR).nth(t).map_or(height, |p| p.0);
        let (first, end) = (row_at(panels.start), row_at(panels.end));
        APackUnit {
            offset: rows.start * self.k + height * pc + first * kc,
            len: (end - first) * kc,
            rows,
            pc,
            kc,
            panels,
        }
    }
}

/// Runs `work(i)` for every work item i < `items`: shared with the kernel
/// pool (the calling thread joining) when the plan has `threads > 1`.
fn for_each_item(threads: usize, items: usize, work: impl Fn(usize) + Sync) {
    if threads > 1 {
        parallel::for_each_index(items, work);
    } else {
        (0..items).for_each(work);
    }
}

/// Where a work item's A panels come from.
enum APanels<'a> {
    /// Packed here, one KC slice at a time, into this scratch.
    Pack(&'a mut [f32]),
    /// Packed before the loops: the item's rows, all K slices in order.
    Packed(&'a [f32]),
}

/// Loops 5 and 4 of one work item.
fn item_loops<K: MicroKernel>(
    a: MatRef,
    b: &BSource,
    beta: f32,
    out: &Out,
    plan: &Plan,
    item: &Item,
    mut panels: APanels,
) {
    let (k, n) = (a.cols, b.n());
    let height = item.rows.len();
    // Loop 5 (jc, NC): blocks of columns.
    for jc in item.strips.clone().step_by(plan.nc_strips) {
        let strips = jc..(jc + plan.nc_strips).min(item.strips.end);
        // Loop 4 (pc, KC): slices of the shared dimension; the first
        // applies beta, later ones accumulate.
        for pc in (0..k).step_by(plan.kc) {
            let kc = plan.kc.min(k - pc);
            let a_block: &[f32] = match &mut panels {
                APanels::Pack(scratch) => {
                    let a_block = &mut scratch[..height * kc];
                    pack_a::<K>(a, item.rows.clone(), pc, kc, a_block);
                    a_block
                }
                APanels::Packed(all) => &all[height * pc..height * (pc + kc)],
            };
            let block = Block {
                a: a_block,
                rows: item.rows.clone(),
                kc,
                pc,
                strips: strips.clone(),
            };
            let beta = if pc == 0 { beta } else { 1.0 };
            // The epilogue goes with the slice that completes C.
            let epi = (pc + kc == k && !out.epi.is_empty()).then_some(out.epi);
            if plan.copy_b_panels {
                let len = kc * plan.tile_strips * STRIP;
                with_scratch(Scratch::BPanelCopy, len, |copy| {
                    macro_kernel::<K>(&block, plan.tile_strips, b, beta, out, epi, n, Some(copy))
                })
            } else {
                macro_kernel::<K>(&block, plan.tile_strips, b, beta, out, epi, n, None)
            }
        }
    }
}

/// A packed A block and the part of C it produces in one pass of loop 3.
struct Block<'a> {
    /// Rows `rows` × shared dims pc..pc+kc, packed by `pack_a`.
    a: &'a [f32],
    rows: Range<usize>,
    kc: usize,
    pc: usize,
    strips: Range<usize>,
}

/// Loops 2 and 1 over one block. With `copy` (≥ kc·16·tile_strips f32), the
/// first row panel's tile copies each B micro-panel there as it reads it,
/// packed, and the other row panels read the copy.
#[allow(clippy::too_many_arguments)]
fn macro_kernel<K: MicroKernel>(
    blk: &Block,
    tile_strips: usize,
    b: &BSource,
    beta: f32,
    out: &Out,
    epi: Option<&Epilogue>,
    n: usize,
    mut copy: Option<&mut [f32]>,
) {
    // Loop 2 (jr, NR): one B micro-panel of `s` strips per step.
    let mut js = blk.strips.start;
    while js < blk.strips.end {
        let avail = b.run_end(js, blk.strips.end) - js;
        let s = if avail >= tile_strips {
            tile_strips
        } else {
            1 << avail.ilog2()
        };
        let read = b.panel(js, blk.pc);
        let next = b.next_panel(js + s, blk.strips.end, blk.pc);
        let copy_to = copy.as_deref_mut().map(|copy| {
            assert!(
                copy.len() >= blk.kc * s * STRIP,
                "B micro-panel copy too short"
            );
            copy.as_mut_ptr()
        });
        // Loop 1 (ir, MR): one A micro-panel per tile.
        for (r0, height) in row_panels(blk.rows.len(), K::MR) {
            let panel = match copy_to {
                // The first row panel's tile waits on this micro-panel; the
                // others, reading it from cache, fetch the next.
                None if r0 > 0 => BPanel { next, ..read },
                None => read,
                Some(to) if r0 == 0 => BPanel {
                    pack_into: to,
                    ..read
                },
                Some(from) => BPanel::packed(from, blk.kc),
            };
            let a_panel = &blk.a[r0 * blk.kc..(r0 + height) * blk.kc];
            let at = (blk.rows.start + r0, js * STRIP);
            run_tile::<K>(height, s, blk.kc, a_panel, panel, beta, out, at, n);
            if let Some(epi) = epi {
                apply_epilogue(epi, out, at, height, (s * STRIP).min(n - at.1));
            }
        }
        js += s;
    }
}

/// One micro-kernel call for C[at.0.., at.1..]; a tile that sticks out past
/// column N goes through a scratch tile and only its valid part is stored.
#[allow(clippy::too_many_arguments)]
fn run_tile<K: MicroKernel>(
    rows: usize,
    strips: usize,
    kc: usize,
    a_panel: &[f32],
    panel: BPanel,
    beta: f32,
    out: &Out,
    at: (usize, usize),
    n: usize,
) {
    let (c, ldc) = (out.c, out.ldc);
    let width = strips * STRIP;
    let (i0, j0) = at;
    if j0 + width <= n {
        // SAFETY: K's ISA is available (asserted by the public entry that
        // chose K); the plan only makes tiles with rows ≤ MR and strips
        // STRIPS, max_strips(rows) or a power of two below; a_panel holds kc·rows values; `panel`
        // covers kc rows of `strips` strips inside B (or its padding), and
        // its `pack_into`, when set, kc·16·strips f32 (checked by
        // `macro_kernel`, the one place that sets it); C rows
        // i0..i0+rows, columns j0..j0+width lie inside the M×N matrix the
        // caller checked against C's length, and no other item writes them.
        unsafe {
            K::tile(
                rows,
                strips,
                kc,
                a_panel.as_ptr(),
                panel,
                c.0.add(i0 * ldc + j0),
                ldc,
                beta,
            )
        }
        return;
    }
    let mut scratch = [0.0f32; MAX_TILE];
    // SAFETY: as above for A and B; the scratch tile holds rows·width ≤
    // MAX_TILE values at stride `width`.
    unsafe {
        K::tile(
            rows,
            strips,
            kc,
            a_panel.as_ptr(),
            panel,
            scratch.as_mut_ptr(),
            width,
            0.0,
        )
    }
    let valid = n - j0;
    for (i, tile_row) in scratch.chunks_exact(width).take(rows).enumerate() {
        // SAFETY: row i0+i, columns j0..n of C are inside the checked M×N
        // matrix and written by this item only.
        let c_row = unsafe { std::slice::from_raw_parts_mut(c.0.add((i0 + i) * ldc + j0), valid) };
        for (dst, &x) in c_row.iter_mut().zip(tile_row) {
            *dst = if beta == 0.0 { x } else { beta * *dst + x };
        }
    }
}

/// Applies `epi` to the finished tile C[at.0 .. at.0 + rows, at.1 .. at.1 + width].
fn apply_epilogue(epi: &Epilogue, out: &Out, at: (usize, usize), rows: usize, width: usize) {
    let (i0, j0) = at;
    // SAFETY: the tile lies inside the checked M×N matrix (width stops at
    // N), only the work item that computed it touches it, and `out.isa` is
    // available (asserted by the public entry that chose it).
    unsafe {
        epi.apply_tile(
            out.isa,
            out.c.0.add(i0 * out.ldc + j0),
            out.ldc,
            i0..i0 + rows,
            j0,
            width,
        )
    }
}
