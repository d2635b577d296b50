//! Reading and writing `model.safetensors`: f32 tensors are borrowed from a
//! read-only memory map when 4-byte aligned, f16/bf16 are widened, anything
//! else is recorded as unreadable and only reported if the model uses it.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::nn::{Tensor, TensorMap};
use crate::{Error, Result};

/// All tensors of the safetensors file at `path`. A missing file is an I/O
/// error; anything that is not a regular file (a FIFO would block the open,
/// a device has no length to map) or not valid safetensors is a checkpoint
/// error, naming the tensor at fault where one is.
pub fn read(path: &Path) -> Result<TensorMap> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path.display(), &e))?;
    if !meta.is_file() {
        return Err(Error::checkpoint(format!(
            "{}: not a regular file",
            path.display()
        )));
    }
    let file = File::open(path).map_err(|e| Error::io(path.display(), &e))?;
    // SAFETY: the map is read-only and private to this process; like every
    // mmap-based loader (safetensors, candle) we rely on the file not being
    // truncated or rewritten in place while the model lives. `save` writes a
    // new file and renames it over the old one (safetensors'
    // `serialize_to_file` does), which leaves this map intact
    // (tests/test_hostile_inputs.py saves a model over its own file).
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path.display(), &e))?;
    let mmap = Arc::new(mmap);
    let st = SafeTensors::deserialize(&mmap).map_err(|e| {
        let detail = diagnose(&mmap)
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        Error::checkpoint(format!(
            "{}: not a valid safetensors file: {e}{detail}",
            path.display()
        ))
    })?;
    let mut map = TensorMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let bytes = view.data();
        // `deserialize` checked that each tensor's bytes are exactly its
        // shape's product times the dtype size, so the widened vectors
        // always fill `shape` and the chunks below are whole.
        let tensor = match view.dtype() {
            Dtype::F32 => {
                let offset = bytes.as_ptr() as usize - mmap.as_ptr() as usize;
                match Tensor::mapped(&mmap, offset, shape.clone()) {
                    Some(t) => t,
                    None => Tensor::new(
                        shape,
                        widen(&name, bytes, 4, |b| {
                            f32::from_le_bytes([b[0], b[1], b[2], b[3]])
                        })?,
                    )?,
                }
            }
            Dtype::F16 => Tensor::new(
                shape,
                widen(&name, bytes, 2, |b| {
                    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
                })?,
            )?,
            Dtype::BF16 => Tensor::new(
                shape,
                widen(&name, bytes, 2, |b| {
                    half::bf16::from_le_bytes([b[0], b[1]]).to_f32()
                })?,
            )?,
            other => {
                map.insert_unsupported(name, format!("{other}"));
                continue;
            }
        };
        map.insert(name, tensor);
    }
    Ok(map)
}

/// For a file the safetensors crate rejected: the first tensor whose header
/// entry is malformed (missing field, unknown dtype, bad shape) or does not
/// fit the data (wrong size, gap/overlap, past the end), so the error can
/// name it, or the uncovered tail of the data. `None` if the header itself
/// is unreadable or nothing more specific than the crate's message is known.
fn diagnose(bytes: &[u8]) -> Option<String> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header = bytes.get(8..8usize.checked_add(n)?)?;
    // `header` lies inside `bytes`, so this cannot underflow.
    let data_len = bytes.len() - 8 - n;
    let serde_json::Value::Object(map) = serde_json::from_slice(header).ok()? else {
        return None;
    };
    let mut entries = Vec::new();
    for (name, info) in map.iter().filter(|(k, _)| *k != "__metadata__") {
        entries.push((
            name,
            entry(info).map_err(|e| format!("tensor `{name}`: {e}")),
        ));
    }
    // Malformed entries first, in name order (the map is sorted).
    if let Some(Err(e)) = entries.iter().map(|(_, r)| r).find(|r| r.is_err()) {
        return Some(e.clone());
    }
    let mut entries: Vec<(&String, Entry)> = entries
        .into_iter()
        .filter_map(|(name, r)| r.ok().map(|e| (name, e)))
        .collect();
    entries.sort_by_key(|(_, e)| (e.start, e.end));
    let mut expected_start = 0;
    for (name, entry) in entries {
        let Entry {
            start,
            end,
            bits,
            dtype,
        } = entry;
        if start != expected_start || end < start {
            return Some(format!(
                "tensor `{name}`: data_offsets [{start}, {end}] leave a gap or overlap"
            ));
        }
        if end > data_len {
            return Some(format!(
                "tensor `{name}`: data_offsets end at {end}, past the {data_len} data bytes"
            ));
        }
        if bits.is_none_or(|b| b % 8 != 0 || b / 8 != (end - start) as u128) {
            return Some(format!(
                "tensor `{name}`: its shape and dtype {dtype} do not fit data_offsets [{start}, {end}]"
            ));
        }
        expected_start = end;
    }
    (expected_start != data_len)
        .then(|| format!("the tensors cover {expected_start} of the {data_len} data bytes"))
}

