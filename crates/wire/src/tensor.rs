//! The tensor codec: raw little-endian bytes with a dtype, a shape and a modality (market paper
//! §6 "Tensor Standardization"). Pure: no I/O, no ML library.
//!
//! Decoding validates everything a peer could get wrong or lie about before anyone reads the
//! bytes: the enums, the rank each modality requires, the dtypes that make sense for it, the
//! byte length against the declared shape (checked arithmetic, so a huge declared shape is an
//! error and never an allocation), the caller's limits, and NaN/Inf in float tensors, which are
//! reported rather than propagated into someone's model.

use bytes::Bytes;

use crate::proto;
use crate::proto::ReturnCode;

/// Element type; every element is little-endian on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16: the top half of an f32.
    BF16,
    /// 64-bit signed integer (token ids).
    I64,
    /// Byte (token ids of the byte vocabulary, raw pixels).
    U8,
}

impl DType {
    /// Every element type, in the protocol's order.
    pub const ALL: [DType; 5] = [DType::F32, DType::F16, DType::BF16, DType::I64, DType::U8];

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I64 => 8,
            DType::U8 => 1,
        }
    }

    /// Whether it is a floating-point type (what representations and gradients must be).
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// Its protobuf enum value.
    pub fn to_proto(self) -> proto::DType {
        match self {
            DType::F32 => proto::DType::DtypeF32,
            DType::F16 => proto::DType::DtypeF16,
            DType::BF16 => proto::DType::DtypeBf16,
            DType::I64 => proto::DType::DtypeI64,
            DType::U8 => proto::DType::DtypeU8,
        }
    }

    /// `None` for unspecified or unknown values (prost keeps unknown enum values as raw i32).
    pub fn from_proto(raw: i32) -> Option<DType> {
        match proto::DType::try_from(raw).ok()? {
            proto::DType::DtypeUnspecified => None,
            proto::DType::DtypeF32 => Some(DType::F32),
            proto::DType::DtypeF16 => Some(DType::F16),
            proto::DType::DtypeBf16 => Some(DType::BF16),
            proto::DType::DtypeI64 => Some(DType::I64),
            proto::DType::DtypeU8 => Some(DType::U8),
        }
    }
}

/// What a tensor carries; fixes its rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Modality {
    /// Token ids or UTF-8 bytes: `[batch, seq]`.
    Text,
    /// `[batch, seq, channels, rows, cols]`.
    Image,
    /// `[batch, seq, dim]`; also every Forward output and Backward gradient.
    Tensor,
}

impl Modality {
    /// Every modality, in the protocol's order.
    pub const ALL: [Modality; 3] = [Modality::Text, Modality::Image, Modality::Tensor];

    /// The rank the issue and the papers fix for this modality.
    pub const fn rank(self) -> usize {
        match self {
            Modality::Text => 2,
            Modality::Image => 5,
            Modality::Tensor => 3,
        }
    }

    /// Token ids are integers; representations and gradients are floats; pixels may be either
    /// raw bytes or normalised floats. Anything else is a caller bug worth a clear code.
    pub const fn accepts(self, dtype: DType) -> bool {
        match self {
            Modality::Text => matches!(dtype, DType::I64 | DType::U8),
            Modality::Image => !matches!(dtype, DType::I64),
            Modality::Tensor => dtype.is_float(),
        }
    }

    /// Its protobuf enum value.
    pub fn to_proto(self) -> proto::Modality {
        match self {
            Modality::Text => proto::Modality::Text,
            Modality::Image => proto::Modality::Image,
            Modality::Tensor => proto::Modality::Tensor,
        }
    }

    /// The modality of a protobuf enum value; `None` for an unknown or unspecified one.
    pub fn from_proto(raw: i32) -> Option<Modality> {
        match proto::Modality::try_from(raw).ok()? {
            proto::Modality::Unspecified => None,
            proto::Modality::Text => Some(Modality::Text),
            proto::Modality::Image => Some(Modality::Image),
            proto::Modality::Tensor => Some(Modality::Tensor),
        }
    }
}

/// Caps a decoder applies before trusting a tensor; an axon sets them from its config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest `data` accepted, in bytes.
    pub max_bytes: usize,
    /// Largest batch (first dimension) accepted.
    pub max_batch: u64,
}

impl Default for Limits {
    /// 64 MiB and 1024 rows: far above the 4 MB benchmark payload, far below memory.
    fn default() -> Self {
        Limits { max_bytes: 64 << 20, max_batch: 1024 }
    }
}

