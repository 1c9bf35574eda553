//! Host-side tensors: a dtype, a concrete shape and shared immutable bytes.
//!
//! The bytes are in the KServe v2 raw layout (little-endian elements; `BYTES`
//! elements each a 4-byte little-endian length then the bytes), so a tensor
//! read off the wire or handed to an executor needs no conversion. Storage is
//! a reference-counted [`Bytes`]: cloning, slicing along the first dimension
//! and reshaping share it.

use bytes::Bytes;
use std::fmt;
use std::str::FromStr;

/// Element type of a tensor: the KServe v2 / Triton data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `BOOL`, one byte per element.
    Bool,
    /// `UINT8`.
    Uint8,
    /// `UINT16`.
    Uint16,
    /// `UINT32`.
    Uint32,
    /// `UINT64`.
    Uint64,
    /// `INT8`.
    Int8,
    /// `INT16`.
    Int16,
    /// `INT32`.
    Int32,
    /// `INT64`.
    Int64,
    /// `FP16` (IEEE half, raw bits).
    Fp16,
    /// `BF16` (bfloat16, raw bits).
    Bf16,
    /// `FP32`.
    Fp32,
    /// `FP64`.
    Fp64,
    /// `BYTES`: variable-length byte strings.
    Bytes,
}

impl DataType {
    /// Every data type, in WIT order.
    pub const ALL: [DataType; 14] = [
        Self::Bool,
        Self::Uint8,
        Self::Uint16,
        Self::Uint32,
        Self::Uint64,
        Self::Int8,
        Self::Int16,
        Self::Int32,
        Self::Int64,
        Self::Fp16,
        Self::Bf16,
        Self::Fp32,
        Self::Fp64,
        Self::Bytes,
    ];

    /// The KServe v2 name (`FP32`, `INT64`, `BYTES`…).
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

    /// Bytes per element, or `None` for variable-length `BYTES`.
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

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DataType {
    type Err = TensorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| TensorError(format!("unknown data type `{}`", crate::clip(s))))
    }
}

/// A tensor that is malformed or used inconsistently; the message says how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TensorError(pub String);

fn err(msg: impl Into<String>) -> TensorError {
    TensorError(msg.into())
}

/// A tensor with concrete shape over shared, immutable KServe v2 raw bytes.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    dtype: DataType,
    shape: Vec<i64>,
    data: Bytes,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// The highest rank a tensor may have. Every tensor the host builds (from a
/// request, a guest or a model) is checked: a shape is a host allocation,
/// and a guest could otherwise make millions of dimensions cost the host
/// memory that no byte budget sees.
pub const MAX_RANK: usize = 16;

/// The number of elements of `shape`.
///
/// # Errors
/// When the rank is over [`MAX_RANK`], a dimension is negative or the product overflows.
pub fn element_count(shape: &[i64]) -> Result<usize, TensorError> {
    if shape.len() > MAX_RANK {
        return Err(err(format!(
            "a shape of rank {} is over the limit of {MAX_RANK}",
            shape.len()
        )));
    }
    shape.iter().try_fold(1usize, |acc, &d| {
        let d =
            usize::try_from(d).map_err(|_| err(format!("negative dimension {d} in {shape:?}")))?;
        acc.checked_mul(d)
            .ok_or_else(|| err(format!("shape {shape:?} is too large")))
    })
}

impl Tensor {
    /// A tensor of `dtype` and `shape` over raw KServe v2 bytes.
    ///
    /// # Errors
    /// When a dimension is negative, or the byte length (for `BYTES`, the
    /// length-prefixed elements) does not match the shape.
    pub fn new(dtype: DataType, shape: Vec<i64>, data: Bytes) -> Result<Self, TensorError> {
        let count = element_count(&shape)?;
        match dtype.element_size() {
            Some(size) => {
                let expected = count
                    .checked_mul(size)
                    .ok_or_else(|| err(format!("shape {shape:?} is too large")))?;
                if data.len() != expected {
                    return Err(err(format!(
                        "{dtype} tensor of shape {shape:?} needs {expected} bytes, got {}",
                        data.len()
                    )));
                }
            }
            None => {
                let found = ByteElements::new(&data).try_fold(0usize, |n, r| r.map(|_| n + 1))?;
                if found != count {
                    return Err(err(format!(
                        "BYTES tensor of shape {shape:?} needs {count} elements, got {found}"
                    )));
                }
            }
        }
        Ok(Self { dtype, shape, data })
    }

