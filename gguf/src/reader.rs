//! GGUF v2/v3: reading a file's metadata and tensor table over a memory map, and writing one.
//!
//! Reading never trusts a length from the file: every count and offset is checked against what
//! is left, so a truncated or corrupt file ends in a [`GgufError`] naming what was being read and
//! where, never in a panic or a huge allocation.

use crate::dtype::{ggml_type_name, DType};
use memmap2::Mmap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is {kind}, not a GGUF file; give the path of a .gguf model file")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error(
        "{path} is not a GGUF file (it starts with {found:?}, a GGUF file starts with \"GGUF\")"
    )]
    BadMagic { path: PathBuf, found: String },
    #[error("{path} is GGUF version {version}; this engine reads versions 2 and 3 (convert it again with a current llama.cpp)")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{path} is truncated or corrupt: reading {what} at byte {offset} needs {need} bytes but the file has {len}")]
    Truncated {
        path: PathBuf,
        what: String,
        offset: u64,
        need: u64,
        len: u64,
    },
    #[error(
        "{path} is corrupt: metadata key '{key}' at byte {offset} has unknown value type {ty}"
    )]
    BadValueType {
        path: PathBuf,
        key: String,
        offset: u64,
        ty: u32,
    },
    #[error("{path} is corrupt: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("{path}: tensor '{tensor}' has type {ty}, which this engine does not run (supported: {}); convert it with `meltbench-engine quantize`", crate::dtype::runnable_names())]
    UnsupportedType {
        path: PathBuf,
        tensor: String,
        ty: String,
    },
}

/// A metadata value. Arrays keep their element type so they can be written back unchanged.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(u32, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(..) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// Any integer type as u64 (GGUF writers disagree on u32 vs u64 vs i32 for counts).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, v) => Some(v),
            _ => None,
        }
    }

    /// A short human rendering for `info`: long arrays are summarised.
    pub fn summary(&self) -> String {
        match self {
            Value::String(s) if s.len() > 60 => {
                format!("{:?}… ({} bytes)", &s[..s.floor_char_boundary(60)], s.len())
            }
            Value::String(s) => format!("{s:?}"),
            Value::Array(_, v) if v.len() > 8 => format!("[{} items]", v.len()),
            Value::Array(_, v) => {
                format!(
                    "[{}]",
                    v.iter().map(Value::summary).collect::<Vec<_>>().join(", ")
                )
            }
            Value::F32(v) => format!("{v}"),
            Value::F64(v) => format!("{v}"),
            Value::Bool(v) => format!("{v}"),
            other => other
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| format!("{other:?}")),
        }
    }
}

/// One entry of the tensor table.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` is the row length (contiguous), `dims[1]` the number of rows.
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// Absolute offset of the data in the file.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    pub fn type_name(&self) -> String {
        ggml_type_name(self.ggml_type)
    }
}

/// A parsed GGUF file whose tensor data stays in the memory map.
pub struct Gguf {
    pub path: PathBuf,
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub data_offset: u64,
    map: Arc<Mmap>,
}

impl Gguf {
    /// Removes the metadata entries named in `keys` (values already copied elsewhere).
    pub fn forget(&mut self, keys: &[&str]) {
        self.metadata.retain(|(k, _)| !keys.contains(&k.as_str()));
    }

    pub fn open(path: &Path) -> Result<Gguf, GgufError> {
        let io_err = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Checked before opening: a directory cannot be mapped (the OS says "No such device"),
        // and opening a FIFO for reading waits for a writer forever.
        let meta = std::fs::metadata(path).map_err(io_err)?;
        if !meta.is_file() {
            return Err(GgufError::NotAFile {
                path: path.to_path_buf(),
                kind: if meta.is_dir() {
                    "a directory"
                } else {
                    "not a regular file (a FIFO, socket or device)"
                },
            });
        }
        let file = File::open(path).map_err(io_err)?;
        // SAFETY: the map is read-only; a file truncated underneath us by another process is the
        // one hazard, the same one every mmap-based engine (llama.cpp included) accepts.
        let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
        Self::parse(path, Arc::new(map))
    }

