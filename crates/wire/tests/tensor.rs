//! Every validation error of the tensor codec, with the code each maps to, plus round trips.

use wire::proto::{self, ReturnCode};
use wire::tensor::{f32s_to_le_bytes, le_bytes_to_f32s};
use wire::{decode, decode_output, encode, DType, Direction, Limits, Modality, OwnedTensor, TensorError};

fn limits() -> Limits {
    Limits { max_bytes: 1 << 20, max_batch: 64 }
}

/// A valid tensor of `shape` with every byte zero (zero is finite in every dtype).
fn zeros(dtype: DType, modality: Modality, shape: &[u64]) -> proto::Tensor {
    let n: u64 = shape.iter().product();
    encode(dtype, shape, modality, vec![0; n as usize * dtype.size()])
}

fn request_err(t: &proto::Tensor) -> (TensorError, ReturnCode) {
    let e = decode(t, &limits()).expect_err("should be refused");
    let code = e.code(Direction::Request);
    (e, code)
}

#[test]
fn valid_tensors_of_each_modality_decode() {
    for (modality, dtype, shape) in [
        (Modality::Text, DType::I64, vec![2, 7]),
        (Modality::Text, DType::U8, vec![1, 300]),
        (Modality::Image, DType::U8, vec![2, 1, 3, 4, 5]),
        (Modality::Image, DType::F16, vec![1, 2, 3, 2, 2]),
        (Modality::Tensor, DType::F32, vec![3, 4, 8]),
        (Modality::Tensor, DType::BF16, vec![1, 1, 16]),
    ] {
        let t = zeros(dtype, modality, &shape);
        let v = decode(&t, &limits()).unwrap();
        assert_eq!((v.dtype, v.modality, v.shape), (dtype, modality, shape.as_slice()));
        assert_eq!(v.to_owned().into_proto(), t);
    }
}

#[test]
fn missing_tensor_is_an_empty_request() {
    assert_eq!(TensorError::Missing.code(Direction::Request), ReturnCode::EmptyRequest);
}

#[test]
fn unknown_dtype_is_a_dtype_error() {
    for raw in [0, 6, -1, i32::MAX] {
        let mut t = zeros(DType::F32, Modality::Tensor, &[1, 1, 1]);
        t.dtype = raw;
        assert_eq!(request_err(&t), (TensorError::UnknownDType(raw), ReturnCode::RequestDtypeError));
    }
}

#[test]
fn unknown_modality_is_not_implemented() {
    for raw in [0, 4, -7] {
        let mut t = zeros(DType::F32, Modality::Tensor, &[1, 1, 1]);
        t.modality = raw;
        assert_eq!(request_err(&t), (TensorError::UnknownModality(raw), ReturnCode::NotImplemented));
    }
}

#[test]
fn wrong_rank_for_each_modality_is_a_shape_error() {
    for (modality, dtype, shape) in [
        (Modality::Text, DType::I64, vec![2, 3, 4]),
        (Modality::Image, DType::U8, vec![1, 1, 3, 4]),
        (Modality::Tensor, DType::F32, vec![12]),
        (Modality::Tensor, DType::F32, vec![]),
    ] {
        let t = zeros(dtype, modality, &shape);
        let (e, code) = request_err(&t);
        assert!(matches!(e, TensorError::Rank { .. }), "{e}");
        assert_eq!(code, ReturnCode::RequestShapeError);
    }
}

#[test]
fn dtype_not_fit_for_modality_is_a_dtype_error() {
    for (modality, dtype, shape) in [
        (Modality::Text, DType::F32, vec![1, 4]),
        (Modality::Tensor, DType::I64, vec![1, 1, 4]),
        (Modality::Tensor, DType::U8, vec![1, 1, 4]),
        (Modality::Image, DType::I64, vec![1, 1, 1, 1, 1]),
    ] {
        let (e, code) = request_err(&zeros(dtype, modality, &shape));
        assert_eq!(e, TensorError::DTypeForModality { dtype, modality });
        assert_eq!(code, ReturnCode::RequestDtypeError);
    }
}

#[test]
fn zero_sized_shape_is_an_empty_request() {
    let (e, code) = request_err(&zeros(DType::F32, Modality::Tensor, &[0, 4, 8]));
    assert_eq!(e, TensorError::Empty { shape: vec![0, 4, 8] });
    assert_eq!(code, ReturnCode::EmptyRequest);
}

#[test]
fn huge_declared_shape_overflows_without_allocating() {
    let t = encode(DType::F32, &[u64::MAX, u64::MAX, 2], Modality::Tensor, vec![0; 16]);
    let (e, code) = request_err(&t);
    assert!(matches!(e, TensorError::SizeOverflow { .. }), "{e}");
    assert_eq!(code, ReturnCode::RequestShapeError);
    // Fits in u64 elements but not once multiplied by the element size.
    let t = encode(DType::F32, &[1, 1 << 31, 1 << 31], Modality::Tensor, vec![]);
    assert!(matches!(request_err(&t).0, TensorError::SizeOverflow { .. }));
}

