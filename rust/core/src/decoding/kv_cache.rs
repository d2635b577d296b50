//! Self-attention key/value cache of one decoder layer, one entry per live
//! row (hypothesis), grown by one position per decoding step.

/// Keys and values [len, E] of every row for one decoder layer. All rows
/// hold the same number of positions (they are stepped together).
#[derive(Clone, Debug)]
pub struct KvCache {
    width: usize,
    rows: Vec<RowKv>,
}

#[derive(Clone, Debug, Default)]
struct RowKv {
    /// [len, E].
    keys: Vec<f32>,
    /// [len, E].
    values: Vec<f32>,
}

impl KvCache {
    /// An empty cache of `rows` rows of width E, with room for `capacity`
    /// positions per row so that steps do not reallocate.
    pub fn new(rows: usize, width: usize, capacity: usize) -> Self {
        let row = || RowKv {
            keys: Vec::with_capacity(capacity * width),
            values: Vec::with_capacity(capacity * width),
        };
        KvCache {
            width,
            rows: (0..rows).map(|_| row()).collect(),
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Positions cached in `row`.
    pub fn len(&self, row: usize) -> usize {
        self.rows[row].keys.len() / self.width
    }

    /// Appends one position's key [E] and value [E] to `row`.
    pub fn push(&mut self, row: usize, key: &[f32], value: &[f32]) {
        assert!(
            key.len() == self.width && value.len() == self.width,
            "KvCache::push: width"
        );
        let r = &mut self.rows[row];
        r.keys.extend_from_slice(key);
        r.values.extend_from_slice(value);
    }

    /// Keys [len, E] of `row`.
    pub fn keys(&self, row: usize) -> &[f32] {
        &self.rows[row].keys
    }

    /// Values [len, E] of `row`.
    pub fn values(&self, row: usize) -> &[f32] {
        &self.rows[row].values
    }

    /// New row i = old row `rows[i]`; rows may repeat or be dropped.
    pub fn select_rows(&mut self, rows: &[usize]) {
        self.rows = gather(std::mem::take(&mut self.rows), rows);
    }
}

/// `[items[rows[0]], items[rows[1]], ...]`, moving each item to its last
/// use and cloning only for earlier repeats, so dropping or reordering rows
/// copies nothing and only beam duplicates pay for a copy.
pub fn gather<T: Clone>(items: Vec<T>, rows: &[usize]) -> Vec<T> {
    let mut uses = vec![0usize; items.len()];
    for &r in rows {
        uses[r] += 1;
    }
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    rows.iter()
        .map(|&r| {
            uses[r] -= 1;
            let slot = &mut slots[r];
            if uses[r] == 0 {
                slot.take()
                    .expect("each slot is taken at its last use only")
            } else {
                slot.clone()
                    .expect("slot still present before its last use")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_reorders_duplicates_and_drops() {
        let v = vec!["a".to_string(), "b".into(), "c".into()];
        assert_eq!(gather(v.clone(), &[2, 0, 2, 2]), vec!["c", "a", "c", "c"]);
        assert_eq!(gather(v.clone(), &[]), Vec::<String>::new());
        assert_eq!(gather(v, &[1]), vec!["b"]);
    }

    #[test]
    fn push_and_select() {
        let mut c = KvCache::new(2, 2, 4);
        c.push(0, &[1.0, 2.0], &[3.0, 4.0]);
        c.push(1, &[5.0, 6.0], &[7.0, 8.0]);
        c.push(0, &[9.0, 9.0], &[9.0, 9.0]);
        c.push(1, &[0.0, 0.0], &[1.0, 1.0]);
        assert_eq!(c.len(0), 2);
        c.select_rows(&[1, 1, 0]);
        assert_eq!(c.rows(), 3);
        assert_eq!(c.keys(0), &[5.0, 6.0, 0.0, 0.0]);
        assert_eq!(c.keys(1), c.keys(0));
        assert_eq!(c.values(2), &[3.0, 4.0, 9.0, 9.0]);
    }
}
