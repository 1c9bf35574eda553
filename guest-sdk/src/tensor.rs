//! Tensors in a component: handles the host holds, or data the component made.
//!
//! Under `conduit:compute@0.2` an input arrives with its dtype and shape, so
//! [`Tensor::dtype`] and [`Tensor::shape`] cost no host call; reading its
//! elements is one call. A tensor the component makes ([`Tensor::from_f32`]…)
//! stays in the component until it is returned (as data, with the call's
//! result) or passed to a model: making one costs no host call at all.

use crate::Error;
use crate::bindings::conduit::compute::types as wit;

pub use wit::{Dtype as DataType, TensorData};

impl DataType {
    /// The KServe v2 name of this type (`FP32`, `INT64`, `BYTES`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Uint8 => "UINT8",
            Self::Uint16 => "UINT16",
            Self::Uint32 => "UINT32",
            Self::Uint64 => "UINT64",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Fp16 => "FP16",
            Self::Bf16 => "BF16",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
            Self::Bytes => "BYTES",
        }
    }

    /// Bytes per element; `None` for `BYTES` (variable length).
    pub fn element_size(self) -> Option<usize> {
        match self {
            Self::Bool | Self::Uint8 | Self::Int8 => Some(1),
            Self::Uint16 | Self::Int16 | Self::Fp16 | Self::Bf16 => Some(2),
            Self::Uint32 | Self::Int32 | Self::Fp32 => Some(4),
            Self::Uint64 | Self::Int64 | Self::Fp64 => Some(8),
            Self::Bytes => None,
        }
    }
}