    /// A `BYTES` tensor of `shape` holding `items`.
    ///
    /// # Errors
    /// When the number of items is not the product of `shape`.
    pub fn from_byte_strings<I, B>(shape: Vec<i64>, items: I) -> Result<Self, TensorError>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut raw = Vec::new();
        for item in items {
            let item = item.as_ref();
            let len = u32::try_from(item.len()).map_err(|_| err("BYTES element over 4 GiB"))?;
            raw.extend_from_slice(&len.to_le_bytes());
            raw.extend_from_slice(item);
        }
        Self::new(DataType::Bytes, shape, Bytes::from(raw))
    }

    /// The element type.
    pub fn dtype(&self) -> DataType {
        self.dtype
    }

    /// The dimensions.
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    /// The raw KServe v2 bytes (shared; cloning is cheap).
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The size of the raw bytes.
    pub fn byte_size(&self) -> usize {
        self.data.len()
    }

    /// The number of elements.
    pub fn num_elements(&self) -> usize {
        self.shape.iter().map(|&d| d as usize).product()
    }

    /// The elements of a `BYTES` tensor, borrowed.
    ///
    /// # Errors
    /// When the tensor is not `BYTES`.
    pub fn byte_strings(&self) -> Result<Vec<&[u8]>, TensorError> {
        self.expect(DataType::Bytes)?;
        ByteElements::new(&self.data)
            .map(|r| r.map(|range| &self.data[range]))
            .collect()
    }

    /// Rows `[start, end)` along the first dimension, sharing storage.
    ///
    /// # Errors
    /// For a scalar or a range outside the first dimension.
    pub fn slice_rows(&self, start: usize, end: usize) -> Result<Tensor, TensorError> {
        let rows = *self
            .shape
            .first()
            .ok_or_else(|| err("cannot slice a scalar tensor"))? as usize;
        if start > end || end > rows {
            return Err(err(format!(
                "row range {start}..{end} is outside a first dimension of {rows}"
            )));
        }
        let per_row = element_count(&self.shape[1..])?;
        let mut shape = self.shape.clone();
        shape[0] = (end - start) as i64;
        let data = match self.dtype.element_size() {
            Some(size) => self
                .data
                .slice(start * per_row * size..end * per_row * size),
            None => {
                let from = bytes_boundary(&self.data, start * per_row)?;
                let to = bytes_boundary(&self.data, end * per_row)?;
                self.data.slice(from..to)
            }
        };
        Ok(Tensor {
            dtype: self.dtype,
            shape,
            data,
        })
    }

    /// The same elements under `shape`, sharing storage.
    ///
    /// # Errors
    /// When the element counts differ or a dimension is negative.
    pub fn reshape(&self, shape: Vec<i64>) -> Result<Tensor, TensorError> {
        let count = element_count(&shape)?;
        if count != self.num_elements() {
            return Err(err(format!(
                "cannot reshape {:?} ({} elements) to {shape:?} ({count} elements)",
                self.shape,
                self.num_elements()
            )));
        }
        Ok(Tensor {
            dtype: self.dtype,
            shape,
            data: self.data.clone(),
        })
    }

    fn expect(&self, dtype: DataType) -> Result<(), TensorError> {
        if self.dtype == dtype {
            Ok(())
        } else {
            Err(err(format!(
                "expected a {dtype} tensor, got {}",
                self.dtype
            )))
        }
    }
}

macro_rules! typed {
    ($( $from:ident, $to:ident, $ty:ty, $dtype:ident; )*) => {
        impl Tensor {
            $(
                #[doc = concat!("A `", stringify!($dtype), "` tensor of `shape` from `values`.")]
                ///
                /// # Errors
                /// When the number of values is not the product of `shape`.
                pub fn $from(shape: Vec<i64>, values: &[$ty]) -> Result<Self, TensorError> {
                    Self::new(DataType::$dtype, shape, pack(values.to_vec()))
                }

                #[doc = concat!("The elements of a `", stringify!($dtype), "` tensor, copied.")]
                ///
                /// # Errors
                /// When the tensor has another dtype.
                pub fn $to(&self) -> Result<Vec<$ty>, TensorError> {
                    self.expect(DataType::$dtype)?;
                    Ok(unpack(&self.data))
                }
            )*
        }
    };
}

typed! {
    from_u8, to_u8, u8, Uint8;
    from_u16, to_u16, u16, Uint16;
    from_u32, to_u32, u32, Uint32;
    from_u64, to_u64, u64, Uint64;
    from_i8, to_i8, i8, Int8;
    from_i16, to_i16, i16, Int16;
    from_i32, to_i32, i32, Int32;
    from_i64, to_i64, i64, Int64;
    from_f32, to_f32, f32, Fp32;
    from_f64, to_f64, f64, Fp64;
}

