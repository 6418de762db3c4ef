//! Agora's peer protocol (issue 4): how peers move tensors to each other, per the market paper
//! §6 "Tensor Standardization" and §9 steps 2-4, and how an axon rations its model by stake
//! (§3: "messages from peer i to peer j are queued w.r.t. the stake weight between them").
//!
//! Owns:
//! - [`proto`]: the Rust types and tonic service generated from the published
//!   `crates/wire/proto/agora.proto` (package `agora.v1`; any language's protobuf tools can
//!   read it);
//! - [`tensor`]: the tensor codec, raw little-endian bytes with dtype, shape and modality,
//!   validated before use and mapped to a [`proto::ReturnCode`] when refused;
//! - [`auth`]: protocol version 5's sessions ([`auth::session`]: a handshake per connection,
//!   signed by both hotkeys, agreeing on X25519 keys) and credentials, carried in the call's
//!   gRPC metadata and MACed (keyed BLAKE3) under the session's key over the body's length and
//!   BLAKE3 digest, with freshness checks and a replay cache that keeps a floor per caller; and
//!   the response MACs ([`auth::response`]) over the request, the response body and the
//!   [`ModelVersion`] that answered;
//! - [`axon`]: the server: checks from the metadata before the body is read (version,
//!   blacklist, stake, trusted keys, size, session and MAC, bytes in flight per caller, replay),
//!   a pluggable [`Handler`], the bounded priority queue (w_ij * s_i: the caller's weight to
//!   this axon times its stake), size/batch/concurrency limits, a deadline per request and a
//!   MAC on every answer, and optionally the intermodel paper's competitive masking
//!   ([`masking`]: answers scaled by the caller's weight times stake against the mean);
//! - [`dendrite`]: the client: one batch fanned out to k axons in parallel under one deadline,
//!   over reused connections and their sessions, one [`PeerResult`] per axon;
//! - the codec both use instead of tonic's (private `codec`): a message goes out as chunks with
//!   each tensor's bytes as their own HTTP/2 frame and is decoded from the frames as they
//!   arrived, so tensors ([`Bytes`]) are never copied between the caller's buffer and the
//!   socket, or between the socket's frame and the handler or the caller's result;
//! - [`metrics`]: per-peer counts by return code and latency histograms, in Prometheus text;
//! - [`chaos`]: faults on purpose, a loopback proxy that delays, loses, cuts or garbles the
//!   traffic to an axon from a seed, for tests and `agora localnet --chaos`.
//!
//! Assumes a tokio multi-threaded runtime for the axon and dendrite, and a [`StakeLookup`] fed
//! by the peer from the metagraph. Knows nothing about the models on either side and depends on
//! no ML library: it moves tensors, it does not compute them. The codec and the MACs are pure:
//! clocks and keys come in as arguments (the handshakes draw fresh ephemeral keys).

pub mod auth;
pub mod axon;
pub mod chaos;
mod codec;
pub mod dendrite;
mod digest;
pub mod masking;
pub mod metrics;
mod queue;
pub mod tensor;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;

/// Generated from `proto/agora.proto` by `build.rs` (protox + tonic-prost-build).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("agora.v1");
}

pub use auth::response::{ModelVersion, ResponseError, ResponseSeal};
pub use auth::session::{HandshakeError, Initiator, Offer};
pub use auth::{
    AuthError, Authenticated, BodyDigest, Credentials, DigestAlgorithm, Freshness, NonceCache, Session, Tier,
    PROTOCOL_VERSION,
};
pub use axon::{
    serve, AxonConfig, AxonError, AxonHandle, Caller, Handler, HandlerError, StakeLookup, StakeTable,
    WeightRow,
};
pub use bytes::Bytes;
pub use chaos::{ChaosError, FaultConfig, FaultProxy, FaultStats};
pub use dendrite::{Dendrite, PeerResult, Target};
pub use masking::{Competition, MaskingConfig, MaskingError};
pub use metrics::{Call, Metrics};
pub use proto::ReturnCode;
pub use tensor::{
    decode, decode_output, encode, DType, Direction, Limits, Modality, OwnedTensor, TensorError, TensorView,
};