    /// Parses a GGUF image held in memory, as [`Gguf::open`] parses a file (`path` only names it
    /// in errors). For fuzzing and tests: real models are mapped, not copied.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Gguf, GgufError> {
        let io_err = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        // An anonymous map cannot be empty; one zero byte fails at the magic number just the same.
        let mut anon = memmap2::MmapMut::map_anon(bytes.len().max(1)).map_err(io_err)?;
        anon[..bytes.len()].copy_from_slice(bytes);
        let map = anon.make_read_only().map_err(io_err)?;
        Self::parse(path, Arc::new(map))
    }

    fn parse(path: &Path, map: Arc<Mmap>) -> Result<Gguf, GgufError> {
        let mut r = Reader {
            buf: &map[..],
            pos: 0,
            path,
        };
        let magic = r.bytes(4, "the magic number")?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic {
                path: path.to_path_buf(),
                found: String::from_utf8_lossy(magic).into_owned(),
            });
        }
        let version = r.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        let n_tensors = r.u64("the tensor count")?;
        let n_kv = r.u64("the metadata count")?;
        // Each entry takes at least a few bytes, which bounds believable counts by the file size.
        if n_kv > r.remaining() / 12 || n_tensors > r.remaining() / 24 {
            return Err(r.corrupt(format!(
                "header claims {n_kv} metadata entries and {n_tensors} tensors, more than the file can hold"
            )));
        }
        let mut metadata = Vec::with_capacity(n_kv as usize);
        for i in 0..n_kv {
            let key = r.string(&format!("the key of metadata entry {i}"))?;
            let at = r.pos as u64;
            let ty = r.u32(&format!("the type of metadata '{key}'"))?;
            let value = r.value(ty, &key, at, 0)?;
            metadata.push((key, value));
        }
        let alignment = metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(DEFAULT_ALIGNMENT);
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(r.corrupt(format!(
                "general.alignment is {alignment}, not a power of two"
            )));
        }
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = r.string(&format!("the name of tensor {i}"))?;
            let n_dims = r.u32(&format!("the rank of tensor '{name}'"))?;
            if n_dims == 0 || n_dims > 4 {
                return Err(r.corrupt(format!(
                    "tensor '{name}' has {n_dims} dimensions (1 to 4 allowed)"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(r.u64(&format!("dimension {d} of tensor '{name}'"))?);
            }
            let ggml_type = r.u32(&format!("the type of tensor '{name}'"))?;
            let rel = r.u64(&format!("the offset of tensor '{name}'"))?;
            tensors.push((name, dims, ggml_type, rel));
        }
        let data_offset = align_up(r.pos as u64, alignment);
        let file_len = map.len() as u64;
        let mut infos = Vec::with_capacity(tensors.len());
        for (name, dims, ggml_type, rel) in tensors {
            let n: u64 = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(|| {
                    r.corrupt(format!(
                        "tensor '{name}' has dimensions {dims:?} whose product overflows"
                    ))
                })?;
            let n_bytes = match DType::from_ggml(ggml_type) {
                Some(t) if !n.is_multiple_of(t.block_elems() as u64) => {
                    return Err(r.corrupt(format!(
                        "tensor '{name}' has {n} elements, not a whole number of {t} blocks of {}",
                        t.block_elems()
                    )))
                }
                Some(t) => usize::try_from(n)
                    .ok()
                    .and_then(|n| t.bytes_for(n))
                    .ok_or_else(|| {
                        r.corrupt(format!(
                            "tensor '{name}' claims {n} {t} elements, more bytes than this machine can address"
                        ))
                    })? as u64,
                // Unknown size: checked when (if) someone tries to run it.
                None => 0,
            };
            if !rel.is_multiple_of(alignment) {
                return Err(r.corrupt(format!(
                    "tensor '{name}' starts at data offset {rel}, not a multiple of the alignment {alignment}"
                )));
            }
            let offset = data_offset.saturating_add(rel);
            if offset.saturating_add(n_bytes) > file_len {
                return Err(GgufError::Truncated {
                    path: path.to_path_buf(),
                    what: format!(
                        "the data of tensor '{name}' ({} {dims:?})",
                        ggml_type_name(ggml_type)
                    ),
                    offset,
                    need: n_bytes,
                    len: file_len,
                });
            }
            infos.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                n_bytes,
            });
        }
        // Two tensors may not share bytes (ggml refuses such files too): a tensor retyped in
        // the table with its offset unchanged would otherwise read its neighbour's data.
        let mut by_offset: Vec<&TensorInfo> = infos.iter().filter(|t| t.n_bytes > 0).collect();
        by_offset.sort_by_key(|t| t.offset);
        for w in by_offset.windows(2) {
            if w[0].offset + w[0].n_bytes > w[1].offset {
                return Err(r.corrupt(format!(
                    "tensors '{}' (bytes {}..{}) and '{}' (from byte {}) overlap",
                    w[0].name,
                    w[0].offset,
                    w[0].offset + w[0].n_bytes,
                    w[1].name,
                    w[1].offset
                )));
            }
        }
        Ok(Gguf {
            path: path.to_path_buf(),
            version,
            alignment,
            metadata,
            tensors: infos,
            data_offset,
            map,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor whose type we run.
    pub fn tensor_data(&self, t: &TensorInfo) -> Result<&[u8], GgufError> {
        if DType::from_ggml(t.ggml_type).is_none() {
            return Err(GgufError::UnsupportedType {
                path: self.path.clone(),
                tensor: t.name.clone(),
                ty: t.type_name(),
            });
        }
        Ok(&self.map[t.offset as usize..(t.offset + t.n_bytes) as usize])
    }

    /// The whole file, for hashing.
    pub fn bytes(&self) -> &[u8] {
        &self.map[..]
    }

    /// A shared handle on the map so tensors can outlive this struct's borrow.
    pub fn map(&self) -> Arc<Mmap> {
        Arc::clone(&self.map)
    }
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn corrupt(&self, what: String) -> GgufError {
        GgufError::Corrupt {
            path: self.path.to_path_buf(),
            what,
        }
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                path: self.path.to_path_buf(),
                what: what.to_string(),
                offset: self.pos as u64,
                need: n,
                len: self.buf.len() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        Ok(self
            .bytes(N as u64, what)?
            .try_into()
            .expect("length checked"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let at = self.pos;
        let b = self.bytes(len, what)?;
        // Vocabularies contain invalid UTF-8 pieces in some conversions; keep them readable.
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_string()),
            Err(_) if len < 64 => Ok(String::from_utf8_lossy(b).into_owned()),
            Err(e) => Err(self.corrupt(format!("{what} at byte {at} is not UTF-8 ({e})"))),
        }
    }

    fn value(&mut self, ty: u32, key: &str, at: u64, depth: u32) -> Result<Value, GgufError> {
        let what = format!("the value of metadata '{key}'");
        Ok(match ty {
            0 => Value::U8(self.array::<1>(&what)?[0]),
            1 => Value::I8(self.array::<1>(&what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            5 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => Value::Bool(self.array::<1>(&what)?[0] != 0),
            8 => Value::String(self.string(&what)?),
            9 if depth == 0 => {
                let ety = self.u32(&what)?;
                let n = self.u64(&what)?;
                if n > self.remaining() {
                    return Err(GgufError::Truncated {
                        path: self.path.to_path_buf(),
                        what: format!("the {n} elements of array '{key}'"),
                        offset: self.pos as u64,
                        need: n,
                        len: self.buf.len() as u64,
                    });
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(ety, key, at, depth + 1)?);
                }
                Value::Array(ety, items)
            }
            10 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            11 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            _ => {
                return Err(GgufError::BadValueType {
                    path: self.path.to_path_buf(),
                    key: key.to_string(),
                    offset: at,
                    ty,
                })
            }
        })
    }
}

/// A tensor to be written: GGML-order dims and already-encoded bytes.
pub struct TensorOut {
    pub name: String,
    pub dims: Vec<u64>,
    pub dtype: DType,
    pub data: Vec<u8>,
}

/// A tensor to write under a raw GGML type id, for types [`DType`] does not cover (the K-quant
/// mixes written by the engine's `quantize`).
pub struct RawTensorOut {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub data: Vec<u8>,
}

/// Writes a GGUF v3 file. Metadata order is kept as given, so a converted file reads like its source.
pub fn write(path: &Path, metadata: &[(String, Value)], tensors: &[TensorOut]) -> io::Result<()> {
    let views: Vec<(&str, &[u64], u32, &[u8])> = tensors
        .iter()
        .map(|t| (t.name.as_str(), &t.dims[..], t.dtype.ggml_id(), &t.data[..]))
        .collect();
    write_views(path, metadata, &views)
}

/// [`write`] for tensors given by GGML type id.
pub fn write_raw(
    path: &Path,
    metadata: &[(String, Value)],
    tensors: &[RawTensorOut],
) -> io::Result<()> {
    let views: Vec<(&str, &[u64], u32, &[u8])> = tensors
        .iter()
        .map(|t| (t.name.as_str(), &t.dims[..], t.ggml_type, &t.data[..]))
        .collect();
    write_views(path, metadata, &views)
}

fn write_views(
    path: &Path,
    metadata: &[(String, Value)],
    tensors: &[(&str, &[u64], u32, &[u8])],
) -> io::Result<()> {
    let alignment = metadata
        .iter()
        .find(|(k, _)| k == "general.alignment")
        .and_then(|(_, v)| v.as_u64())
        .unwrap_or(DEFAULT_ALIGNMENT);
    let mut head = Vec::new();
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_string(&mut head, k);
        head.extend_from_slice(&v.type_id().to_le_bytes());
        put_value(&mut head, v);
    }
    let mut rel = 0u64;
    for (name, dims, ty, data) in tensors {
        put_string(&mut head, name);
        head.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims.iter() {
            head.extend_from_slice(&d.to_le_bytes());
        }
        head.extend_from_slice(&ty.to_le_bytes());
        head.extend_from_slice(&rel.to_le_bytes());
        rel = align_up(rel + data.len() as u64, alignment);
    }
    let tmp = path.with_extension("gguf.partial");
    let mut f = io::BufWriter::new(File::create(&tmp)?);
    f.write_all(&head)?;
    let pad = |f: &mut io::BufWriter<File>, n: u64| f.write_all(&vec![0u8; n as usize]);
    pad(
        &mut f,
        align_up(head.len() as u64, alignment) - head.len() as u64,
    )?;
    for (_, _, _, data) in tensors {
        f.write_all(data)?;
        pad(
            &mut f,
            align_up(data.len() as u64, alignment) - data.len() as u64,
        )?;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_string(out, s),
        Value::Array(ety, items) => {
            out.extend_from_slice(&ety.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                put_value(out, it);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.gguf");
        let meta = vec![
            (
                "general.architecture".to_string(),
                Value::String("llama".into()),
            ),
            (
                "x.list".to_string(),
                Value::Array(
                    8,
                    vec![Value::String("a".into()), Value::String("b".into())],
                ),
            ),
            ("x.f".to_string(), Value::F32(1.5)),
        ];
        let t = TensorOut {
            name: "w".into(),
            dims: vec![4, 2],
            dtype: DType::F32,
            data: vec![7u8; 32],
        };
        write(&p, &meta, &[t]).unwrap();
        let g = Gguf::open(&p).unwrap();
        assert_eq!(g.metadata, meta);
        let info = g.tensor("w").unwrap();
        assert_eq!(info.dims, vec![4, 2]);
        assert_eq!(g.tensor_data(info).unwrap(), &[7u8; 32][..]);
        assert_eq!(info.offset % 32, 0);
    }
}
