//! Response signatures (protocol 4, issue 16): every Forward and Backward answer, refusals
//! included, is signed by the axon's hotkey over the request it answers, the response body and
//! the model that answered, so a caller knows who answered and with which model, and an axon
//! cannot pass off another axon's answers as its own (they are signed by that other axon, for
//! a request addressed to it).
//!
//! The response's metadata (HTTP/2 headers, sent before the body; ASCII values, hex lowercase):
//!
//! | key | value |
//! |---|---|
//! | `agora-version` | `4` |
//! | `agora-responder` | the axon's 32-byte hotkey |
//! | `agora-model-version` | 32 bytes naming the model that answered (a hash of its parameters); all zero when none did (a refusal) or the axon does not say |
//! | `agora-model-step` | decimal u64: that model's training step (0 with an all-zero version) |
//! | `agora-body-len` | decimal u64: length of the response message (the gRPC message bytes) |
//! | `agora-digest` | `blake3:<hex>` of exactly those bytes |
//! | `agora-signature` | 64-byte ed25519 signature by the responder over [`response_signing_message`] |
//!
//! The request is named by its hash, [`Credentials::request_hash`](super::Credentials::request_hash): BLAKE3 of the bytes its
//! caller signed. An axon that could not read the request's credentials (no or malformed
//! `agora-*` metadata) signs over 32 zero bytes instead. A caller checks that the responder is
//! the axon it called, the body's length and digest, and the signature; any failure is
//! INVALID_RESPONSE_SIGNATURE, and an answer without `agora-version` (an axon of protocol 3 or
//! older) is UNSUPPORTED_VERSION.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use tonic::codegen::http::{HeaderMap, HeaderValue};

use super::{field, header_body, header_bytes, header_number, keys, AuthError, BodyDigest, PROTOCOL_VERSION};
use crate::metrics::Call;
use crate::proto::ReturnCode;

/// The response-only metadata keys (the others are shared with requests: [`keys`]).
pub mod response_keys {
    pub const RESPONDER: &str = "agora-responder";
    pub const MODEL_VERSION: &str = "agora-model-version";
    pub const MODEL_STEP: &str = "agora-model-step";
}

/// Which model answered: an identifier of its parameters and its training step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ModelVersion {
    /// A hash of the parameters that computed the answer (or a checkpoint id); all zero for
    /// "no model" ([`ModelVersion::UNVERSIONED`]).
    pub id: [u8; 32],
    /// Optimisation steps the model had taken.
    pub step: u64,
}

impl ModelVersion {
    /// No model answered (a refusal), or the handler does not say.
    pub const UNVERSIONED: ModelVersion = ModelVersion { id: [0; 32], step: 0 };

    pub fn is_unversioned(&self) -> bool {
        self.id == [0; 32]
    }

    /// The first bytes of the id in hex, for logs and reports.
    pub fn short(&self) -> String {
        hex::encode(&self.id[..6])
    }
}

/// Why an axon's response was not accepted as its own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the axon's response is not signed (no agora-version in its metadata): it speaks agora protocol 3 or older, and this dendrite accepts only protocol {PROTOCOL_VERSION}'s signed responses")]
    Unsigned,
    #[error(
        "the axon's response says agora-version {0:?}; this dendrite speaks protocol {PROTOCOL_VERSION}"
    )]
    UnsupportedVersion(String),
    #[error("the axon's response metadata: {0}")]
    Metadata(AuthError),
    #[error("the response is signed by {got}, not by the axon called ({expected})")]
    WrongResponder { expected: String, got: String },
    #[error("the response body is {got} bytes, its signature says {declared}")]
    BodyLength { declared: u64, got: u64 },
    #[error("the response body's digest does not match the signed agora-digest")]
    DigestMismatch,
    #[error("the response signature does not verify for this axon, request, body and model version")]
    BadSignature,
}

impl ResponseError {
    pub fn code(&self) -> ReturnCode {
        match self {
            ResponseError::Unsigned | ResponseError::UnsupportedVersion(_) => ReturnCode::UnsupportedVersion,
            _ => ReturnCode::InvalidResponseSignature,
        }
    }
}

