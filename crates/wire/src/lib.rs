//! Agora's peer protocol foundation (issue 4): how peers move tensors to each other, per the
//! market paper §6 "Tensor Standardization" and §9 steps 2-4.
//!
//! Owns:
//! - [`proto`]: the Rust types and tonic service generated from the published
//!   `crates/wire/proto/agora.proto` (package `agora.v1`; any language's protobuf tools can
//!   read it);
//! - [`tensor`]: the tensor codec, raw little-endian bytes with dtype, shape and modality,
//!   validated before use and mapped to a [`proto::ReturnCode`] when refused;
//! - [`auth`]: request signatures by the caller's hotkey, with freshness and replay checks.
//!
//! Assumes nothing about the models on either side and depends on no ML library: it moves
//! tensors, it does not compute them. Pure: clocks and keys come in as arguments.
//!
//! Not here yet: the axon (server, stake-priority queue, blacklist) and the dendrite (fan-out
//! client); they come in a later change on top of these pieces.

pub mod auth;
pub mod tensor;

/// Generated from `proto/agora.proto` by `build.rs` (protox + tonic-prost-build).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("agora.v1");
}

pub use auth::{
    sign_backward, sign_forward, verify_backward, verify_forward, AuthError, Freshness, NonceCache,
};
pub use tensor::{
    decode, decode_output, encode, DType, Direction, Limits, Modality, OwnedTensor, TensorError, TensorView,
};