/// One tensor's header entry: byte range, its size in bits per shape and
/// dtype (`None` on overflow), and the dtype name.
struct Entry<'a> {
    start: usize,
    end: usize,
    bits: Option<u128>,
    dtype: &'a str,
}

/// Reads one header entry, or says which field is malformed.
fn entry(info: &serde_json::Value) -> std::result::Result<Entry<'_>, String> {
    let field = |key: &str| {
        info.get(key)
            .ok_or_else(|| format!("header entry lacks `{key}`"))
    };
    let dtype = field("dtype")?.as_str().ok_or("`dtype` must be a string")?;
    let dtype_bits = dtype_bits(dtype).ok_or_else(|| format!("unknown dtype `{dtype}`"))?;
    let index = |v: &serde_json::Value| v.as_u64().and_then(|n| usize::try_from(n).ok());
    let shape = field("shape")?
        .as_array()
        .and_then(|dims| dims.iter().map(index).collect::<Option<Vec<usize>>>())
        .ok_or("`shape` must be a list of non-negative integers")?;
    let offsets = field("data_offsets")?
        .as_array()
        .filter(|o| o.len() == 2)
        .and_then(|o| Some((index(&o[0])?, index(&o[1])?)))
        .ok_or("`data_offsets` must be [start, end], two non-negative integers")?;
    let bits = shape
        .iter()
        .try_fold(dtype_bits, |acc, &d| acc.checked_mul(d as u128));
    Ok(Entry {
        start: offsets.0,
        end: offsets.1,
        bits,
        dtype,
    })
}

/// Bits per element of a safetensors dtype name (those of safetensors 0.8).
fn dtype_bits(dtype: &str) -> Option<u128> {
    Some(match dtype {
        "F64" | "I64" | "U64" | "C64" => 64,
        "F32" | "I32" | "U32" => 32,
        "F16" | "BF16" | "I16" | "U16" => 16,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" | "F8_E8M0" | "F8_E4M3FNUZ"
        | "F8_E5M2FNUZ" => 8,
        "F6_E2M3" | "F6_E3M2" => 6,
        "F4" => 4,
        _ => return None,
    })
}

/// The f32 values of tensor `name`, stored as `size`-byte elements. The
/// copy is at most twice the file's bytes; failing to allocate it is an
/// error naming the tensor, not an abort.
fn widen(
    name: &str,
    bytes: &[u8],
    size: usize,
    convert: impl Fn(&[u8]) -> f32,
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    out.try_reserve_exact(bytes.len() / size).map_err(|_| {
        Error::checkpoint(format!(
            "tensor `{name}`: cannot allocate {} float32 values",
            bytes.len() / size
        ))
    })?;
    out.extend(bytes.chunks_exact(size).map(convert));
    Ok(out)
}