/// The exact bytes an axon signs for a response (ed25519 over them, no pre-hash):
///
/// ```text
/// field("agora/4/response") || field(path) || field(responder) || field(request_hash)
///   || field(digest algorithm name) || u64le(body_len) || field(digest)
///   || field(model_version) || u64le(model_step)
/// field(x) = u64le(len(x)) || x;  path = "/agora.v1.Axon/Forward" or "/agora.v1.Axon/Backward"
/// ```
///
/// The tag differs from a request's (`agora/4`), so no signed request is a signed response.
pub fn response_signing_message(
    version: u32,
    call: Call,
    responder: &[u8; 32],
    request_hash: &[u8; 32],
    body: &BodyDigest,
    model: &ModelVersion,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    field(&mut out, format!("agora/{version}/response").as_bytes());
    field(&mut out, call.path().as_bytes());
    field(&mut out, responder);
    field(&mut out, request_hash);
    field(&mut out, body.algorithm.name().as_bytes());
    out.extend_from_slice(&body.len.to_le_bytes());
    field(&mut out, &body.hash);
    field(&mut out, &model.id);
    out.extend_from_slice(&model.step.to_le_bytes());
    out
}

/// An axon's signature on one response, as its metadata carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseSeal {
    pub responder: [u8; 32],
    pub model: ModelVersion,
    pub body: BodyDigest,
    pub signature: [u8; 64],
}

impl ResponseSeal {
    /// Signs a response whose message bytes digest to `body`, answering the request with hash
    /// `request_hash` (32 zero bytes when the request's credentials could not be read).
    pub fn sign(
        key: &SigningKey,
        call: Call,
        request_hash: &[u8; 32],
        body: BodyDigest,
        model: ModelVersion,
    ) -> ResponseSeal {
        let responder = key.verifying_key().to_bytes();
        let message =
            response_signing_message(PROTOCOL_VERSION, call, &responder, request_hash, &body, &model);
        ResponseSeal { responder, model, body, signature: key.sign(&message).to_bytes() }
    }

