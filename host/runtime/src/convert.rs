//! Conversions between the host's types and the generated WIT types, one
//! module per WIT version (`v1`, `v2`): the two versions' `types` share every
//! definition these functions touch, so one text serves both.

macro_rules! conversions {
    ($version:ident) => {
        /// Conversions for this version's generated types.
        pub(crate) mod $version {
            use crate::GuestError;
            use crate::bindings::$version::conduit::compute::types::{self as wit, TensorData};
            use bytes::Bytes;
            use conduit_types::{DataType, Tensor, TensorError, pack, unpack};

            pub(crate) fn to_wit_dtype(d: DataType) -> wit::Dtype {
                use wit::Dtype as W;
                match d {
                    DataType::Bool => W::Bool,
                    DataType::Uint8 => W::Uint8,
                    DataType::Uint16 => W::Uint16,
                    DataType::Uint32 => W::Uint32,
                    DataType::Uint64 => W::Uint64,
                    DataType::Int8 => W::Int8,
                    DataType::Int16 => W::Int16,
                    DataType::Int32 => W::Int32,
                    DataType::Int64 => W::Int64,
                    DataType::Fp16 => W::Fp16,
                    DataType::Bf16 => W::Bf16,
                    DataType::Fp32 => W::Fp32,
                    DataType::Fp64 => W::Fp64,
                    DataType::Bytes => W::Bytes,
                }
            }

            pub(crate) fn from_wit_dtype(d: wit::Dtype) -> DataType {
                use wit::Dtype as W;
                match d {
                    W::Bool => DataType::Bool,
                    W::Uint8 => DataType::Uint8,
                    W::Uint16 => DataType::Uint16,
                    W::Uint32 => DataType::Uint32,
                    W::Uint64 => DataType::Uint64,
                    W::Int8 => DataType::Int8,
                    W::Int16 => DataType::Int16,
                    W::Int32 => DataType::Int32,
                    W::Int64 => DataType::Int64,
                    W::Fp16 => DataType::Fp16,
                    W::Bf16 => DataType::Bf16,
                    W::Fp32 => DataType::Fp32,
                    W::Fp64 => DataType::Fp64,
                    W::Bytes => DataType::Bytes,
                }
            }

            pub(crate) fn to_wit_error(e: GuestError) -> wit::Error {
                match e {
                    GuestError::InvalidInput(m) => wit::Error::InvalidInput(m),
                    GuestError::Unsupported(m) => wit::Error::Unsupported(m),
                    GuestError::NotFound(m) => wit::Error::NotFound(m),
                    GuestError::ResourceExhausted(m) => wit::Error::ResourceExhausted(m),
                    GuestError::Internal(m) => wit::Error::Internal(m),
                }
            }

            pub(crate) fn from_wit_error(e: wit::Error) -> GuestError {
                match e {
                    wit::Error::InvalidInput(m) => GuestError::InvalidInput(m),
                    wit::Error::Unsupported(m) => GuestError::Unsupported(m),
                    wit::Error::NotFound(m) => GuestError::NotFound(m),
                    wit::Error::ResourceExhausted(m) => GuestError::ResourceExhausted(m),
                    wit::Error::Internal(m) => GuestError::Internal(m),
                }
            }

            pub(crate) fn invalid(e: TensorError) -> wit::Error {
                wit::Error::InvalidInput(e.0)
            }

            pub(crate) fn tensor_from_data(
                shape: Vec<i64>,
                data: TensorData,
            ) -> Result<Tensor, TensorError> {
                let (dtype, raw) = match data {
                    TensorData::Bool(v) => (
                        DataType::Bool,
                        Bytes::from(v.into_iter().map(u8::from).collect::<Vec<_>>()),
                    ),
                    TensorData::Uint8(v) => (DataType::Uint8, Bytes::from(v)),
                    TensorData::Uint16(v) => (DataType::Uint16, pack(v)),
                    TensorData::Uint32(v) => (DataType::Uint32, pack(v)),
                    TensorData::Uint64(v) => (DataType::Uint64, pack(v)),
                    TensorData::Int8(v) => (DataType::Int8, pack(v)),
                    TensorData::Int16(v) => (DataType::Int16, pack(v)),
                    TensorData::Int32(v) => (DataType::Int32, pack(v)),
                    TensorData::Int64(v) => (DataType::Int64, pack(v)),
                    TensorData::Fp16(v) => (DataType::Fp16, pack(v)),
                    TensorData::Bf16(v) => (DataType::Bf16, pack(v)),
                    TensorData::Fp32(v) => (DataType::Fp32, pack(v)),
                    TensorData::Fp64(v) => (DataType::Fp64, pack(v)),
                    TensorData::Bytes(v) => return Tensor::from_byte_strings(shape, v),
                };
                Tensor::new(dtype, shape, raw)
            }

            pub(crate) fn tensor_to_data(t: &Tensor) -> TensorData {
                let raw = t.data();
                match t.dtype() {
                    DataType::Bool => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
                    DataType::Uint8 => TensorData::Uint8(raw.to_vec()),
                    DataType::Uint16 => TensorData::Uint16(unpack(raw)),
                    DataType::Uint32 => TensorData::Uint32(unpack(raw)),
                    DataType::Uint64 => TensorData::Uint64(unpack(raw)),
                    DataType::Int8 => TensorData::Int8(unpack(raw)),
                    DataType::Int16 => TensorData::Int16(unpack(raw)),
                    DataType::Int32 => TensorData::Int32(unpack(raw)),
                    DataType::Int64 => TensorData::Int64(unpack(raw)),
                    DataType::Fp16 => TensorData::Fp16(unpack(raw)),
                    DataType::Bf16 => TensorData::Bf16(unpack(raw)),
                    DataType::Fp32 => TensorData::Fp32(unpack(raw)),
                    DataType::Fp64 => TensorData::Fp64(unpack(raw)),
                    DataType::Bytes => TensorData::Bytes(
                        t.byte_strings()
                            .expect("BYTES tensors are validated at construction")
                            .into_iter()
                            .map(<[u8]>::to_vec)
                            .collect(),
                    ),
                }
            }

            impl From<wit::TensorSpec> for $crate::TensorSpec {
                fn from(s: wit::TensorSpec) -> Self {
                    Self {
                        name: s.name,
                        dtype: from_wit_dtype(s.dtype),
                        shape: s.shape,
                    }
                }
            }

            impl From<wit::Signature> for $crate::Signature {
                fn from(s: wit::Signature) -> Self {
                    Self {
                        inputs: s.inputs.into_iter().map(Into::into).collect(),
                        outputs: s.outputs.into_iter().map(Into::into).collect(),
                    }
                }
            }
        }
    };
}

conversions!(v1);
conversions!(v2);