impl TensorData {
    /// The data type this case carries.
    pub fn dtype(&self) -> DataType {
        match self {
            Self::Bool(_) => DataType::Bool,
            Self::Uint8(_) => DataType::Uint8,
            Self::Uint16(_) => DataType::Uint16,
            Self::Uint32(_) => DataType::Uint32,
            Self::Uint64(_) => DataType::Uint64,
            Self::Int8(_) => DataType::Int8,
            Self::Int16(_) => DataType::Int16,
            Self::Int32(_) => DataType::Int32,
            Self::Int64(_) => DataType::Int64,
            Self::Fp16(_) => DataType::Fp16,
            Self::Bf16(_) => DataType::Bf16,
            Self::Fp32(_) => DataType::Fp32,
            Self::Fp64(_) => DataType::Fp64,
            Self::Bytes(_) => DataType::Bytes,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::Bool(v) => v.len(),
            Self::Uint8(v) => v.len(),
            Self::Uint16(v) | Self::Fp16(v) | Self::Bf16(v) => v.len(),
            Self::Uint32(v) => v.len(),
            Self::Uint64(v) => v.len(),
            Self::Int8(v) => v.len(),
            Self::Int16(v) => v.len(),
            Self::Int32(v) => v.len(),
            Self::Int64(v) => v.len(),
            Self::Fp32(v) => v.len(),
            Self::Fp64(v) => v.len(),
            Self::Bytes(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tensor: held by the host (an input, a model's output, a slice of one),
/// or made by this component and not yet returned.
///
/// Passing a host-held tensor on (as an output, or to [`crate::infer`])
/// moves a handle, never the data.
#[derive(Debug)]
pub struct Tensor {
    dtype: DataType,
    shape: Vec<i64>,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// Held by the host.
    Host(wit::Tensor),
    /// Made here, typed.
    Dense(TensorData),
    /// Made here, raw KServe v2 bytes.
    Raw(Vec<u8>),
}

macro_rules! typed {
    ($( $ctor:ident, $read:ident, $case:ident, $ty:ty, $kserve:literal; )*) => {
        impl Tensor {
            $(
                #[doc = concat!("A `", $kserve, "` tensor of `shape` from `data` (row-major), made in the component.")]
                ///
                /// # Errors
                /// [`Error::InvalidInput`] when `data.len()` is not the product of `shape`.
                pub fn $ctor(shape: &[i64], data: Vec<$ty>) -> Result<Tensor, Error> {
                    Tensor::create(shape, TensorData::$case(data))
                }

                #[doc = concat!("The elements of a `", $kserve, "` tensor (one host call for a host-held tensor).")]
                ///
                /// # Errors
                /// [`Error::InvalidInput`] naming both types when the tensor has another dtype.
                pub fn $read(&self) -> Result<Vec<$ty>, Error> {
                    match self.read() {
                        TensorData::$case(v) => Ok(v),
                        other => Err(mismatch($kserve, other.dtype())),
                    }
                }
            )*
        }
    };
}

typed! {
    from_bool, to_bool, Bool, bool, "BOOL";
    from_u8, to_u8, Uint8, u8, "UINT8";
    from_u16, to_u16, Uint16, u16, "UINT16";
    from_u32, to_u32, Uint32, u32, "UINT32";
    from_u64, to_u64, Uint64, u64, "UINT64";
    from_i8, to_i8, Int8, i8, "INT8";
    from_i16, to_i16, Int16, i16, "INT16";
    from_i32, to_i32, Int32, i32, "INT32";
    from_i64, to_i64, Int64, i64, "INT64";
    from_f32, to_f32, Fp32, f32, "FP32";
    from_f64, to_f64, Fp64, f64, "FP64";
}

impl Tensor {
    /// A host-held tensor as the host described it.
    pub(crate) fn from_host(dtype: DataType, shape: Vec<i64>, handle: wit::Tensor) -> Self {
        Self {
            dtype,
            shape,
            body: Body::Host(handle),
        }
    }

    /// What crosses back to the host: the handle, or the data.
    pub(crate) fn into_wit(self) -> wit::TensorValue {
        match self.body {
            Body::Host(handle) => wit::TensorValue::Handle(handle),
            Body::Dense(data) => wit::TensorValue::Dense(wit::Dense {
                shape: self.shape,
                data,
            }),
            Body::Raw(raw) => wit::TensorValue::Raw(wit::RawTensor {
                dtype: self.dtype,
                shape: self.shape,
                raw,
            }),
        }
    }

    /// A tensor of `shape` holding `data` (its case selects the dtype).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the element count is not the product of
    /// `shape`, or a dimension is negative.
    pub fn create(shape: &[i64], data: TensorData) -> Result<Tensor, Error> {
        let count = element_count(shape)?;
        if data.len() != count {
            return Err(Error::invalid_input(format!(
                "{} tensor of shape {shape:?} needs {count} elements, got {}",
                data.dtype().as_str(),
                data.len()
            )));
        }
        Ok(Self {
            dtype: data.dtype(),
            shape: shape.to_vec(),
            body: Body::Dense(data),
        })
    }

    /// A tensor of `dtype` and `shape` over raw little-endian bytes in the
    /// KServe v2 layout (for `BYTES`, a 4-byte little-endian length before
    /// each element).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the bytes do not match `shape`.
    pub fn from_raw(dtype: DataType, shape: &[i64], raw: &[u8]) -> Result<Tensor, Error> {
        Self::from_raw_vec(dtype, shape, raw.to_vec())
    }

    fn from_raw_vec(dtype: DataType, shape: &[i64], raw: Vec<u8>) -> Result<Tensor, Error> {
        let count = element_count(shape)?;
        let fits = match dtype.element_size() {
            Some(size) => count.checked_mul(size) == Some(raw.len()),
            None => split_bytes(&raw).map(|items| items.len()) == Some(count),
        };
        if !fits {
            return Err(Error::invalid_input(format!(
                "{} bytes do not hold a {} tensor of shape {shape:?}",
                raw.len(),
                dtype.as_str()
            )));
        }
        Ok(Self {
            dtype,
            shape: shape.to_vec(),
            body: Body::Raw(raw),
        })
    }

    /// The element type (no host call).
    pub fn dtype(&self) -> DataType {
        self.dtype
    }

    /// The dimensions (no host call).
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    /// The number of elements (the product of the shape).
    pub fn num_elements(&self) -> usize {
        self.shape.iter().map(|&d| d.max(0) as usize).product()
    }

    /// The size of its raw KServe v2 form, in bytes (a host call only for a
    /// host-held `BYTES` tensor).
    pub fn byte_size(&self) -> u64 {
        if let Some(size) = self.dtype.element_size() {
            return (self.num_elements() * size) as u64;
        }
        match &self.body {
            Body::Host(h) => h.byte_size(),
            Body::Raw(raw) => raw.len() as u64,
            Body::Dense(TensorData::Bytes(items)) => items.iter().map(|i| 4 + i.len() as u64).sum(),
            Body::Dense(_) => 0,
        }
    }

    /// All elements, typed (one host call for a host-held tensor).
    pub fn read(&self) -> TensorData {
        match &self.body {
            Body::Host(h) => h.read().data,
            Body::Dense(d) => d.clone(),
            Body::Raw(raw) => decode(self.dtype, raw),
        }
    }

    /// `len` raw bytes from byte `offset` of its KServe v2 form (one host
    /// call for a host-held tensor).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the range is outside the tensor.
    pub fn read_raw(&self, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
        let local = match &self.body {
            Body::Host(h) => return h.read_raw(offset, len).map_err(Error::from),
            Body::Raw(raw) => std::borrow::Cow::Borrowed(raw.as_slice()),
            Body::Dense(d) => std::borrow::Cow::Owned(encode(d)),
        };
        usize::try_from(offset)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(o, l)| local.get(o..o.checked_add(l)?))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "byte range {offset}+{len} is outside a tensor of {} bytes",
                    local.len()
                ))
            })
    }