#[test]
fn length_not_matching_shape_is_a_shape_error() {
    let mut t = zeros(DType::F32, Modality::Tensor, &[2, 3, 4]);
    t.data.truncate(t.data.len() - 1);
    let (e, code) = request_err(&t);
    assert_eq!(
        e,
        TensorError::LengthMismatch { shape: vec![2, 3, 4], dtype: DType::F32, expected: 96, got: 95 }
    );
    assert_eq!(code, ReturnCode::RequestShapeError);
    // A dtype mismatch shows up the same way: f16 bytes declared as f32.
    let t = encode(DType::F32, &[1, 1, 4], Modality::Tensor, vec![0; 8]);
    assert!(matches!(request_err(&t).0, TensorError::LengthMismatch { expected: 16, got: 8, .. }));
}

#[test]
fn too_many_bytes_is_refused_before_anything_else() {
    let mut t = zeros(DType::U8, Modality::Text, &[1, (1 << 20) + 1]);
    t.dtype = 99; // would be UnknownDType if the size check did not come first
    let (e, code) = request_err(&t);
    assert_eq!(e, TensorError::TooLarge { bytes: (1 << 20) + 1, max: 1 << 20 });
    assert_eq!(code, ReturnCode::RequestShapeError);
}

#[test]
fn too_large_batch_is_a_shape_error() {
    let (e, code) = request_err(&zeros(DType::U8, Modality::Text, &[65, 1]));
    assert_eq!(e, TensorError::BatchTooLarge { batch: 65, max: 64 });
    assert_eq!(code, ReturnCode::RequestShapeError);
}

#[test]
fn nan_and_inf_are_reported_for_every_float_dtype() {
    let cases: [(DType, Vec<u8>); 6] = [
        (DType::F32, f32::NAN.to_le_bytes().to_vec()),
        (DType::F32, f32::NEG_INFINITY.to_le_bytes().to_vec()),
        (DType::F16, half::f16::NAN.to_le_bytes().to_vec()),
        (DType::F16, half::f16::INFINITY.to_le_bytes().to_vec()),
        (DType::BF16, half::bf16::NAN.to_le_bytes().to_vec()),
        (DType::BF16, half::bf16::NEG_INFINITY.to_le_bytes().to_vec()),
    ];
    for (dtype, bad) in cases {
        // Two finite elements, then the bad one: the error names element 2.
        let mut data = vec![0u8; 2 * dtype.size()];
        data.extend_from_slice(&bad);
        let t = encode(dtype, &[1, 1, 3], Modality::Tensor, data);
        let (e, code) = request_err(&t);
        assert!(matches!(e, TensorError::NonFinite { index: 2, .. }), "{dtype:?}: {e}");
        assert_eq!(code, ReturnCode::NonFinite);
        assert_eq!(e.code(Direction::Response), ReturnCode::NonFinite);
    }
    // 0xFF bytes are NaN as floats but ordinary values as integers.
    let t = encode(DType::U8, &[1, 4], Modality::Text, vec![0xFF; 4]);
    assert!(decode(&t, &limits()).is_ok());
}

#[test]
fn bad_responses_are_response_shape_errors() {
    let t = zeros(DType::U8, Modality::Text, &[1, 4]);
    let e = decode_output(&t, &limits()).unwrap_err();
    assert_eq!(e, TensorError::WrongModality { expected: Modality::Tensor, got: Modality::Text });
    assert_eq!(e.code(Direction::Response), ReturnCode::ResponseShapeError);
    let mut t = zeros(DType::F32, Modality::Tensor, &[1, 2, 3]);
    t.data.truncate(5);
    let e = decode_output(&t, &limits()).unwrap_err();
    assert_eq!(e.code(Direction::Response), ReturnCode::ResponseShapeError);
    assert!(decode_output(&zeros(DType::F32, Modality::Tensor, &[1, 2, 3]), &limits()).is_ok());
}

#[test]
fn f32_helpers_are_little_endian_and_exact() {
    let values = [1.0f32, -0.0, f32::MIN_POSITIVE, 3.3e38, f32::from_bits(1)];
    let bytes = f32s_to_le_bytes(&values);
    assert_eq!(&bytes[..4], &[0x00, 0x00, 0x80, 0x3F]);
    let back = le_bytes_to_f32s(&bytes);
    assert_eq!(back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), values.map(f32::to_bits));
    // Unaligned input still decodes (the slice starts one byte into a buffer).
    let mut shifted = vec![0u8];
    shifted.extend_from_slice(&bytes);
    assert_eq!(le_bytes_to_f32s(&shifted[1..]), back);
}

#[test]
fn float_views_widen_to_f32() {
    let t = OwnedTensor::from_f32(Modality::Tensor, &[1, 1, 3], &[0.5, -2.0, 7.25]).into_proto();
    assert_eq!(decode(&t, &limits()).unwrap().to_f32_vec(), Some(vec![0.5, -2.0, 7.25]));
    let h: Vec<u8> = [0.5f32, -2.0].iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect();
    let t = encode(DType::BF16, &[1, 1, 2], Modality::Tensor, h);
    assert_eq!(decode(&t, &limits()).unwrap().to_f32_vec(), Some(vec![0.5, -2.0]));
    let t = zeros(DType::I64, Modality::Text, &[1, 2]);
    assert_eq!(decode(&t, &limits()).unwrap().to_f32_vec(), None);
}

#[test]
fn dtype_and_modality_round_trip_through_their_proto_values() {
    for d in DType::ALL {
        assert_eq!(DType::from_proto(d.to_proto() as i32), Some(d));
    }
    for m in Modality::ALL {
        assert_eq!(Modality::from_proto(m.to_proto() as i32), Some(m));
    }
}