/// Which side of a call a tensor came from: a bad request and a bad response are different
/// codes, since the first is the caller's fault and the second the axon's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the dendrite: a bad one is the caller's fault.
    Request,
    /// Sent back by the axon: a bad one is the axon's fault.
    Response,
}

/// Why a tensor was refused. Each variant carries what the sender needs to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// The message has no tensor where one is required.
    #[error("missing tensor")]
    Missing,
    /// The dtype field is not a known element type (the raw value).
    #[error("unknown or unspecified dtype {0}")]
    UnknownDType(i32),
    /// The modality field is not a known modality (the raw value).
    #[error("unknown or unspecified modality {0}")]
    UnknownModality(i32),
    /// The element type does not fit the modality (floats for token ids, integers for representations).
    #[error("dtype {dtype:?} is not accepted for modality {modality:?}")]
    DTypeForModality {
        /// The element type.
        dtype: DType,
        /// The modality.
        modality: Modality,
    },
    /// The shape has the wrong number of dimensions for its modality.
    #[error("modality {modality:?} needs rank {expected}, got shape {shape:?}")]
    Rank {
        /// The modality.
        modality: Modality,
        /// Its rank.
        expected: usize,
        /// The shape sent.
        shape: Vec<u64>,
    },
    /// A modality other than the call expects (a Backward gradient must be a Tensor).
    #[error("expected modality {expected:?}, got {got:?}")]
    WrongModality {
        /// The modality expected.
        expected: Modality,
        /// The modality sent.
        got: Modality,
    },
    /// A shape with a zero dimension.
    #[error("empty tensor: shape {shape:?} holds no elements")]
    Empty {
        /// The shape sent.
        shape: Vec<u64>,
    },
    /// The shape's byte count does not fit in 64 bits.
    #[error("shape {shape:?} of {dtype:?} overflows 64-bit byte count")]
    SizeOverflow {
        /// The shape sent.
        shape: Vec<u64>,
        /// The element type.
        dtype: DType,
    },
    /// The data's length is not the shape's byte count.
    #[error("shape {shape:?} of {dtype:?} needs {expected} bytes, data has {got}")]
    LengthMismatch {
        /// The shape sent.
        shape: Vec<u64>,
        /// The element type.
        dtype: DType,
        /// Bytes the shape needs.
        expected: u64,
        /// Bytes sent.
        got: usize,
    },
    /// More bytes than the receiver's limit.
    #[error("{bytes} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Bytes the tensor holds.
        bytes: u64,
        /// The limit.
        max: usize,
    },
    /// A batch dimension over the receiver's limit.
    #[error("batch {batch} exceeds the limit of {max}")]
    BatchTooLarge {
        /// The batch sent.
        batch: u64,
        /// The limit.
        max: u64,
    },
    /// A NaN or infinity in a float tensor: it would poison the receiver's model.
    #[error("non-finite value {value} at element {index}")]
    NonFinite {
        /// The first such element's index.
        index: usize,
        /// Its value, as text (any float type).
        value: String,
    },
}

impl TensorError {
    /// The code an axon (for a request) or a dendrite (for a response) reports.
    pub fn code(&self, direction: Direction) -> ReturnCode {
        use TensorError::*;
        match (self, direction) {
            (NonFinite { .. }, _) => ReturnCode::NonFinite,
            (_, Direction::Response) => ReturnCode::ResponseShapeError,
            (Missing | Empty { .. }, Direction::Request) => ReturnCode::EmptyRequest,
            (UnknownModality(_), Direction::Request) => ReturnCode::NotImplemented,
            (UnknownDType(_) | DTypeForModality { .. }, Direction::Request) => ReturnCode::RequestDtypeError,
            (
                Rank { .. }
                | WrongModality { .. }
                | SizeOverflow { .. }
                | LengthMismatch { .. }
                | TooLarge { .. }
                | BatchTooLarge { .. },
                Direction::Request,
            ) => ReturnCode::RequestShapeError,
        }
    }
}

/// A validated tensor borrowing the message's bytes: decoding copies nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorView<'a> {
    /// Element type.
    pub dtype: DType,
    /// What the dimensions mean.
    pub modality: Modality,
    /// Dimensions, outermost first.
    pub shape: &'a [u64],
    /// The elements, little-endian, row-major: a slice of the received message.
    pub data: &'a [u8],
}