/// Writes `tensors` (name, shape, row-major f32 values) as a safetensors file.
pub fn write(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::value(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(io) => Error::io(path.display(), &io),
        other => Error::value(format!("{}: {other}", path.display())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("trs-ckpt-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("model.safetensors")
    }

    fn raw(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<_> = tensors
            .iter()
            .map(|(n, d, s, b)| {
                (
                    n.to_string(),
                    safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
                )
            })
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn round_trip_is_memory_mapped() {
        let path = tmp("rt");
        let vals: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        write(&path, &[("a.w".into(), vec![2, 3], vals.clone())]).unwrap();
        let map = read(&path).unwrap();
        let t = map.root().get("a.w", &[(2, "x"), (3, "y")]).unwrap();
        assert_eq!(t.data(), vals.as_slice());
        assert!(t.is_mapped());
    }

    #[test]
    fn half_types_are_widened_and_others_rejected_on_use() {
        let path = tmp("half");
        let f16: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = [0.25f32, 3.0]
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect();
        let bytes = raw(&[
            ("h", Dtype::F16, vec![2], f16),
            ("b", Dtype::BF16, vec![2], bf16),
            ("i", Dtype::I64, vec![1], 7i64.to_le_bytes().to_vec()),
        ]);
        std::fs::write(&path, bytes).unwrap();
        let map = read(&path).unwrap();
        let w = map.root();
        assert_eq!(w.get("h", &[(2, "n")]).unwrap().data(), &[1.5, -2.0]);
        assert_eq!(w.get("b", &[(2, "n")]).unwrap().data(), &[0.25, 3.0]);
        let err = w.get("i", &[(1, "n")]).unwrap_err();
        assert!(
            matches!(err, Error::Checkpoint(ref m) if m.contains("`i`") && m.contains("I64")),
            "{err:?}"
        );
    }

    #[test]
    fn invalid_and_truncated_files_are_checkpoint_errors() {
        let path = tmp("bad");
        std::fs::write(&path, b"not a safetensors file at all").unwrap();
        assert!(matches!(read(&path), Err(Error::Checkpoint(_))));
        let good = raw(&[("x", Dtype::F32, vec![4], vec![0u8; 16])]);
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        assert!(matches!(read(&path), Err(Error::Checkpoint(_))));
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(read(&path), Err(Error::Checkpoint(_))));
    }

    #[test]
    fn misaligned_f32_is_copied() {
        // An odd-length f16 tensor first leaves the f32 one 2 bytes off.
        let header = r#"{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},"b":{"dtype":"F32","shape":[2],"data_offsets":[2,10]}}"#;
        let mut header = header.as_bytes().to_vec();
        header.resize(header.len().next_multiple_of(8), b' ');
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(&header);
        bytes.extend(half::f16::from_f32(1.0).to_le_bytes());
        bytes.extend(0.5f32.to_le_bytes());
        bytes.extend((-3.0f32).to_le_bytes());
        let path = tmp("misaligned");
        std::fs::write(&path, bytes).unwrap();
        let map = read(&path).unwrap();
        let b = map.root().get("b", &[(2, "n")]).unwrap().clone();
        assert_eq!(b.data(), &[0.5, -3.0]);
        assert!(!b.is_mapped());
    }

    #[test]
    fn a_tensor_that_does_not_fit_its_offsets_is_named() {
        let good = raw(&[
            ("a", Dtype::F32, vec![2], vec![0u8; 8]),
            ("b", Dtype::F32, vec![1], vec![0u8; 4]),
        ]);
        let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&good[8..8 + n]).unwrap();
        // Claim `a` spans 12 bytes: its shape no longer fits, `b` overlaps.
        let bad_header = header.replace("[0,8]", "[0,12]");
        assert_ne!(bad_header, header);
        let mut bytes = (bad_header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(bad_header.as_bytes());
        bytes.extend(&good[8 + n..]);
        let path = tmp("offsets");
        std::fs::write(&path, bytes).unwrap();
        let err = read(&path).unwrap_err();
        assert!(
            matches!(err, Error::Checkpoint(ref m) if m.contains("`a`")),
            "{err:?}"
        );
    }

    /// A file whose header is `header` (JSON text) followed by `data_len`
    /// zero bytes.
    fn with_header(name: &str, header: &str, data_len: usize) -> std::path::PathBuf {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.resize(bytes.len() + data_len, 0);
        let path = tmp(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn checkpoint_error(path: &Path) -> String {
        match read(path) {
            Err(Error::Checkpoint(m)) => m,
            other => panic!("expected a checkpoint error, got {other:?}"),
        }
    }

    /// [`checkpoint_error`] of a file made by [`tmp`], whose folder it then
    /// removes.
    fn rejected(path: &Path) -> String {
        let msg = checkpoint_error(path);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        msg
    }

    #[test]
    fn a_huge_claimed_tensor_is_named_without_allocating() {
        let header = r#"{"big":{"dtype":"F32","shape":[1000000000000,1000000000000],"data_offsets":[0,16]}}"#;
        let msg = rejected(&with_header("huge", header, 16));
        assert!(msg.contains("`big`"), "{msg}");
        // Offsets that claim the size the shape implies, far past the file.
        let header =
            r#"{"big":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4000000000000]}}"#;
        let msg = rejected(&with_header("huge2", header, 16));
        assert!(msg.contains("`big`") && msg.contains("past"), "{msg}");
    }

    #[test]
    fn malformed_header_entries_are_named() {
        let cases = [
            (
                r#"{"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#,
                "unknown dtype `F33`",
            ),
            (
                r#"{"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}}"#,
                "`dtype` must be",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
                "`shape` must be",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#,
                "`shape` must be",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#,
                "`data_offsets` must be",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[1]}}"#,
                "lacks `data_offsets`",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#,
                "gap or overlap",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
                "do not fit",
            ),
        ];
        for (i, (header, fragment)) in cases.into_iter().enumerate() {
            let msg = rejected(&with_header(&format!("entry{i}"), header, 4));
            assert!(
                msg.contains("`w`") && msg.contains(fragment),
                "{header}: {msg}"
            );
        }
        let header = r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let msg = rejected(&with_header("tail", header, 12));
        assert!(msg.contains("cover 4 of the 12 data bytes"), "{msg}");
    }

    #[test]
    fn header_length_out_of_bounds_is_a_checkpoint_error() {
        for n in [u64::MAX, 1 << 40, 200_000_000, 1_000] {
            let mut bytes = n.to_le_bytes().to_vec();
            bytes.extend(b"{}");
            let path = tmp(&format!("len{n}"));
            std::fs::write(&path, bytes).unwrap();
            rejected(&path);
        }
        let path = tmp("short");
        std::fs::write(&path, [1u8, 0, 0]).unwrap();
        rejected(&path);
        // Not JSON, not an object, not UTF-8.
        for (i, header) in [&b"{\"a\":"[..], b"[1, 2]", b"\xff\xfe"].iter().enumerate() {
            let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
            bytes.extend(*header);
            let path = tmp(&format!("json{i}"));
            std::fs::write(&path, bytes).unwrap();
            rejected(&path);
        }
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = tmp("dir");
        let dir = dir.parent().unwrap();
        assert!(checkpoint_error(dir).contains("not a regular file"));
        std::fs::remove_dir_all(dir).unwrap();
        // A device: mapping it would read nothing sensible (or block).
        assert!(checkpoint_error(Path::new("/dev/zero")).contains("not a regular file"));
    }

    #[test]
    fn missing_file_is_not_found() {
        let err = read(Path::new("/nonexistent/dir/model.safetensors")).unwrap_err();
        assert!(matches!(
            err,
            Error::Io {
                kind: std::io::ErrorKind::NotFound,
                ..
            }
        ));
    }
}
