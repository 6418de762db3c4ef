//! Response MACs (protocol 5; signatures in protocol 4, issue 16): every Forward and Backward
//! answer the axon can tie to a session, refusals included, carries a keyed BLAKE3 under the
//! session's response key ([`super::session`]) over the request it answers, the response body
//! and the model that answered, so the caller knows the answer is the axon's (only the two ends
//! of the session hold the key, and the axon's hotkey signed the handshake) and which model
//! computed it, and an axon cannot pass off another axon's answers as its own.
//!
//! The response's metadata (HTTP/2 headers, sent before the body; ASCII values, hex lowercase):
//!
//! | key | value |
//! |---|---|
//! | `agora-version` | `5` |
//! | `agora-model-version` | 32 bytes naming the model that answered (a hash of its parameters); all zero
//! when none did (a refusal) or the axon does not say |
//! | `agora-model-step` | decimal u64: that model's training step (0 with an all-zero version) |
//! | `agora-body-len` | decimal u64: length of the response message (the gRPC message bytes) |
//! | `agora-digest` | `blake3:<hex>` of exactly those bytes |
//! | `agora-mac` | 32 bytes: keyed BLAKE3 under the session's response key over [`response_message`] |
//!
//! The request is named by its hash, [`Credentials::request_hash`](super::Credentials::request_hash): BLAKE3
//! of the bytes its
//! MAC covers. An axon that could not tie the request to a session (no or malformed `agora-*`
//! metadata) answers with `agora-version` alone: the caller takes no such answer as the
//! axon's. A caller checks the body's length and digest and the MAC; any failure, a missing
//! MAC included, is INVALID_RESPONSE_SIGNATURE, and an answer without `agora-version` (an
//! axon of protocol 3 or older) or of another version is UNSUPPORTED_VERSION.

use tonic::codegen::http::{HeaderMap, HeaderValue};

use super::{
    field, header_body, header_bytes, header_number, keys, AuthError, BodyDigest, Session, PROTOCOL_VERSION,
};
use crate::metrics::Call;
use crate::proto::ReturnCode;

/// The response-only metadata keys (the others are shared with requests: [`keys`]).
pub mod response_keys {
    /// The answering model's id, in hex.
    pub const MODEL_VERSION: &str = "agora-model-version";
    /// The answering model's training step.
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

    /// Whether this names no model.
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
    /// The response has no `agora-version`: an axon of protocol 3 or older, whose answers are not
    /// authenticated.
    #[error("the axon's response is not authenticated (no agora-version in its metadata): it speaks agora protocol 3 or older, and this dendrite accepts only protocol {PROTOCOL_VERSION}'s authenticated responses")]
    Unsigned,
    /// The response speaks another protocol version (the value it sent).
    #[error(
        "the axon's response says agora-version {0:?}; this dendrite speaks protocol {PROTOCOL_VERSION}"
    )]
    UnsupportedVersion(String),
    /// The response's metadata is missing a key or does not parse.
    #[error("the axon's response metadata: {0}")]
    Metadata(AuthError),
    /// The body's length is not the authenticated one.
    #[error("the response body is {got} bytes, its MAC says {declared}")]
    BodyLength {
        /// The length the MAC covers.
        declared: u64,
        /// The body's length.
        got: u64,
    },
    /// The body's digest is not the authenticated one: the body was changed on the way.
    #[error("the response body's digest does not match the authenticated agora-digest")]
    DigestMismatch,
    /// The MAC is not the one the session's response key gives: not this axon's answer to this call.
    #[error("the response MAC does not verify for this session, request, body and model version")]
    BadMac,
}

impl ResponseError {
    /// The return code the dendrite records: UNSUPPORTED_VERSION for a protocol mismatch,
    /// INVALID_RESPONSE_SIGNATURE otherwise.
    pub fn code(&self) -> ReturnCode {
        match self {
            ResponseError::Unsigned | ResponseError::UnsupportedVersion(_) => ReturnCode::UnsupportedVersion,
            _ => ReturnCode::InvalidResponseSignature,
        }
    }
}