/// A tensor that owns its bytes, for building messages and receiving answers. `data` is shared,
/// not copied, when the tensor is cloned, sent (a dendrite's fan-out sends one buffer to every
/// axon) or received (a dendrite's result is a slice of the frame it arrived in); build one from
/// a `Vec<u8>` with `.into()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedTensor {
    /// Element type.
    pub dtype: DType,
    /// What the dimensions mean.
    pub modality: Modality,
    /// Dimensions, outermost first.
    pub shape: Vec<u64>,
    /// The elements, little-endian, row-major (shared, not copied, on clone).
    pub data: Bytes,
}

/// Wraps raw parts into a wire tensor. Does not validate: the receiver does, with its own
/// limits, and a sender building a deliberately odd tensor (tests, fuzzing) must be able to.
pub fn encode(dtype: DType, shape: &[u64], modality: Modality, data: impl Into<Bytes>) -> proto::Tensor {
    proto::Tensor {
        data: data.into(),
        dtype: dtype.to_proto() as i32,
        shape: shape.to_vec(),
        modality: modality.to_proto() as i32,
    }
}

/// Validates a wire tensor against `limits`; see the module doc for the checks and their order.
pub fn decode<'a>(tensor: &'a proto::Tensor, limits: &Limits) -> Result<TensorView<'a>, TensorError> {
    let view = decode_structure(tensor, limits)?;
    check_finite(view.dtype, view.data)?;
    Ok(view)
}

/// Every check of [`decode`] but the scan for NaN/Inf, for a caller that scans the bytes in a
/// pass of its own (the axon, while it digests them).
pub(crate) fn decode_structure<'a>(
    tensor: &'a proto::Tensor,
    limits: &Limits,
) -> Result<TensorView<'a>, TensorError> {
    // Size limit first: cheapest, and it bounds the work of every later check.
    if tensor.data.len() > limits.max_bytes {
        return Err(TensorError::TooLarge { bytes: tensor.data.len() as u64, max: limits.max_bytes });
    }
    let dtype = DType::from_proto(tensor.dtype).ok_or(TensorError::UnknownDType(tensor.dtype))?;
    let modality =
        Modality::from_proto(tensor.modality).ok_or(TensorError::UnknownModality(tensor.modality))?;
    let shape = tensor.shape.as_slice();
    if shape.len() != modality.rank() {
        return Err(TensorError::Rank { modality, expected: modality.rank(), shape: shape.to_vec() });
    }
    if !modality.accepts(dtype) {
        return Err(TensorError::DTypeForModality { dtype, modality });
    }
    // Checked products: a peer may declare [u64::MAX, u64::MAX, ...]; that is an error, never
    // an allocation or a wrapped length that happens to match.
    let elements = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    let bytes = elements.and_then(|n| n.checked_mul(dtype.size() as u64));
    let Some(bytes) = bytes else {
        return Err(TensorError::SizeOverflow { shape: shape.to_vec(), dtype });
    };
    if bytes == 0 {
        return Err(TensorError::Empty { shape: shape.to_vec() });
    }
    if bytes != tensor.data.len() as u64 {
        return Err(TensorError::LengthMismatch {
            shape: shape.to_vec(),
            dtype,
            expected: bytes,
            got: tensor.data.len(),
        });
    }
    if shape[0] > limits.max_batch {
        return Err(TensorError::BatchTooLarge { batch: shape[0], max: limits.max_batch });
    }
    Ok(TensorView { dtype, modality, shape, data: &tensor.data })
}

/// Decodes a Forward output or a Backward gradient: always modality TENSOR, `[batch, seq, dim]`.
pub fn decode_output<'a>(tensor: &'a proto::Tensor, limits: &Limits) -> Result<TensorView<'a>, TensorError> {
    let view = decode(tensor, limits)?;
    if view.modality != Modality::Tensor {
        return Err(TensorError::WrongModality { expected: Modality::Tensor, got: view.modality });
    }
    Ok(view)
}

/// Whether any little-endian element of `W` bytes (2 or 4) has every bit of `mask` set:
/// for an IEEE float's exponent mask, whether any element is NaN or infinite.
fn any_exponent_all_ones<const W: usize>(data: &[u8], mask: u32) -> bool {
    let element = |c: &[u8]| {
        let mut b = [0u8; 4];
        b[..W].copy_from_slice(&c[..W]);
        u32::from_le_bytes(b)
    };
    let blocks = data.chunks_exact(64);
    let tail = blocks.remainder();
    for block in blocks {
        let mut hit = false;
        for c in block.chunks_exact(W) {
            hit |= element(c) & mask == mask;
        }
        if hit {
            return true;
        }
    }
    tail.chunks_exact(W).any(|c| element(c) & mask == mask)
}

