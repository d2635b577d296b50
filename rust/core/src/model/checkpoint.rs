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

/// All tensors of the safetensors file at `path`.
pub fn read(path: &Path) -> Result<TensorMap> {
    let file = File::open(path).map_err(|e| Error::io(path.display(), &e))?;
    // SAFETY: the map is read-only and private to this process; like every
    // mmap-based loader (safetensors, candle) we rely on the file not being
    // truncated or rewritten in place while the model lives. `save` writes a
    // new file and renames it over the old one, which leaves this map intact.
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
        let tensor = match view.dtype() {
            Dtype::F32 => {
                let offset = bytes.as_ptr() as usize - mmap.as_ptr() as usize;
                match Tensor::mapped(&mmap, offset, shape.clone()) {
                    Some(t) => t,
                    None => Tensor::new(
                        shape,
                        widen(bytes, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    )?,
                }
            }
            Dtype::F16 => Tensor::new(
                shape,
                widen(bytes, 2, |b| {
                    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
                }),
            )?,
            Dtype::BF16 => Tensor::new(
                shape,
                widen(bytes, 2, |b| {
                    half::bf16::from_le_bytes([b[0], b[1]]).to_f32()
                }),
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
/// entry does not fit the data (wrong size, gap/overlap, past the end), so the
/// error can name it. `None` if the header itself is unreadable or no single
/// tensor is at fault.
fn diagnose(bytes: &[u8]) -> Option<String> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header = bytes.get(8..8usize.checked_add(n)?)?;
    let data_len = bytes.len() - 8 - n;
    let serde_json::Value::Object(map) = serde_json::from_slice(header).ok()? else {
        return None;
    };
    let mut entries: Vec<(&String, (usize, usize), &serde_json::Value)> = Vec::new();
    for (name, info) in map.iter().filter(|(k, _)| *k != "__metadata__") {
        let offsets = info.get("data_offsets")?.as_array()?;
        let (start, end) = (
            offsets.first()?.as_u64()? as usize,
            offsets.get(1)?.as_u64()? as usize,
        );
        entries.push((name, (start, end), info));
    }
    entries.sort_by_key(|e| e.1);
    let mut expected_start = 0;
    for (name, (start, end), info) in entries {
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
        let dtype = info.get("dtype")?.as_str()?;
        let shape: Option<Vec<u64>> = info
            .get("shape")?
            .as_array()?
            .iter()
            .map(|d| d.as_u64())
            .collect();
        let numel = shape?.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let bytes_needed = dtype_bytes(dtype)
            .zip(numel)
            .and_then(|(b, n)| n.checked_mul(b));
        if bytes_needed != Some((end - start) as u64) {
            return Some(format!("tensor `{name}`: its shape and dtype {dtype} do not fit data_offsets [{start}, {end}]"));
        }
        expected_start = end;
    }
    None
}

/// Bytes per element of a safetensors dtype name.
fn dtype_bytes(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

fn widen(bytes: &[u8], size: usize, convert: impl Fn(&[u8]) -> f32) -> Vec<f32> {
    bytes.chunks_exact(size).map(convert).collect()
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
