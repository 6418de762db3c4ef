//! The two attacks of issue 13, against an axon in another process (`flood_axon`), speaking
//! either way: protocol 1 (credentials inside the message, as before the fix) or, for any other
//! PROTOCOL argument, credentials in metadata as this crate sends them (now protocol 5: a session
//! opened by a signed handshake, a MAC per call). Run by
//! `crates/wire/attacks.sh`, which starts the axons and reads their memory.
//!
//! `attack keys`: prints `HONEST <hex> FLOODER <hex>` (stake 1,000 and 0 in the script's table).
//! `attack upload ADDR AXON_HEX PROTOCOL [N] [MB]`: N concurrent uploads of MB megabytes from a
//!   key the axon does not know; prints the codes.
//! `attack flood ADDR AXON_HEX PROTOCOL AHEAD_MS COUNT SECS`: the zero-stake key sends COUNT
//!   empty requests dated AHEAD_MS ahead, while the staked key calls in a loop, during the flood
//!   and SECS seconds after; prints `RESULT honest_calls=.. backoff=.. other_failures=..`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use ed25519_dalek::{Signer, SigningKey};
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;
use wire::metrics::Call;
use wire::proto::axon_client::AxonClient;
use wire::proto::{ForwardRequest, ReturnCode};
use wire::{encode, BodyDigest, Credentials, DType, Initiator, Modality, Session};

const HONEST: u8 = 0x01;
const FLOODER: u8 = 0x02;
const STRANGER: u8 = 0x66;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Protocol 1: the fields inside the message, signed over the message without its signature.
#[allow(deprecated)]
fn sign_v1(
    mut req: ForwardRequest,
    key: &SigningKey,
    callee: &[u8; 32],
    nonce: u64,
    ts: u64,
) -> ForwardRequest {
    req.caller = key.verifying_key().to_bytes().to_vec();
    req.callee = callee.to_vec();
    req.nonce = nonce;
    req.timestamp_ms = ts;
    req.signature = Vec::new();
    let domain = b"agora.v1.Axon/Forward";
    let mut h = Sha256::new();
    h.update((domain.len() as u64).to_le_bytes());
    h.update(domain);
    h.update((callee.len() as u64).to_le_bytes());
    h.update(callee);
    h.update(nonce.to_le_bytes());
    h.update(ts.to_le_bytes());
    h.update(Sha256::digest(req.encode_to_vec()));
    let message: [u8; 32] = h.finalize().into();
    req.signature = key.sign(&message).to_bytes().to_vec();
    req
}

/// A signed Forward in either protocol: protocol 1's signature, or this crate's MAC in
/// `session` (a key the axon does not know has none: it names a session the axon never opened,
/// refused before anything is looked at). `fake_digest` skips hashing the body.
#[allow(clippy::too_many_arguments)]
fn request(
    protocol: u32,
    req: ForwardRequest,
    key: &SigningKey,
    callee: &[u8; 32],
    session: Option<&Session>,
    nonce: u64,
    ts: u64,
    fake_digest: bool,
) -> tonic::Request<ForwardRequest> {
    if protocol == 1 {
        return tonic::Request::new(sign_v1(req, key, callee, nonce, ts));
    }
    let digest = if fake_digest {
        BodyDigest { len: req.encoded_len() as u64, ..BodyDigest::of_bytes(&[]) }
    } else {
        BodyDigest::of_message(&req)
    };
    let creds = match session {
        Some(s) => s.credentials(Call::Forward, nonce, ts, digest),
        None => Credentials {
            version: wire::PROTOCOL_VERSION,
            session: [0; 16],
            nonce,
            timestamp_ms: ts,
            body: digest,
            mac: [0; 32],
        },
    };
    let mut r = tonic::Request::new(req);
    creds.write_headers(r.metadata_mut().as_mut());
    r
}

/// Opens a session as `key` (protocol 5's handshake); `None` for protocol 1, which has none.
async fn session(
    c: &mut AxonClient<Channel>,
    protocol: u32,
    key: &SigningKey,
    callee: &[u8; 32],
) -> anyhow::Result<Option<Session>> {
    if protocol == 1 {
        return Ok(None);
    }
    let initiator = Initiator::new(key, callee, now_ms());
    let mut request = tonic::Request::new(initiator.request().clone());
    request.metadata_mut().insert(wire::auth::keys::VERSION, wire::PROTOCOL_VERSION.into());
    let answer = c.handshake(request).await?.into_inner();
    let axon = ed25519_dalek::VerifyingKey::from_bytes(callee)?;
    Ok(Some(initiator.finish(&axon, &answer)?))
}

async fn client(addr: &str) -> anyhow::Result<AxonClient<Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect().await?;
    Ok(AxonClient::new(channel).max_encoding_message_size(usize::MAX).max_decoding_message_size(usize::MAX))
}

fn name(code: i32) -> String {
    ReturnCode::try_from(code).map_or(format!("code {code}"), |c| c.as_str_name().to_string())
}

