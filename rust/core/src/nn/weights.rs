//! Named weight tensors as handed to the layer constructors: a [`Tensor`] is
//! either borrowed from a memory-mapped checkpoint or owned, and [`Weights`]
//! is a prefixed view of a name → tensor map that checks every shape it hands
//! out against what the config implies (candle's `VarBuilder`, reduced to
//! what a loader needs).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use memmap2::Mmap;

use crate::{Error, Result};

/// A dense row-major f32 tensor of shape `shape` (any rank).
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Storage,
}

#[derive(Clone)]
enum Storage {
    /// `len` f32 values at byte `offset` of a mapped file, 4-byte aligned
    /// (checked in [`Tensor::mapped`]).
    Mapped {
        mmap: Arc<Mmap>,
        offset: usize,
        len: usize,
    },
    Owned(Arc<[f32]>),
}

impl Tensor {
    /// An owned tensor; `data.len()` must equal the product of `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let numel = numel(&shape)?;
        if numel != data.len() {
            return Err(Error::value(format!(
                "tensor data has {} elements but shape {shape:?} needs {numel}",
                data.len()
            )));
        }
        Ok(Tensor {
            shape,
            storage: Storage::Owned(data.into()),
        })
    }

    /// Borrows `numel(shape)` little-endian f32 values starting at byte
    /// `offset` of `mmap`, or returns `None` when that range is not 4-byte
    /// aligned, lies outside the map, or this host is big-endian (the caller
    /// then copies).
    pub fn mapped(mmap: &Arc<Mmap>, offset: usize, shape: Vec<usize>) -> Option<Self> {
        let len = numel(&shape).ok()?;
        let end = len.checked_mul(4)?.checked_add(offset)?;
        let aligned = (mmap.as_ptr() as usize + offset).is_multiple_of(std::mem::align_of::<f32>());
        if !aligned || end > mmap.len() || cfg!(target_endian = "big") {
            return None;
        }
        Some(Tensor {
            shape,
            storage: Storage::Mapped {
                mmap: Arc::clone(mmap),
                offset,
                len,
            },
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f32] {
        match &self.storage {
            Storage::Owned(v) => v,
            Storage::Mapped { mmap, offset, len } => {
                let bytes = &mmap[*offset..*offset + *len * 4];
                // SAFETY: `mapped` checked that the range lies inside the map and
                // starts 4-byte aligned, the host is little-endian like the file,
                // and every bit pattern is a valid f32. The map is read-only and
                // lives as long as the Arc held here.
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), *len) }
            }
        }
    }

    /// Whether the values live in a memory-mapped file (not copied).
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }

    /// For a tensor mapped from a checkpoint, drops the file's pages from
    /// this process's resident memory (they stay in the OS page cache and
    /// fault back in on the next read); a no-op for an owned tensor. Layers
    /// that copy (pack) a tensor call this once done, so that loading never
    /// holds the file and the packed copy in memory at once. It releases the
    /// whole file, not just this tensor's range: the kernel maps a
    /// neighbourhood of pages (up to megabytes) on each fault, so tensors
    /// released earlier come back resident as their neighbours are read.
    pub fn release_resident_pages(&self) {
        #[cfg(unix)]
        if let Storage::Mapped { mmap, .. } = &self.storage {
            // SAFETY: the map is read-only, so none of its pages was ever
            // written: MADV_DONTNEED only unmaps them, and a later read
            // faults the same bytes back in from the file (the contract that
            // the file is not modified while mapped is the one
            // `checkpoint::read` already relies on). No value seen through a
            // borrow of any tensor of this map changes.
            let _ = unsafe { mmap.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.shape)
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

fn numel(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::value(format!("tensor shape {shape:?} overflows")))
}

/// One expected dimension: its size and the config expression that implies
/// it (`"d_model"`, `"3·d_model"`), so a mismatch names the config key.
pub type Dim<'a> = (usize, &'a str);

/// A name → tensor map plus tensors whose dtype we cannot read, shared by
/// every prefixed [`Weights`] view of it.
#[derive(Debug, Default)]
pub struct TensorMap {
    tensors: HashMap<String, Tensor>,
    /// name → dtype name, for tensors only reported if a layer asks for them.
    unsupported: HashMap<String, String>,
}

impl TensorMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a tensor.
    pub fn insert(&mut self, name: String, tensor: Tensor) {
        self.unsupported.remove(&name);
        self.tensors.insert(name, tensor);
    }

    /// Records a tensor of a dtype we cannot read: an error only if used.
    pub fn insert_unsupported(&mut self, name: String, dtype: String) {
        self.tensors.remove(&name);
        self.unsupported.insert(name, dtype);
    }

    /// A view with no prefix.
    pub fn root(&self) -> Weights<'_> {
        Weights {
            map: self,
            prefix: String::new(),
        }
    }
}