/// Whether `data`, whole elements of `dtype` from an element boundary, may hold NaN or Inf: a
/// branch-free scan of the exponent bits (fixed-size inner blocks, which the compiler
/// vectorises; this runs on every tensor in and out of a peer). Exact for floats; always false
/// for integers.
pub(crate) fn may_be_non_finite(dtype: DType, data: &[u8]) -> bool {
    match dtype {
        DType::F32 => any_exponent_all_ones::<4>(data, 0x7f80_0000),
        DType::F16 => any_exponent_all_ones::<2>(data, 0x7c00),
        DType::BF16 => any_exponent_all_ones::<2>(data, 0x7f80),
        DType::I64 | DType::U8 => false,
    }
}

/// NaN or Inf anywhere in a float tensor is refused with the first offending element, so a
/// broken peer is noticed instead of silently poisoning the caller's gradients.
pub(crate) fn check_finite(dtype: DType, data: &[u8]) -> Result<(), TensorError> {
    // The fast scan first, the slow search for the culprit only when it fails.
    if !may_be_non_finite(dtype, data) {
        return Ok(());
    }
    let bad = |index: usize, value: f32| Err(TensorError::NonFinite { index, value: value.to_string() });
    match dtype {
        DType::F32 => {
            for (i, c) in data.chunks_exact(4).enumerate() {
                let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                if !v.is_finite() {
                    return bad(i, v);
                }
            }
        }
        DType::F16 => {
            for (i, c) in data.chunks_exact(2).enumerate() {
                let v = half::f16::from_le_bytes([c[0], c[1]]);
                if !v.is_finite() {
                    return bad(i, v.to_f32());
                }
            }
        }
        DType::BF16 => {
            for (i, c) in data.chunks_exact(2).enumerate() {
                let v = half::bf16::from_le_bytes([c[0], c[1]]);
                if !v.is_finite() {
                    return bad(i, v.to_f32());
                }
            }
        }
        DType::I64 | DType::U8 => {}
    }
    Ok(())
}

impl TensorView<'_> {
    /// A copy that owns its bytes.
    pub fn to_owned(&self) -> OwnedTensor {
        OwnedTensor {
            dtype: self.dtype,
            modality: self.modality,
            shape: self.shape.to_vec(),
            data: Bytes::copy_from_slice(self.data),
        }
    }

    /// The elements widened to f32, for float dtypes; `None` for integer dtypes.
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        match self.dtype {
            DType::F32 => Some(le_bytes_to_f32s(self.data)),
            DType::F16 => Some(
                self.data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            ),
            DType::BF16 => Some(
                self.data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            ),
            DType::I64 | DType::U8 => None,
        }
    }
}

impl OwnedTensor {
    /// An f32 tensor; the shape is not checked here (the receiver's `decode` does).
    pub fn from_f32(modality: Modality, shape: &[u64], values: &[f32]) -> OwnedTensor {
        OwnedTensor {
            dtype: DType::F32,
            modality,
            shape: shape.to_vec(),
            data: f32s_to_le_bytes(values).into(),
        }
    }

    /// A view of the tensor, as a handler is lent one.
    pub fn view(&self) -> TensorView<'_> {
        TensorView { dtype: self.dtype, modality: self.modality, shape: &self.shape, data: &self.data }
    }

    /// The protobuf message that carries it.
    pub fn into_proto(self) -> proto::Tensor {
        encode(self.dtype, &self.shape, self.modality, self.data)
    }
}

/// f32 values to little-endian bytes. On little-endian machines (every target we ship) this
/// is one memcpy; elsewhere it swaps each element.
pub fn f32s_to_le_bytes(values: &[f32]) -> Vec<u8> {
    if cfg!(target_endian = "little") {
        bytemuck::cast_slice::<f32, u8>(values).to_vec()
    } else {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

/// Little-endian bytes to f32 values; a trailing partial element is ignored (`decode` has
/// already refused such lengths). One copy on little-endian machines whatever the alignment.
pub fn le_bytes_to_f32s(bytes: &[u8]) -> Vec<f32> {
    let whole = &bytes[..bytes.len() / 4 * 4];
    if cfg!(target_endian = "little") {
        bytemuck::pod_collect_to_vec::<u8, f32>(whole)
    } else {
        whole.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }
}
