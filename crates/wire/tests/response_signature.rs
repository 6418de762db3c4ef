//! Authenticated responses (protocol 5's MACs; protocol 4's signatures, issue 16) end to end.
//! The real dendrite calls a real axon and gets back the model version its handler reported,
//! authenticated, for Forward and Backward. Then it calls a lying axon: an HTTP/2 server in this
//! file that opens sessions and answers like an axon, MACs with wire's own `ResponseSeal`, and
//! then tampers with one thing (the body, the model version or step, the MAC), signs its
//! handshake with another key, MACs under another session or for another request, sends no MAC,
//! authenticates nothing (protocol 3) or has no handshake (protocol 4). Each lie is caught and
//! reported with its own code, never as SUCCESS.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use prost::Message;
use tonic::codegen::http::{self, HeaderMap, HeaderValue};
use wire::auth::response::response_keys;
use wire::auth::session::HANDSHAKE_PATH;
use wire::metrics::Call;
use wire::proto::{ForwardRequest, ForwardResponse, HandshakeRequest};
use wire::test_utils::{affine, affine_grad};
use wire::{
    serve, AxonConfig, BodyDigest, Caller, Credentials, Dendrite, Handler, HandlerError, Initiator, Modality,
    ModelVersion, Offer, OwnedTensor, ResponseSeal, ReturnCode, Session, StakeTable, Target, TensorView,
};

const SECOND: Duration = Duration::from_secs(1);
const MODEL: ModelVersion = ModelVersion { id: [5; 32], step: 12 };

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn input() -> OwnedTensor {
    OwnedTensor::from_f32(Modality::Tensor, &[1, 1, 3], &[1.0, -2.0, 0.5])
}

/// y = 2x + 1, served by a model that says which version it is.
struct Versioned;

impl Handler for Versioned {
    fn forward(&self, _c: &Caller, x: &TensorView<'_>) -> Result<OwnedTensor, HandlerError> {
        affine(x)
    }

    fn backward(
        &self,
        _c: &Caller,
        _x: &TensorView<'_>,
        g: &TensorView<'_>,
    ) -> Result<Option<OwnedTensor>, HandlerError> {
        affine_grad(g).map(Some)
    }

    fn forward_versioned(
        &self,
        c: &Caller,
        x: &TensorView<'_>,
    ) -> Result<(OwnedTensor, ModelVersion), HandlerError> {
        Ok((self.forward(c, x)?, MODEL))
    }