/// A prefixed view of a [`TensorMap`]: `w.pp("layers.0").get("weight", ..)`
/// reads `layers.0.weight`. Every lookup checks the shape.
#[derive(Clone, Debug)]
pub struct Weights<'a> {
    map: &'a TensorMap,
    prefix: String,
}

impl<'a> Weights<'a> {
    /// The view one level down: names gain `"{prefix}."`.
    pub fn pp(&self, name: impl fmt::Display) -> Weights<'a> {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Weights {
            map: self.map,
            prefix,
        }
    }

    /// The full name of `name` under this prefix.
    pub fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The tensor `name`, which must have shape `dims`; a missing tensor, an
    /// unreadable dtype or another shape is a checkpoint error naming it.
    pub fn get(&self, name: &str, dims: &[Dim]) -> Result<&'a Tensor> {
        let full = self.full_name(name);
        match self.get_opt_full(&full, dims)? {
            Some(t) => Ok(t),
            None => Err(Error::checkpoint(format!(
                "missing tensor `{full}` (expected shape {})",
                describe(dims)
            ))),
        }
    }

    /// Like [`Weights::get`], but `Ok(None)` when the tensor is absent.
    pub fn get_opt(&self, name: &str, dims: &[Dim]) -> Result<Option<&'a Tensor>> {
        self.get_opt_full(&self.full_name(name), dims)
    }

    fn get_opt_full(&self, full: &str, dims: &[Dim]) -> Result<Option<&'a Tensor>> {
        if let Some(dtype) = self.map.unsupported.get(full) {
            return Err(Error::checkpoint(format!(
                "tensor `{full}` has dtype {dtype}; expected F32, F16 or BF16"
            )));
        }
        let Some(t) = self.map.tensors.get(full) else {
            return Ok(None);
        };
        let expected: Vec<usize> = dims.iter().map(|d| d.0).collect();
        if t.shape() != expected.as_slice() {
            return Err(Error::checkpoint(format!(
                "tensor `{full}` has shape {:?}, but the config implies {}",
                t.shape(),
                describe(dims)
            )));
        }
        Ok(Some(t))
    }
}

/// `[50 (src_vocab_size), 32 (d_model)]`.
fn describe(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims.iter().map(|(n, key)| format!("{n} ({key})")).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> TensorMap {
        let mut m = TensorMap::new();
        m.insert(
            "a.b.weight".into(),
            Tensor::new(vec![2, 3], vec![0.0; 6]).unwrap(),
        );
        m.insert_unsupported("a.b.bias".into(), "I64".into());
        m
    }

    #[test]
    fn prefixed_lookup_checks_shape() {
        let m = map();
        let w = m.root().pp("a").pp("b");
        assert_eq!(
            w.get("weight", &[(2, "x"), (3, "y")]).unwrap().shape(),
            &[2, 3]
        );
        let err = w
            .get("weight", &[(3, "d_ff"), (3, "d_model")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.b.weight") && err.contains("[2, 3]") && err.contains("d_ff"),
            "{err}"
        );
    }

    #[test]
    fn missing_and_unsupported_are_checkpoint_errors() {
        let m = map();
        let w = m.root().pp("a.b");
        assert!(matches!(w.get("nope", &[]), Err(Error::Checkpoint(m)) if m.contains("a.b.nope")));
        assert!(
            matches!(w.get("bias", &[(2, "x")]), Err(Error::Checkpoint(m)) if m.contains("I64"))
        );
        assert!(w.get_opt("nope", &[]).unwrap().is_none());
    }

    #[test]
    fn released_pages_read_back_the_same_values() {
        let values: Vec<f32> = (0..5000).map(|i| (i as f32 * 0.37).sin()).collect();
        let path = std::env::temp_dir().join(format!("trs-release-{}.bin", std::process::id()));
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a read-only map of a file this test owns and does not modify.
        let mmap = Arc::new(unsafe { Mmap::map(&file) }.unwrap());
        let t = Tensor::mapped(&mmap, 0, vec![50, 100]).unwrap();
        assert_eq!(t.data(), values.as_slice());
        t.release_resident_pages();
        assert_eq!(t.data(), values.as_slice());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn new_rejects_wrong_length() {
        assert!(Tensor::new(vec![2, 2], vec![0.0; 3]).is_err());
    }
}
