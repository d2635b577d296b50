//! Self-attention keys and values of every decoder layer for the live rows
//! (hypotheses) of one decoding session, grown by one position per step.
//!
//! Memory is a pool of *slots*. A slot holds one row's keys and values for
//! every layer at up to `capacity` positions, allocated once, when the cache
//! is made (or when more rows are live at once than ever before). A live row
//! points at its slot, so each row's keys of one layer are one contiguous
//! [len, E] block that attention reads at unit stride.
//!
//! Reordering rows (beam search, finished rows) moves slot indices, not
//! data: a row kept once keeps its slot, a dropped row's slot returns to the
//! free list, and only the second and later copies of a duplicated row copy
//! the prefix (len positions of every layer) into a free slot — the positions
//! that really diverge from there on. Nothing is allocated while the live
//! rows fit in the slots already made.

/// The cache of a decoder stack: L layers, width E, room for `capacity`
/// positions per row.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: usize,
    width: usize,
    capacity: usize,
    /// Positions cached in every row (all rows are stepped together).
    len: usize,
    /// Each [L, 2, capacity, E]: per layer the keys, then the values.
    slots: Vec<Box<[f32]>>,
    /// Slot of each live row, in row order.
    row_slots: Vec<usize>,
    /// Slots no live row holds.
    free: Vec<usize>,
    /// `select_rows` scratch, per old row: how often it is selected, and
    /// whether one new row has taken over its slot already.
    uses: Vec<usize>,
    taken: Vec<bool>,
    /// `select_rows` scratch: the new `row_slots`.
    next_slots: Vec<usize>,
}

impl KvCache {
    /// An empty cache (no position yet) of `rows` rows for `layers` layers of
    /// width E = `width`, with room for `capacity` positions per row, and
    /// slots made up front for `reserved_rows` live rows (at least `rows`).
    pub fn new(
        layers: usize,
        width: usize,
        capacity: usize,
        rows: usize,
        reserved_rows: usize,
    ) -> Self {
        let slot_count = rows.max(reserved_rows);
        let mut cache = KvCache {
            layers,
            width,
            capacity,
            len: 0,
            slots: Vec::with_capacity(slot_count),
            row_slots: Vec::with_capacity(slot_count),
            free: Vec::with_capacity(slot_count),
            uses: Vec::with_capacity(slot_count),
            taken: Vec::with_capacity(slot_count),
            next_slots: Vec::with_capacity(slot_count),
        };
        for _ in 0..slot_count {
            cache.add_slot();
        }
        cache.row_slots.extend(0..rows);
        cache.free.extend((rows..slot_count).rev());
        cache
    }

    /// Live rows.
    pub fn rows(&self) -> usize {
        self.row_slots.len()
    }

    /// Positions cached in every row.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions each row has room for.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Opens the next position in every row (its keys and values are then
    /// written by [`KvCache::write`]). Panics when the cache is full: the
    /// caller sized it for every step it runs.
    pub fn push_position(&mut self) {
        assert!(
            self.len < self.capacity,
            "KvCache: all {} positions are used",
            self.capacity
        );
        self.len += 1;
    }

    /// Writes `key` [E] and `value` [E] of `layer` at the newest position of
    /// `row`.
    pub fn write(&mut self, layer: usize, row: usize, key: &[f32], value: &[f32]) {
        assert!(
            key.len() == self.width && value.len() == self.width,
            "KvCache::write: key and value must hold E = {} values",
            self.width
        );
        assert!(self.len > 0, "KvCache::write: no position opened");
        let at = (self.len - 1) * self.width;
        let (k, v) = (self.part(layer, 0) + at, self.part(layer, 1) + at);
        let slot = &mut self.slots[self.row_slots[row]];
        slot[k..k + self.width].copy_from_slice(key);
        slot[v..v + self.width].copy_from_slice(value);
    }

    /// Keys [len, E] of `layer` for `row`.
    pub fn keys(&self, layer: usize, row: usize) -> &[f32] {
        self.cached(layer, 0, row)
    }

    /// Values [len, E] of `layer` for `row`.
    pub fn values(&self, layer: usize, row: usize) -> &[f32] {
        self.cached(layer, 1, row)
    }

    /// New row i = old row `rows[i]`; rows may repeat (each copy then
    /// evolves on its own) or be dropped.
    pub fn select_rows(&mut self, rows: &[usize]) {
        let old_rows = self.row_slots.len();
        self.uses.clear();
        self.uses.resize(old_rows, 0);
        for &row in rows {
            assert!(
                row < old_rows,
                "KvCache::select_rows: row {row} of {old_rows}"
            );
            self.uses[row] += 1;
        }
        for (row, &uses) in self.uses.iter().enumerate() {
            if uses == 0 {
                self.free.push(self.row_slots[row]);
            }
        }
        self.taken.clear();
        self.taken.resize(old_rows, false);
        self.next_slots.clear();
        for &row in rows {
            let source = self.row_slots[row];
            let slot = if std::mem::replace(&mut self.taken[row], true) {
                let copy = match self.free.pop() {
                    Some(slot) => slot,
                    None => self.add_slot(),
                };
                self.copy_prefix(source, copy);
                copy
            } else {
                source
            };
            self.next_slots.push(slot);
        }
        std::mem::swap(&mut self.row_slots, &mut self.next_slots);
    }