/// The exact bytes a response's MAC covers (keyed BLAKE3 under the session's response key):
///
/// ```text
/// field("agora/5/response") || field(path) || field(request_hash)
///   || field(digest algorithm name) || u64le(body_len) || field(digest)
///   || field(model_version) || u64le(model_step)
/// field(x) = u64le(len(x)) || x;  path = "/agora.v1.Axon/Forward" or "/agora.v1.Axon/Backward"
/// ```
///
/// The tag differs from a request's (`agora/5/request`) and so does the key, so no call's MAC
/// is an answer's.
pub fn response_message(
    call: Call,
    request_hash: &[u8; 32],
    body: &BodyDigest,
    model: &ModelVersion,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(224);
    field(&mut out, format!("agora/{PROTOCOL_VERSION}/response").as_bytes());
    field(&mut out, call.path().as_bytes());
    field(&mut out, request_hash);
    field(&mut out, body.algorithm.name().as_bytes());
    out.extend_from_slice(&body.len.to_le_bytes());
    field(&mut out, &body.hash);
    field(&mut out, &model.id);
    out.extend_from_slice(&model.step.to_le_bytes());
    out
}

/// An axon's MAC on one response, as its metadata carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseSeal {
    /// The model version that computed the answer.
    pub model: ModelVersion,
    /// The body's length and digest.
    pub body: BodyDigest,
    /// The keyed BLAKE3 under the session's response key of [`response_message`]: the call, the
    /// request's hash, the body's digest and the model version.
    pub mac: [u8; 32],
}

impl ResponseSeal {
    /// Seals a response whose message bytes digest to `body`, answering the request with hash
    /// `request_hash` in `session`.
    pub fn seal(
        session: &Session,
        call: Call,
        request_hash: &[u8; 32],
        body: BodyDigest,
        model: ModelVersion,
    ) -> ResponseSeal {
        let mac = session.response_mac(&response_message(call, request_hash, &body, &model));
        ResponseSeal { model, body, mac: mac.into() }
    }