    fn backward_versioned(
        &self,
        c: &Caller,
        x: &TensorView<'_>,
        g: &TensorView<'_>,
    ) -> Result<(Option<OwnedTensor>, ModelVersion), HandlerError> {
        Ok((self.backward(c, x, g)?, MODEL))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_axon_signs_its_answers_with_the_model_version_and_its_refusals_with_none() {
    let table = StakeTable::new();
    table.set(key(1).verifying_key().to_bytes(), 10);
    let axon = serve(AxonConfig::default(), key(100), Arc::new(Versioned), Arc::new(table)).await.unwrap();
    let t = Target { hotkey: axon.hotkey(), addr: axon.local_addr() };
    let d = Dendrite::new(key(1));
    let r = d.forward(&[t], &input(), SECOND).await;
    assert_eq!(r[0].code, ReturnCode::Success, "{}", r[0].message);
    assert_eq!(r[0].model, Some(MODEL));
    let r = d.backward(&[t], &input(), &[input()], SECOND).await;
    assert_eq!(r[0].code, ReturnCode::Success, "{}", r[0].message);
    assert_eq!(r[0].model, Some(MODEL));
    // A refusal is authenticated too (here the handshake's, signed: the caller knows the axon
    // said it), naming no model.
    let r = Dendrite::new(key(2)).forward(&[t], &input(), SECOND).await;
    assert_eq!(r[0].code, ReturnCode::UnknownCaller, "{}", r[0].message);
    assert_eq!(r[0].model, Some(ModelVersion::UNVERSIONED));
    // The answer is bound to the axon called: the same axon reached under another hotkey (a
    // copier relaying it, or a stale metagraph) fails the check.
    let elsewhere = Target { hotkey: key(101).verifying_key().to_bytes(), addr: axon.local_addr() };
    let r = d.forward(&[elsewhere], &input(), SECOND).await;
    assert_ne!(r[0].code, ReturnCode::Success);
    axon.shutdown().await.unwrap();
}

/// What the lying axon does after MACing an honest answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lie {
    Nothing,
    /// Sends another output than the one MACed.
    Body,
    ModelVersion,
    ModelStep,
    Mac,
    /// Signs the handshake with its own key: not the axon called.
    OtherKey,
    /// MACs under another session's key (a relay passing on what another session said).
    OtherSession,
    /// MACs an answer to another request (a relayed or replayed answer).
    OtherRequest,
    /// Sends no MAC.
    MissingMac,
    /// Authenticates nothing: an axon of protocol 3.
    Unsigned,
    /// Has no Handshake method: an axon of protocol 4.
    NoHandshake,
}

/// A one-connection-at-a-time HTTP/2 server answering Forward like an axon of `key`, with `lie`.
async fn lying_axon(key: SigningKey, lie: Lie) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sessions: Arc<Mutex<Vec<Session>>> = Arc::default();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (key, sessions) = (key.clone(), sessions.clone());
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(socket).await.unwrap();
                while let Some(Ok((request, respond))) = conn.accept().await {
                    tokio::spawn(answer(request, respond, key.clone(), lie, sessions.clone()));
                }
            });
        }
    });
    addr
}

/// A gRPC answer: `headers`, the one message, `grpc-status: 0`.
fn send(mut respond: h2::server::SendResponse<Bytes>, headers: HeaderMap, message: &[u8]) {
    let mut response = http::Response::new(());
    *response.headers_mut() = headers;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    let mut stream = respond.send_response(response, false).unwrap();
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    stream.send_data(Bytes::from(framed), false).unwrap();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    stream.send_trailers(trailers).unwrap();
}