    /// Writes the seven keys of a signed response (replacing any already there).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let mut put = |key: &'static str, value: String| {
            // Hex and decimal digits are always valid header values.
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(key, v);
            }
        };
        put(keys::VERSION, PROTOCOL_VERSION.to_string());
        put(response_keys::RESPONDER, hex::encode(self.responder));
        put(response_keys::MODEL_VERSION, hex::encode(self.model.id));
        put(response_keys::MODEL_STEP, self.model.step.to_string());
        put(keys::BODY_LEN, self.body.len.to_string());
        put(keys::DIGEST, self.body.header_value());
        put(keys::SIGNATURE, hex::encode(self.signature));
    }

    /// Reads a response's keys; its version first, so an answer from an older axon says so.
    pub fn from_headers(headers: &HeaderMap) -> Result<ResponseSeal, ResponseError> {
        let version = headers.get(keys::VERSION).ok_or(ResponseError::Unsigned)?;
        let version = version.to_str().unwrap_or("<not ASCII>");
        if version.trim().parse::<u32>() != Ok(PROTOCOL_VERSION) {
            return Err(ResponseError::UnsupportedVersion(version.chars().take(32).collect()));
        }
        let read = || -> Result<ResponseSeal, AuthError> {
            Ok(ResponseSeal {
                responder: header_bytes(headers, response_keys::RESPONDER)?,
                model: ModelVersion {
                    id: header_bytes(headers, response_keys::MODEL_VERSION)?,
                    step: header_number(headers, response_keys::MODEL_STEP)?,
                },
                body: header_body(headers)?,
                signature: header_bytes(headers, keys::SIGNATURE)?,
            })
        };
        read().map_err(ResponseError::Metadata)
    }

    /// Checks that `axon` signed this response to the request `request_hash`, and that the
    /// body received (`received`, digested as it arrived) is the one it signed. The verified
    /// model version on success.
    pub fn verify(
        &self,
        call: Call,
        axon: &[u8; 32],
        request_hash: &[u8; 32],
        received: &BodyDigest,
    ) -> Result<ModelVersion, ResponseError> {
        if &self.responder != axon {
            return Err(ResponseError::WrongResponder {
                expected: hex::encode(axon),
                got: hex::encode(self.responder),
            });
        }
        let key = VerifyingKey::from_bytes(axon).map_err(|_| ResponseError::BadSignature)?;
        self.verify_as(&key, call, request_hash, received)
    }

    /// [`ResponseSeal::verify`] with the axon's key already decompressed (a dendrite keeps the
    /// keys of the axons it calls). `key` must be the point the axon's hotkey encodes.
    pub fn verify_as(
        &self,
        key: &VerifyingKey,
        call: Call,
        request_hash: &[u8; 32],
        received: &BodyDigest,
    ) -> Result<ModelVersion, ResponseError> {
        let axon = key.as_bytes();
        if &self.responder != axon {
            return Err(ResponseError::WrongResponder {
                expected: hex::encode(axon),
                got: hex::encode(self.responder),
            });
        }
        if received.len != self.body.len {
            return Err(ResponseError::BodyLength { declared: self.body.len, got: received.len });
        }
        if received.algorithm != self.body.algorithm || received.hash != self.body.hash {
            return Err(ResponseError::DigestMismatch);
        }
        let message =
            response_signing_message(PROTOCOL_VERSION, call, axon, request_hash, &self.body, &self.model);
        key.verify(&message, &Signature::from_bytes(&self.signature))
            .map_err(|_| ResponseError::BadSignature)?;
        Ok(self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn sealed(body: &[u8], model: ModelVersion) -> (ResponseSeal, [u8; 32]) {
        let request = [7; 32];
        (ResponseSeal::sign(&key(1), Call::Forward, &request, BodyDigest::of_bytes(body), model), request)
    }

    const MODEL: ModelVersion = ModelVersion { id: [3; 32], step: 41 };

    #[test]
    fn a_sealed_response_round_trips_through_its_headers_and_verifies() {
        let body = b"the answer";
        let (seal, request) = sealed(body, MODEL);
        let mut headers = HeaderMap::new();
        seal.write_headers(&mut headers);
        let back = ResponseSeal::from_headers(&headers).unwrap();
        assert_eq!(back, seal);
        let me = key(1).verifying_key().to_bytes();
        assert_eq!(back.verify(Call::Forward, &me, &request, &BodyDigest::of_bytes(body)), Ok(MODEL));
    }

    #[test]
    fn a_response_for_another_call_request_or_axon_is_refused() {
        let body = b"the answer";
        let (seal, request) = sealed(body, MODEL);
        let me = key(1).verifying_key().to_bytes();
        let digest = BodyDigest::of_bytes(body);
        assert_eq!(seal.verify(Call::Backward, &me, &request, &digest), Err(ResponseError::BadSignature));
        assert_eq!(seal.verify(Call::Forward, &me, &[8; 32], &digest), Err(ResponseError::BadSignature));
        let other = key(2).verifying_key().to_bytes();
        assert!(matches!(
            seal.verify(Call::Forward, &other, &request, &digest),
            Err(ResponseError::WrongResponder { .. })
        ));
        // Another key claiming to be the axon called: its signature does not verify for it.
        let forged = ResponseSeal {
            responder: me,
            ..ResponseSeal::sign(&key(2), Call::Forward, &request, digest, MODEL)
        };
        assert_eq!(forged.verify(Call::Forward, &me, &request, &digest), Err(ResponseError::BadSignature));
    }

    #[test]
    fn headers_of_older_axons_and_malformed_ones_are_named() {
        let mut headers = HeaderMap::new();
        assert_eq!(ResponseSeal::from_headers(&headers), Err(ResponseError::Unsigned));
        assert_eq!(ResponseError::Unsigned.code(), ReturnCode::UnsupportedVersion);
        headers.insert(keys::VERSION, HeaderValue::from_static("3"));
        assert_eq!(ResponseSeal::from_headers(&headers), Err(ResponseError::UnsupportedVersion("3".into())));
        let (seal, _) = sealed(b"x", MODEL);
        seal.write_headers(&mut headers);
        headers.insert(response_keys::MODEL_STEP, HeaderValue::from_static("-1"));
        let err = ResponseSeal::from_headers(&headers).unwrap_err();
        assert!(
            matches!(err, ResponseError::Metadata(AuthError::MalformedField { key: "agora-model-step", .. })),
            "{err:?}"
        );
        assert_eq!(err.code(), ReturnCode::InvalidResponseSignature);
    }

    proptest! {
        /// Any change to what is signed is caught: a body byte, the body's length, the model's
        /// version or step, or any bit of the signature.
        #[test]
        fn any_tampering_is_caught(
            body in proptest::collection::vec(any::<u8>(), 1..200),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
            what in 0usize..5,
        ) {
            let (seal, request) = sealed(&body, MODEL);
            let me = key(1).verifying_key().to_bytes();
            let mut received = BodyDigest::of_bytes(&body);
            let mut seal = seal;
            match what {
                0 => {
                    let mut b = body.clone();
                    let i = at.index(b.len());
                    b[i] ^= 1 << bit;
                    received = BodyDigest::of_bytes(&b);
                }
                1 => received = BodyDigest::of_bytes(&body[1..]),
                2 => seal.model.id[at.index(32)] ^= 1 << bit,
                3 => seal.model.step ^= 1 << (bit + 8 * (at.index(8) as u8)),
                _ => seal.signature[at.index(64)] ^= 1 << bit,
            }
            let verdict = seal.verify(Call::Forward, &me, &request, &received);
            prop_assert!(verdict.is_err(), "tampering {} passed", what);
            prop_assert_eq!(verdict.unwrap_err().code(), ReturnCode::InvalidResponseSignature);
        }
    }
}