    /// Writes the six keys of an authenticated response (replacing any already there).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let mut put = |key: &'static str, value: String| {
            // Hex and decimal digits are always valid header values.
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(key, v);
            }
        };
        put(keys::VERSION, PROTOCOL_VERSION.to_string());
        put(response_keys::MODEL_VERSION, hex::encode(self.model.id));
        put(response_keys::MODEL_STEP, self.model.step.to_string());
        put(keys::BODY_LEN, self.body.len.to_string());
        put(keys::DIGEST, self.body.header_value());
        put(keys::MAC, hex::encode(self.mac));
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
                model: ModelVersion {
                    id: header_bytes(headers, response_keys::MODEL_VERSION)?,
                    step: header_number(headers, response_keys::MODEL_STEP)?,
                },
                body: header_body(headers)?,
                mac: header_bytes(headers, keys::MAC)?,
            })
        };
        read().map_err(ResponseError::Metadata)
    }

    /// Checks that this response was sealed in `session` (the dendrite's, opened with the axon
    /// called) for the request `request_hash`, and that the body received (`received`, digested
    /// as it arrived) is the one sealed. The authenticated model version on success.
    pub fn verify(
        &self,
        session: &Session,
        call: Call,
        request_hash: &[u8; 32],
        received: &BodyDigest,
    ) -> Result<ModelVersion, ResponseError> {
        if received.len != self.body.len {
            return Err(ResponseError::BodyLength { declared: self.body.len, got: received.len });
        }
        if received.algorithm != self.body.algorithm || received.hash != self.body.hash {
            return Err(ResponseError::DigestMismatch);
        }
        // blake3::Hash compares in constant time.
        let expected = session.response_mac(&response_message(call, request_hash, &self.body, &self.model));
        if expected != blake3::Hash::from(self.mac) {
            return Err(ResponseError::BadMac);
        }
        Ok(self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::session::tests::open;
    use proptest::prelude::*;

    fn sealed(body: &[u8], model: ModelVersion) -> (ResponseSeal, [u8; 32], Session) {
        let request = [7; 32];
        let (mine, theirs) = open(1, 2);
        (
            ResponseSeal::seal(&theirs, Call::Forward, &request, BodyDigest::of_bytes(body), model),
            request,
            mine,
        )
    }

    const MODEL: ModelVersion = ModelVersion { id: [3; 32], step: 41 };

    #[test]
    fn a_sealed_response_round_trips_through_its_headers_and_verifies() {
        let body = b"the answer";
        let (seal, request, session) = sealed(body, MODEL);
        let mut headers = HeaderMap::new();
        seal.write_headers(&mut headers);
        let back = ResponseSeal::from_headers(&headers).unwrap();
        assert_eq!(back, seal);
        assert_eq!(back.verify(&session, Call::Forward, &request, &BodyDigest::of_bytes(body)), Ok(MODEL));
    }

    #[test]
    fn a_response_for_another_call_request_or_session_is_refused() {
        let body = b"the answer";
        let (seal, request, session) = sealed(body, MODEL);
        let digest = BodyDigest::of_bytes(body);
        assert_eq!(seal.verify(&session, Call::Backward, &request, &digest), Err(ResponseError::BadMac));
        assert_eq!(seal.verify(&session, Call::Forward, &[8; 32], &digest), Err(ResponseError::BadMac));
        // Another session between the same two keys, or with another axon: other keys.
        for (caller, axon) in [(1, 2), (1, 3)] {
            let (other, _) = open(caller, axon);
            assert_eq!(seal.verify(&other, Call::Forward, &request, &digest), Err(ResponseError::BadMac));
        }
    }

    #[test]
    fn headers_of_older_axons_and_malformed_ones_are_named() {
        let mut headers = HeaderMap::new();
        assert_eq!(ResponseSeal::from_headers(&headers), Err(ResponseError::Unsigned));
        assert_eq!(ResponseError::Unsigned.code(), ReturnCode::UnsupportedVersion);
        headers.insert(keys::VERSION, HeaderValue::from_static("4"));
        assert_eq!(ResponseSeal::from_headers(&headers), Err(ResponseError::UnsupportedVersion("4".into())));
        let (seal, _, _) = sealed(b"x", MODEL);
        seal.write_headers(&mut headers);
        headers.insert(response_keys::MODEL_STEP, HeaderValue::from_static("-1"));
        let err = ResponseSeal::from_headers(&headers).unwrap_err();
        assert!(
            matches!(err, ResponseError::Metadata(AuthError::MalformedField { key: "agora-model-step", .. })),
            "{err:?}"
        );
        assert_eq!(err.code(), ReturnCode::InvalidResponseSignature);
        seal.write_headers(&mut headers);
        headers.remove(keys::MAC);
        let err = ResponseSeal::from_headers(&headers).unwrap_err();
        assert_eq!(err, ResponseError::Metadata(AuthError::MissingField("agora-mac")));
        assert_eq!(err.code(), ReturnCode::InvalidResponseSignature);
    }

    proptest! {
        /// Any change to what the MAC covers is caught: a body byte, the body's length, the
        /// model's version or step, or any bit of the MAC.
        #[test]
        fn any_tampering_is_caught(
            body in proptest::collection::vec(any::<u8>(), 1..200),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
            what in 0usize..5,
        ) {
            let (seal, request, session) = sealed(&body, MODEL);
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
                _ => seal.mac[at.index(32)] ^= 1 << bit,
            }
            let verdict = seal.verify(&session, Call::Forward, &request, &received);
            prop_assert!(verdict.is_err(), "tampering {} passed", what);
            prop_assert_eq!(verdict.unwrap_err().code(), ReturnCode::InvalidResponseSignature);
        }
    }
}