async fn answer(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    key: SigningKey,
    lie: Lie,
    sessions: Arc<Mutex<Vec<Session>>>,
) {
    let (parts, mut body) = request.into_parts();
    let mut bytes = Vec::new();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
        bytes.extend_from_slice(&data);
    }
    if parts.uri.path() == HANDSHAKE_PATH {
        if lie == Lie::NoHandshake {
            let _ = respond.send_response(tonic::Status::unimplemented("no method").into_http(), true);
            return;
        }
        let offer = Offer::from_proto(&HandshakeRequest::decode(&bytes[5..]).unwrap()).unwrap();
        let signer = if lie == Lie::OtherKey { SigningKey::from_bytes(&[77; 32]) } else { key };
        let (accepted, session) = offer.accept(&signer).unwrap();
        sessions.lock().unwrap().push(session);
        return send(respond, HeaderMap::new(), &accepted.encode_to_vec());
    }
    let call = Call::from_path(parts.uri.path()).unwrap();
    let creds = Credentials::from_headers(&parts.headers).unwrap();
    let session = sessions.lock().unwrap().iter().find(|s| s.id == creds.session).cloned().unwrap();
    let request = ForwardRequest::decode(&bytes[5..]).unwrap();
    let x = wire::decode(request.inputs.as_ref().unwrap(), &wire::Limits::default()).unwrap();
    let reply = |y: OwnedTensor| {
        ForwardResponse {
            outputs: Some(y.into_proto()),
            code: ReturnCode::Success as i32,
            message: String::new(),
        }
        .encode_to_vec()
    };
    let answer = affine(&x).expect("the request's floats");
    let honest = reply(answer.clone());
    let mut request_hash = creds.request_hash(call);
    if lie == Lie::OtherRequest {
        request_hash[0] ^= 1;
    }
    let sealer = if lie == Lie::OtherSession {
        // A session of its own with the axon called, as a relay would hold.
        let initiator = Initiator::new(&SigningKey::from_bytes(&[78; 32]), &session.axon, creds.timestamp_ms);
        Offer::from_proto(initiator.request()).unwrap().accept(&key).unwrap().1
    } else {
        session
    };
    let seal = ResponseSeal::seal(&sealer, call, &request_hash, BodyDigest::of_bytes(&honest), MODEL);
    let mut headers = HeaderMap::new();
    seal.write_headers(&mut headers);
    let mut put = |k: &'static str, v: String| {
        headers.insert(k, HeaderValue::from_str(&v).unwrap());
    };
    let mut sent = honest.clone();
    match lie {
        Lie::Body => {
            // The same length, one output changed: what a relay that edits answers sends.
            let mut y = wire::tensor::le_bytes_to_f32s(&answer.data);
            y[0] += 1.0;
            sent = reply(OwnedTensor::from_f32(Modality::Tensor, x.shape, &y));
            assert_eq!(sent.len(), honest.len());
        }
        Lie::ModelVersion => put(response_keys::MODEL_VERSION, hex::encode([6; 32])),
        Lie::ModelStep => put(response_keys::MODEL_STEP, (MODEL.step + 1).to_string()),
        Lie::Mac => {
            let mut mac = seal.mac;
            mac[10] ^= 4;
            put(wire::auth::keys::MAC, hex::encode(mac));
        }
        Lie::MissingMac => {
            headers.remove(wire::auth::keys::MAC);
        }
        Lie::Unsigned => headers.clear(),
        Lie::Nothing | Lie::OtherKey | Lie::OtherSession | Lie::OtherRequest | Lie::NoHandshake => {}
    }
    send(respond, headers, &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lie_in_a_response_is_caught_with_its_code() {
    let axon_key = key(100);
    let hotkey = axon_key.verifying_key().to_bytes();
    let d = Dendrite::new(key(1));
    let cases = [
        (Lie::Nothing, ReturnCode::Success, ""),
        (Lie::Body, ReturnCode::InvalidResponseSignature, "digest"),
        (Lie::ModelVersion, ReturnCode::InvalidResponseSignature, "does not verify"),
        (Lie::ModelStep, ReturnCode::InvalidResponseSignature, "does not verify"),
        (Lie::Mac, ReturnCode::InvalidResponseSignature, "does not verify"),
        (Lie::OtherKey, ReturnCode::InvalidResponseSignature, "not signed by the axon called"),
        (Lie::OtherSession, ReturnCode::InvalidResponseSignature, "does not verify"),
        (Lie::OtherRequest, ReturnCode::InvalidResponseSignature, "does not verify"),
        (Lie::MissingMac, ReturnCode::InvalidResponseSignature, "agora-mac is missing"),
        (Lie::Unsigned, ReturnCode::UnsupportedVersion, "protocol 3 or older"),
        (Lie::NoHandshake, ReturnCode::UnsupportedVersion, "older than 5"),
    ];
    for (lie, code, says) in cases {
        let addr = lying_axon(axon_key.clone(), lie).await;
        let r = d.forward(&[Target { hotkey, addr }], &input(), SECOND).await;
        assert_eq!(r[0].code, code, "{lie:?}: {}", r[0].message);
        assert!(r[0].message.contains(says), "{lie:?}: {}", r[0].message);
        if code == ReturnCode::Success {
            assert_eq!(r[0].model, Some(MODEL));
            assert!(r[0].tensor.is_some());
        } else {
            assert_eq!(
                (r[0].model, r[0].tensor.is_some()),
                (None, false),
                "{lie:?}: nothing of a lie is kept"
            );
        }
    }
    // The dendrite counts them like any code, under the axon's key.
    let m = d.metrics();
    let them = hex::encode(hotkey);
    assert_eq!(m.requests(&them, Call::Forward, ReturnCode::InvalidResponseSignature), 8);
}
