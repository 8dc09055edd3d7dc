//! Safetensors checkpoints read one tensor at a time with positioned reads.
//!
//! candle's loader maps the files: every page a tensor is copied from stays
//! resident in the process until the mapping goes, so loading peaked at the
//! weights twice (the copies plus the mapped file). Reading each tensor into
//! its own buffer keeps the peak at the weights plus one tensor.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use serde_json::Value;

use crate::{Error, Result};

/// Largest header accepted: real ones are a few hundred KB.
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Where one tensor lies.
#[derive(Debug)]
struct Entry {
    file: Arc<(File, PathBuf)>,
    dtype: DType,
    shape: Vec<usize>,
    /// Byte offset of the data in the file.
    offset: u64,
    bytes: usize,
}

/// The tensors of one or more safetensors files, by name.
#[derive(Debug, Default)]
pub(crate) struct SafetensorsReader {
    tensors: HashMap<String, Entry>,
}

impl SafetensorsReader {
    /// Reads the headers of `paths`; a file that isn't safetensors, a tensor
    /// whose data lies outside its file, or one whose size disagrees with its
    /// shape is an error naming the file.
    pub(crate) fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut reader = Self::default();
        for path in paths {
            reader.add(path)?;
        }
        Ok(reader)
    }

    fn add(&mut self, path: &Path) -> Result<()> {
        let bad = |message: String| Error::files(path, message);
        let file = File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
        let file_len = file
            .metadata()
            .map_err(|e| bad(format!("cannot read: {e}")))?
            .len();
        let mut len_bytes = [0u8; 8];
        file.read_exact_at(&mut len_bytes, 0)
            .map_err(|_| bad("not a safetensors file: shorter than its header".into()))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
            return Err(bad(format!(
                "not a safetensors file: a header of {header_len} bytes in a file of {file_len}"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact_at(&mut header, 8)
            .map_err(|e| bad(format!("cannot read the header: {e}")))?;
        let header: HashMap<String, Value> = serde_json::from_slice(&header)
            .map_err(|e| bad(format!("the safetensors header is not valid JSON: {e}")))?;
        let data_start = 8 + header_len;
        let file = Arc::new((file, path.to_owned()));
        for (name, info) in header {
            if name == "__metadata__" {
                continue;
            }
            let entry = parse_entry(&name, &info, data_start, file_len, &file).map_err(bad)?;
            self.tensors.insert(name, entry);
        }
        Ok(())
    }

    /// Bytes the weights take once loaded with float tensors in `dtype`.
    pub(crate) fn bytes_as(&self, dtype: DType) -> u64 {
        self.tensors
            .values()
            .map(|entry| {
                let size = if entry.dtype.is_float() {
                    dtype.size_in_bytes()
                } else {
                    entry.dtype.size_in_bytes()
                };
                (entry.bytes / entry.dtype.size_in_bytes() * size) as u64
            })
            .sum()
    }

    /// The tensor `name` as stored.
    fn load(&self, name: &str, device: &Device) -> candle_core::Result<Tensor> {
        let entry = self.tensors.get(name).ok_or_else(|| {
            candle_core::Error::CannotFindTensor {
                path: name.to_owned(),
            }
            .bt()
        })?;
        let (file, path) = &*entry.file;
        let mut data = vec![0u8; entry.bytes];
        file.read_exact_at(&mut data, entry.offset).map_err(|e| {
            candle_core::Error::Msg(format!("{}: reading `{name}`: {e}", path.display()))
        })?;
        Tensor::from_raw_buffer(&data, entry.dtype, &entry.shape, device)
    }
}

/// One header entry: `{"dtype": "F32", "shape": [..], "data_offsets": [a, b]}`.
fn parse_entry(
    name: &str,
    info: &Value,
    data_start: u64,
    file_len: u64,
    file: &Arc<(File, PathBuf)>,
) -> std::result::Result<Entry, String> {
    let dtype = match info["dtype"].as_str() {
        Some("F32") => DType::F32,
        Some("F16") => DType::F16,
        Some("BF16") => DType::BF16,
        Some("F64") => DType::F64,
        Some("I64") => DType::I64,
        Some("U32") => DType::U32,
        Some("U8") => DType::U8,
        other => {
            return Err(format!(
                "tensor `{name}` has an unsupported dtype {other:?}"
            ));
        }
    };
    let numbers = |key: &str| -> Option<Vec<u64>> {
        info[key].as_array()?.iter().map(Value::as_u64).collect()
    };
    let shape: Vec<usize> = numbers("shape")
        .ok_or_else(|| format!("tensor `{name}` has no shape"))?
        .into_iter()
        .map(|d| d as usize)
        .collect();
    let (start, end) = match numbers("data_offsets").as_deref() {
        Some(&[start, end]) if start <= end => (start, end),
        _ => return Err(format!("tensor `{name}` has no valid data_offsets")),
    };
    if data_start + end > file_len {
        return Err(format!(
            "tensor `{name}`'s data ends at byte {} of a file of {file_len} (truncated?)",
            data_start + end
        ));
    }
    let bytes = (end - start) as usize;
    let elements: usize = shape.iter().product();
    if elements * dtype.size_in_bytes() != bytes {
        return Err(format!(
            "tensor `{name}` of shape {shape:?} and dtype {dtype:?} holds {bytes} bytes"
        ));
    }
    Ok(Entry {
        file: Arc::clone(file),
        dtype,
        shape,
        offset: data_start + start,
        bytes,
    })
}

impl SimpleBackend for SafetensorsReader {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.load(name, device)?.to_dtype(dtype)?;
        if tensor.shape() != &shape {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: shape,
                got: tensor.shape().clone(),
            }
            .bt());
        }
        Ok(tensor)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        self.load(name, device)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `header` (as JSON) followed by `data`.
    fn write(dir: &Path, header: &str, data: &[u8]) -> PathBuf {
        let path = dir.join("model.safetensors");
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn error(header: &str, data: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), header, data);
        let err = SafetensorsReader::open(&[path]).unwrap_err().to_string();
        assert!(err.contains("model.safetensors"), "names the file: {err}");
        err
    }

    #[test]
    fn weight_bytes_count_float_tensors_in_the_load_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let header = r#"{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
            "ids": {"dtype": "U8", "shape": [4], "data_offsets": [24, 28]}}"#;
        let reader = SafetensorsReader::open(&[write(dir.path(), header, &[0; 28])]).unwrap();
        assert_eq!(reader.bytes_as(DType::F32), 28);
        assert_eq!(reader.bytes_as(DType::BF16), 6 * 2 + 4);
    }

    #[test]
    fn reads_tensors_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = [1f32, 2., 3., 4., 5., 6.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let header = r#"{"__metadata__": {"format": "pt"},
            "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}}"#;
        let reader = SafetensorsReader::open(&[write(dir.path(), header, &data)]).unwrap();
        let a = reader
            .get(
                (2, 2).into(),
                "a",
                candle_nn::Init::Const(0.),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        assert_eq!(a.to_vec2::<f32>().unwrap(), [[1., 2.], [3., 4.]]);
        let b = reader.get_unchecked("b", DType::F16, &Device::Cpu).unwrap();
        assert_eq!(
            b.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap(),
            [5., 6.]
        );
        assert!(reader.contains_tensor("a") && !reader.contains_tensor("c"));
        let wrong = reader.get(
            (4,).into(),
            "a",
            candle_nn::Init::Const(0.),
            DType::F32,
            &Device::Cpu,
        );
        assert!(
            wrong
                .unwrap_err()
                .to_string()
                .contains("shape mismatch for a")
        );
    }

    #[test]
    fn bad_files_are_errors_that_say_what_is_wrong() {
        let one = r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#;
        assert!(error(one, &[0; 4]).contains("truncated"));
        assert!(error("{not json", &[]).contains("not valid JSON"));
        let sized = r#"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#;
        assert!(error(sized, &[0; 8]).contains("holds 8 bytes"));
        let dtype = r#"{"a": {"dtype": "F8_E4M3", "shape": [8], "data_offsets": [0, 8]}}"#;
        assert!(error(dtype, &[0; 8]).contains("unsupported dtype"));
        let offsets = r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}"#;
        assert!(error(offsets, &[0; 8]).contains("data_offsets"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, u64::MAX.to_le_bytes()).unwrap();
        let err = SafetensorsReader::open(&[path]).unwrap_err().to_string();
        assert!(err.contains("not a safetensors file"), "{err}");
    }
}