    /// Rows `[start, end)` along the first dimension. A host-held tensor's
    /// slice shares its storage (one host call); a local one is copied.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a scalar or a range outside the first dimension.
    pub fn slice(&self, start: u64, end: u64) -> Result<Tensor, Error> {
        let Some(&rows) = self.shape.first() else {
            return Err(Error::invalid_input("cannot slice a scalar tensor"));
        };
        if start > end || end > rows.max(0) as u64 {
            return Err(Error::invalid_input(format!(
                "row range {start}..{end} is outside a first dimension of {rows}"
            )));
        }
        let mut shape = self.shape.clone();
        shape[0] = (end - start) as i64;
        if let Body::Host(h) = &self.body {
            let handle = h.slice(start, end).map_err(Error::from)?;
            return Ok(Self::from_host(self.dtype, shape, handle));
        }
        let per_row: usize = self.shape[1..].iter().map(|&d| d.max(0) as usize).product();
        let (lo, hi) = (start as usize * per_row, end as usize * per_row);
        let raw = match &self.body {
            Body::Raw(raw) => raw.clone(),
            _ => self.read_raw(0, self.byte_size())?,
        };
        let rows = match self.dtype.element_size() {
            Some(size) => raw[lo * size..hi * size].to_vec(),
            None => {
                let items = split_bytes(&raw).unwrap_or_default();
                items[lo..hi]
                    .iter()
                    .flat_map(|i| {
                        (i.len() as u32)
                            .to_le_bytes()
                            .into_iter()
                            .chain(i.iter().copied())
                    })
                    .collect()
            }
        };
        Self::from_raw_vec(self.dtype, &shape, rows)
    }

