//! Property tests of the tensor decoder, standing in for a `cargo fuzz` target: whatever a peer
//! sends, decoding returns an answer (never a panic or a huge allocation), and every valid
//! tensor survives encode -> protobuf bytes -> decode bit for bit.

use proptest::prelude::*;
use prost::Message;
use wire::proto;
use wire::{decode, encode, DType, Limits, Modality};

fn limits() -> Limits {
    Limits { max_bytes: 1 << 16, max_batch: 16 }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_never_panics_on_arbitrary_fields(
        data in proptest::collection::vec(any::<u8>(), 0..256),
        dtype in -2i32..8,
        modality in -2i32..6,
        shape in proptest::collection::vec(prop_oneof![0u64..8, any::<u64>()], 0..7),
    ) {
        let t = proto::Tensor { data: data.into(), dtype, shape, modality };
        let _ = decode(&t, &limits());
    }

    #[test]
    fn garbage_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..512)) {
        // Truncated or garbage protobuf frames: prost refuses or yields some tensor; either way
        // the decoder then answers.
        if let Ok(t) = proto::Tensor::decode(frame.as_slice()) {
            let _ = decode(&t, &limits());
        }
    }

    #[test]
    fn valid_tensors_round_trip_bit_exactly(
        modality_i in 0usize..3,
        dtype_i in 0usize..5,
        dims in proptest::collection::vec(1u64..4, 5),
        seed in any::<u64>(),
    ) {
        let modality = Modality::ALL[modality_i];
        let dtype = DType::ALL[dtype_i];
        prop_assume!(modality.accepts(dtype));
        let shape = &dims[..modality.rank()];
        let n = shape.iter().product::<u64>() as usize;
        let data = finite_bytes(dtype, n, seed);
        let frame = encode(dtype, shape, modality, data.clone()).encode_to_vec();
        let back = proto::Tensor::decode(frame.as_slice()).unwrap();
        let view = decode(&back, &limits()).unwrap();
        prop_assert_eq!(view.dtype, dtype);
        prop_assert_eq!(view.modality, modality);
        prop_assert_eq!(view.shape, shape);
        prop_assert_eq!(view.data, data.as_slice());
    }
}

/// `n` pseudo-random elements of `dtype`, with any non-finite float replaced by its bits
/// cleared of the exponent, so the tensor is valid yet exercises odd bit patterns.
fn finite_bytes(dtype: DType, n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut next = || {
        // xorshift64: deterministic, no dependency.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(n * dtype.size());
    for _ in 0..n {
        let r = next();
        match dtype {
            DType::F32 => {
                let v = f32::from_bits(r as u32);
                let v = if v.is_finite() { v } else { f32::from_bits(r as u32 & 0x807F_FFFF) };
                out.extend_from_slice(&v.to_le_bytes());
            }
            DType::F16 => {
                let v = half::f16::from_bits(r as u16);
                let v = if v.is_finite() { v } else { half::f16::from_bits(r as u16 & 0x83FF) };
                out.extend_from_slice(&v.to_le_bytes());
            }
            DType::BF16 => {
                let v = half::bf16::from_bits(r as u16);
                let v = if v.is_finite() { v } else { half::bf16::from_bits(r as u16 & 0x807F) };
                out.extend_from_slice(&v.to_le_bytes());
            }
            DType::I64 => out.extend_from_slice(&(r as i64).to_le_bytes()),
            DType::U8 => out.push(r as u8),
        }
    }
    out
}

proptest! {
    /// The vectorised finiteness scan finds a single NaN or Inf wherever it sits (block
    /// boundaries, the tail), for each float dtype, and reports its element index.
    #[test]
    fn one_non_finite_element_is_found_anywhere(
        n in 1usize..300,
        at in any::<prop::sample::Index>(),
        kind in 0usize..3,
        dtype_i in 0usize..3,
    ) {
        let i = at.index(n);
        let dtype = [DType::F32, DType::F16, DType::BF16][dtype_i];
        let bad = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][kind];
        let mut data = Vec::new();
        for k in 0..n {
            let v = if k == i { bad } else { k as f32 * 0.5 - 7.0 };
            match dtype {
                DType::F32 => data.extend_from_slice(&v.to_le_bytes()),
                DType::F16 => data.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                _ => data.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
            }
        }
        let t = encode(dtype, &[1, 1, n as u64], Modality::Tensor, data);
        match decode(&t, &Limits::default()) {
            Err(wire::TensorError::NonFinite { index, .. }) => prop_assert_eq!(index, i),
            other => prop_assert!(false, "expected NonFinite at {}, got {:?}", i, other),
        }
    }
}