async fn upload(addr: String, callee: [u8; 32], protocol: u32, n: usize, mb: usize) -> anyhow::Result<()> {
    let data = prost::bytes::Bytes::from(vec![7u8; mb * 1_000_000]);
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (addr, data) = (addr.clone(), data.clone());
            tokio::spawn(async move {
                let mut c = client(&addr).await?;
                let tensor = wire::proto::Tensor {
                    shape: vec![1, data.len() as u64],
                    data,
                    dtype: DType::U8.to_proto() as i32,
                    modality: Modality::Text.to_proto() as i32,
                };
                let req = ForwardRequest { inputs: Some(tensor), ..Default::default() };
                let r = request(protocol, req, &key(STRANGER), &callee, None, i as u64, now_ms(), true);
                Ok::<_, anyhow::Error>(match c.forward(r).await {
                    Ok(r) => name(r.into_inner().code),
                    Err(s) => format!("gRPC {:?}", s.code()),
                })
            })
        })
        .collect();
    let mut codes = BTreeMap::<String, usize>::new();
    for t in tasks {
        *codes.entry(t.await??).or_default() += 1;
    }
    println!("RESULT uploads={n} mb={mb} seconds={:.2} codes={codes:?}", started.elapsed().as_secs_f64());
    Ok(())
}

async fn flood(
    addr: String,
    callee: [u8; 32],
    protocol: u32,
    ahead_ms: u64,
    count: u64,
    secs: u64,
) -> anyhow::Result<()> {
    let flooders: Vec<_> = (0..4u64)
        .map(|lane| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let mut c = client(&addr).await?;
                let session = session(&mut c, protocol, &key(FLOODER), &callee).await?;
                let mut codes = BTreeMap::<String, usize>::new();
                let mut nonce = lane;
                while nonce < count {
                    let r = request(
                        protocol,
                        ForwardRequest::default(),
                        &key(FLOODER),
                        &callee,
                        session.as_ref(),
                        nonce,
                        now_ms() + ahead_ms,
                        false,
                    );
                    let code = match c.forward(r).await {
                        Ok(r) => name(r.into_inner().code),
                        Err(s) => format!("gRPC {:?}", s.code()),
                    };
                    *codes.entry(code).or_default() += 1;
                    nonce += 4;
                }
                Ok::<_, anyhow::Error>(codes)
            })
        })
        .collect();
    let mut honest = client(&addr).await?;
    let honest_session = session(&mut honest, protocol, &key(HONEST), &callee).await?;
    let inputs = || Some(encode(DType::F32, &[1, 1, 4], Modality::Tensor, vec![0; 16]));
    let (mut calls, mut backoff, mut other) = (0u64, 0u64, BTreeMap::<String, usize>::new());
    let mut nonce = 1u64 << 40;
    let mut flood_over: Option<Instant> = None;
    loop {
        if flood_over.is_none() && flooders.iter().all(|f| f.is_finished()) {
            flood_over = Some(Instant::now());
        }
        if flood_over.is_some_and(|t| t.elapsed() > Duration::from_secs(secs)) {
            break;
        }
        nonce += 1;
        let req = ForwardRequest { inputs: inputs(), ..Default::default() };
        let r =
            request(protocol, req, &key(HONEST), &callee, honest_session.as_ref(), nonce, now_ms(), false);
        let code = match honest.forward(r).await {
            Ok(r) => r.into_inner().code,
            Err(_) => -1,
        };
        calls += 1;
        if code == ReturnCode::Backoff as i32 {
            backoff += 1;
        } else if code != ReturnCode::Success as i32 {
            *other.entry(name(code)).or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut flood_codes = BTreeMap::<String, usize>::new();
    for f in flooders {
        for (k, v) in f.await?? {
            *flood_codes.entry(k).or_default() += v;
        }
    }
    println!(
        "RESULT honest_calls={calls} backoff={backoff} backoff_rate={:.3} other_failures={other:?} flood={flood_codes:?}",
        backoff as f64 / calls.max(1) as f64
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().context("missing argument; see the file's doc comment");
    let hotkey = |i: usize| -> anyhow::Result<[u8; 32]> {
        hex::decode(arg(i)?)?.try_into().map_err(|_| anyhow::anyhow!("a hotkey is 32 bytes"))
    };
    match arg(0)?.as_str() {
        "keys" => {
            let hex_of = |s| hex::encode(key(s).verifying_key().to_bytes());
            println!("HONEST {} FLOODER {}", hex_of(HONEST), hex_of(FLOODER));
            Ok(())
        }
        "upload" => {
            let n = arg(4).map_or(Ok(16), |s| s.parse())?;
            let mb = arg(5).map_or(Ok(100), |s| s.parse())?;
            upload(arg(1)?, hotkey(2)?, arg(3)?.parse()?, n, mb).await
        }
        "flood" => {
            flood(arg(1)?, hotkey(2)?, arg(3)?.parse()?, arg(4)?.parse()?, arg(5)?.parse()?, arg(6)?.parse()?)
                .await
        }
        other => bail!("unknown mode {other}"),
    }
}