    /// The same elements under another shape. A host-held tensor's reshape
    /// shares its storage (one host call); a local one is copied.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the element counts differ.
    pub fn reshape(&self, shape: &[i64]) -> Result<Tensor, Error> {
        let body = match &self.body {
            // The host checks (and bounds) the shape.
            Body::Host(h) => Body::Host(h.reshape(shape).map_err(Error::from)?),
            local => {
                let count = element_count(shape)?;
                if count != self.num_elements() {
                    return Err(Error::invalid_input(format!(
                        "cannot reshape {:?} ({} elements) to a shape of {count} elements",
                        self.shape,
                        self.num_elements()
                    )));
                }
                match local {
                    Body::Dense(d) => Body::Dense(d.clone()),
                    Body::Raw(raw) => Body::Raw(raw.clone()),
                    Body::Host(_) => unreachable!("matched above"),
                }
            }
        };
        Ok(Self {
            dtype: self.dtype,
            shape: shape.to_vec(),
            body,
        })
    }

    /// A second tensor with the same elements (to output one tensor twice).
    /// A host-held tensor shares its storage (one host call); a local one is copied.
    pub fn share(&self) -> Tensor {
        let body = match &self.body {
            Body::Host(h) => Body::Host(h.share()),
            Body::Dense(d) => Body::Dense(d.clone()),
            Body::Raw(raw) => Body::Raw(raw.clone()),
        };
        Self {
            dtype: self.dtype,
            shape: self.shape.clone(),
            body,
        }
    }
}

// `BYTES` tensors cross the boundary in their raw KServe v2 layout (one list
// of bytes) rather than as a list of lists: lowering a list of lists costs the
// host a call into the component's allocator per element (measured: 32
// strings read and written 8.7 µs as lists, 3.2 µs raw).
impl Tensor {
    /// A `BYTES` tensor of `shape` from byte strings (row-major).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the number of items is not the product of
    /// `shape`, or an item is 4 GiB or larger.
    pub fn from_byte_strings<B: AsRef<[u8]>>(
        shape: &[i64],
        items: impl IntoIterator<Item = B>,
    ) -> Result<Tensor, Error> {
        let mut raw = Vec::new();
        for item in items {
            let item = item.as_ref();
            let len = u32::try_from(item.len())
                .map_err(|_| Error::invalid_input("a BYTES element must be under 4 GiB"))?;
            raw.extend_from_slice(&len.to_le_bytes());
            raw.extend_from_slice(item);
        }
        Self::from_raw_vec(DataType::Bytes, shape, raw)
    }

    /// The elements of a `BYTES` tensor (one host call for a host-held tensor).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming both types when the tensor has another dtype.
    pub fn to_byte_strings(&self) -> Result<Vec<Vec<u8>>, Error> {
        if self.dtype != DataType::Bytes {
            return Err(mismatch("BYTES", self.dtype));
        }
        let raw = match &self.body {
            Body::Dense(TensorData::Bytes(items)) => return Ok(items.clone()),
            Body::Host(h) => h.read_all_raw(),
            _ => self.read_raw(0, self.byte_size())?,
        };
        split_bytes(&raw)
            .map(|items| items.into_iter().map(<[u8]>::to_vec).collect())
            .ok_or_else(|| Error::internal("host sent a malformed BYTES tensor"))
    }

    /// A `BYTES` tensor of `shape` holding UTF-8 strings.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the number of strings is not the product of `shape`.
    pub fn from_strings<S: AsRef<str>>(
        shape: &[i64],
        strings: impl IntoIterator<Item = S>,
    ) -> Result<Tensor, Error> {
        let strings: Vec<S> = strings.into_iter().collect();
        Self::from_byte_strings(shape, strings.iter().map(|s| s.as_ref().as_bytes()))
    }

    /// Reads a `BYTES` tensor as UTF-8 strings.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the tensor is not `BYTES` or an element is not UTF-8.
    pub fn to_strings(&self) -> Result<Vec<String>, Error> {
        self.to_byte_strings()?
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                String::from_utf8(b)
                    .map_err(|_| Error::invalid_input(format!("element {i} is not valid UTF-8")))
            })
            .collect()
    }
}

fn mismatch(expected: &str, got: DataType) -> Error {
    Error::invalid_input(format!(
        "expected a {expected} tensor, got {}",
        got.as_str()
    ))
}