    /// Offset in a slot of `layer`'s keys (`kind` 0) or values (1).
    fn part(&self, layer: usize, kind: usize) -> usize {
        assert!(
            layer < self.layers,
            "KvCache: layer {layer} of {}",
            self.layers
        );
        (layer * 2 + kind) * self.capacity * self.width
    }

    fn cached(&self, layer: usize, kind: usize, row: usize) -> &[f32] {
        let start = self.part(layer, kind);
        &self.slots[self.row_slots[row]][start..start + self.len * self.width]
    }

    /// Makes one more (zeroed) slot and returns its index.
    fn add_slot(&mut self) -> usize {
        let len = self.layers * 2 * self.capacity * self.width;
        self.slots.push(vec![0.0; len].into_boxed_slice());
        self.slots.len() - 1
    }

    /// Copies the cached positions of every layer from slot `from` to `to`.
    fn copy_prefix(&mut self, from: usize, to: usize) {
        let [src, dst] = self
            .slots
            .get_disjoint_mut([from, to])
            .expect("a duplicate row copies into a different slot");
        let (part, used) = (self.capacity * self.width, self.len * self.width);
        for (d, s) in dst.chunks_exact_mut(part).zip(src.chunks_exact(part)) {
            d[..used].copy_from_slice(&s[..used]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Rng;

    /// The plain model of the cache: every row owns its [layer][kind]
    /// vectors of values, cloned on duplication.
    type CopyRows = Vec<Vec<[Vec<f32>; 2]>>;

    fn assert_same(cache: &KvCache, reference: &CopyRows, context: &str) {
        assert_eq!(cache.rows(), reference.len(), "{context}");
        for (row, layers) in reference.iter().enumerate() {
            for (layer, [keys, values]) in layers.iter().enumerate() {
                assert_eq!(cache.keys(layer, row), &keys[..], "{context} row {row}");
                assert_eq!(cache.values(layer, row), &values[..], "{context} row {row}");
            }
        }
    }

    #[test]
    fn matches_copying_every_row_under_random_reorders() {
        for seed in 0..40u64 {
            let mut rng = Rng::new(seed);
            let (layers, width) = (1 + rng.below(3), 1 + rng.below(5));
            let capacity = 1 + rng.below(9);
            let rows = 1 + rng.below(4);
            let reserved = rng.below(8);
            let mut cache = KvCache::new(layers, width, capacity, rows, reserved);
            let mut reference: CopyRows = vec![vec![[Vec::new(), Vec::new()]; layers]; rows];
            let mut next_value = 0.0f32;
            for step in 0..capacity {
                cache.push_position();
                for (row, ref_row) in reference.iter_mut().enumerate() {
                    for (layer, [keys, values]) in ref_row.iter_mut().enumerate() {
                        let key: Vec<f32> = (0..width).map(|i| next_value + i as f32).collect();
                        let value: Vec<f32> = key.iter().map(|k| -k).collect();
                        next_value += width as f32;
                        cache.write(layer, row, &key, &value);
                        keys.extend(&key);
                        values.extend(&value);
                    }
                }
                assert_eq!(cache.len(), step + 1);
                assert_same(&cache, &reference, &format!("seed {seed} step {step}"));
                // Beam-like selections: repeats, drops, any order, sometimes empty.
                let new_rows = rng.below(2 * reference.len() + 2);
                let selection: Vec<usize> =
                    (0..new_rows).map(|_| rng.below(reference.len())).collect();
                if selection.is_empty() {
                    break;
                }
                cache.select_rows(&selection);
                reference = selection.iter().map(|&r| reference[r].clone()).collect();
                assert_same(
                    &cache,
                    &reference,
                    &format!("seed {seed} after {selection:?}"),
                );
            }
        }
    }

    #[test]
    fn duplicates_diverge_and_reuse_freed_slots() {
        let mut cache = KvCache::new(2, 2, 4, 2, 3);
        cache.push_position();
        for layer in 0..2 {
            cache.write(layer, 0, &[1.0, 2.0], &[3.0, 4.0]);
            cache.write(layer, 1, &[5.0, 6.0], &[7.0, 8.0]);
        }
        // Row 1 three times, row 0 dropped: one slot is free, one is made.
        cache.select_rows(&[1, 1, 1]);
        assert_eq!(cache.slots.len(), 3);
        cache.select_rows(&[0, 1, 2, 2]);
        assert_eq!(cache.slots.len(), 4, "a fourth live row needs a new slot");
        cache.push_position();
        for row in 0..4 {
            let r = row as f32;
            cache.write(1, row, &[r, r], &[-r, -r]);
        }
        for row in 0..4 {
            let r = row as f32;
            assert_eq!(cache.keys(1, row), &[5.0, 6.0, r, r]);
            assert_eq!(cache.values(1, row), &[7.0, 8.0, -r, -r]);
            assert_eq!(&cache.keys(0, row)[..2], &[5.0, 6.0]);
        }
        // Every live row has its own slot.
        let mut slots = cache.row_slots.clone();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 4);
    }

    #[test]
    #[should_panic(expected = "all 1 positions are used")]
    fn pushing_past_capacity_panics() {
        let mut cache = KvCache::new(1, 1, 1, 1, 1);
        cache.push_position();
        cache.push_position();
    }
}