// Tensors hold little-endian bytes; on a little-endian host typed elements
// and their bytes are the same memory, so conversions are moves or memcpys.
#[cfg(not(target_endian = "little"))]
compile_error!("conduit-types assumes a little-endian host");

/// Typed elements as tensor bytes, without copying: the `Vec` becomes the storage.
pub fn pack<T: bytemuck::Pod + Send + Sync>(values: Vec<T>) -> Bytes {
    struct Storage<T>(Vec<T>);
    impl<T: bytemuck::Pod> AsRef<[u8]> for Storage<T> {
        fn as_ref(&self) -> &[u8] {
            bytemuck::cast_slice(&self.0)
        }
    }
    Bytes::from_owner(Storage(values))
}

/// Typed elements of tensor bytes (one memcpy; handles any alignment).
pub fn unpack<T: bytemuck::Pod>(raw: &[u8]) -> Vec<T> {
    bytemuck::pod_collect_to_vec(raw)
}

/// The content ranges of the elements of a raw `BYTES` buffer, in order,
/// checked as they are walked (nothing is allocated).
struct ByteElements<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ByteElements<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
}

impl Iterator for ByteElements<'_> {
    type Item = Result<std::ops::Range<usize>, TensorError>;

    fn next(&mut self) -> Option<Self::Item> {
        let pos = self.pos;
        if pos >= self.data.len() {
            return None;
        }
        let Some(header) = self.data.get(pos..pos + 4) else {
            self.pos = self.data.len();
            return Some(Err(err(format!(
                "BYTES element at offset {pos} has a truncated length"
            ))));
        };
        let len = u32::from_le_bytes(header.try_into().expect("4 bytes")) as usize;
        let start = pos + 4;
        match start.checked_add(len).filter(|&e| e <= self.data.len()) {
            Some(end) => {
                self.pos = end;
                Some(Ok(start..end))
            }
            None => {
                self.pos = self.data.len();
                Some(Err(err(format!(
                    "BYTES element at offset {pos} overruns the buffer"
                ))))
            }
        }
    }
}

/// The byte offset where element `index` of a raw `BYTES` buffer starts
/// (the buffer's length when `index` is the element count).
fn bytes_boundary(data: &[u8], index: usize) -> Result<usize, TensorError> {
    let mut pos = 0;
    for range in ByteElements::new(data).take(index) {
        pos = range?.end;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_size_tensors_validate_their_length() {
        assert!(Tensor::new(DataType::Fp32, vec![2, 3], Bytes::from(vec![0u8; 24])).is_ok());
        let e = Tensor::new(DataType::Fp32, vec![2, 3], Bytes::from(vec![0u8; 20])).unwrap_err();
        assert!(e.0.contains("needs 24 bytes, got 20"), "{e}");
        assert!(Tensor::new(DataType::Int64, vec![-1], Bytes::new()).is_err());
    }

    #[test]
    fn slicing_shares_storage_and_keeps_rows() {
        let t = Tensor::from_f32(vec![3, 2], &[1., 2., 3., 4., 5., 6.]).unwrap();
        let s = t.slice_rows(1, 3).unwrap();
        assert_eq!(s.shape(), &[2, 2]);
        assert_eq!(s.to_f32().unwrap(), vec![3., 4., 5., 6.]);
        assert_eq!(s.data().as_ptr(), t.data()[8..].as_ptr());
        assert!(t.slice_rows(2, 4).is_err());
    }

    #[test]
    fn bytes_tensors_slice_by_element() {
        let t = Tensor::from_byte_strings(vec![3], ["a", "", "ccc"]).unwrap();
        assert_eq!(t.byte_strings().unwrap(), vec![&b"a"[..], b"", b"ccc"]);
        let s = t.slice_rows(1, 3).unwrap();
        assert_eq!(s.byte_strings().unwrap(), vec![&b""[..], b"ccc"]);
        let empty = t.slice_rows(3, 3).unwrap();
        assert_eq!(empty.num_elements(), 0);
        assert!(empty.byte_strings().unwrap().is_empty());
        let bad = Tensor::new(
            DataType::Bytes,
            vec![1],
            Bytes::from_static(&[5, 0, 0, 0, 1]),
        );
        assert!(bad.unwrap_err().0.contains("overruns"));
    }

    #[test]
    fn reshape_checks_element_count() {
        let t = Tensor::from_i64(vec![2, 3], &[0; 6]).unwrap();
        assert_eq!(t.reshape(vec![3, 2]).unwrap().shape(), &[3, 2]);
        assert!(t.reshape(vec![4]).is_err());
    }
}