/// The product of `shape`, refusing negative dimensions and overflow.
fn element_count(shape: &[i64]) -> Result<usize, Error> {
    shape.iter().try_fold(1usize, |acc, &d| {
        let d = usize::try_from(d)
            .map_err(|_| Error::invalid_input(format!("negative dimension {d} in {shape:?}")))?;
        acc.checked_mul(d)
            .ok_or_else(|| Error::invalid_input(format!("shape {shape:?} is too large")))
    })
}

/// The elements of a raw `BYTES` buffer, or `None` when it is malformed.
fn split_bytes(mut raw: &[u8]) -> Option<Vec<&[u8]>> {
    let mut items = Vec::new();
    while !raw.is_empty() {
        let (len, tail) = raw.split_first_chunk::<4>()?;
        let (item, tail) = tail.split_at_checked(u32::from_le_bytes(*len) as usize)?;
        items.push(item);
        raw = tail;
    }
    Some(items)
}

/// Little-endian elements of `raw` as `T`s.
fn le<T, const N: usize>(raw: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| from(c.try_into().expect("chunks_exact yields N bytes")))
        .collect()
}

/// Typed elements of a raw KServe v2 buffer known to fit its dtype.
fn decode(dtype: DataType, raw: &[u8]) -> TensorData {
    match dtype {
        DataType::Bool => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
        DataType::Uint8 => TensorData::Uint8(raw.to_vec()),
        DataType::Int8 => TensorData::Int8(le(raw, i8::from_le_bytes)),
        DataType::Uint16 => TensorData::Uint16(le(raw, u16::from_le_bytes)),
        DataType::Fp16 => TensorData::Fp16(le(raw, u16::from_le_bytes)),
        DataType::Bf16 => TensorData::Bf16(le(raw, u16::from_le_bytes)),
        DataType::Int16 => TensorData::Int16(le(raw, i16::from_le_bytes)),
        DataType::Uint32 => TensorData::Uint32(le(raw, u32::from_le_bytes)),
        DataType::Int32 => TensorData::Int32(le(raw, i32::from_le_bytes)),
        DataType::Fp32 => TensorData::Fp32(le(raw, f32::from_le_bytes)),
        DataType::Uint64 => TensorData::Uint64(le(raw, u64::from_le_bytes)),
        DataType::Int64 => TensorData::Int64(le(raw, i64::from_le_bytes)),
        DataType::Fp64 => TensorData::Fp64(le(raw, f64::from_le_bytes)),
        DataType::Bytes => TensorData::Bytes(
            split_bytes(raw)
                .unwrap_or_default()
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect(),
        ),
    }
}

/// The raw KServe v2 form of typed elements.
fn encode(data: &TensorData) -> Vec<u8> {
    fn flat<T: Copy, const N: usize>(v: &[T], to: fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| to(x)).collect()
    }
    match data {
        TensorData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
        TensorData::Uint8(v) => v.clone(),
        TensorData::Int8(v) => flat(v, i8::to_le_bytes),
        TensorData::Uint16(v) | TensorData::Fp16(v) | TensorData::Bf16(v) => {
            flat(v, u16::to_le_bytes)
        }
        TensorData::Int16(v) => flat(v, i16::to_le_bytes),
        TensorData::Uint32(v) => flat(v, u32::to_le_bytes),
        TensorData::Int32(v) => flat(v, i32::to_le_bytes),
        TensorData::Fp32(v) => flat(v, f32::to_le_bytes),
        TensorData::Uint64(v) => flat(v, u64::to_le_bytes),
        TensorData::Int64(v) => flat(v, i64::to_le_bytes),
        TensorData::Fp64(v) => flat(v, f64::to_le_bytes),
        TensorData::Bytes(items) => items
            .iter()
            .flat_map(|i| {
                (i.len() as u32)
                    .to_le_bytes()
                    .into_iter()
                    .chain(i.iter().copied())
            })
            .collect(),
    }
}
