//! The fuzz targets: each takes untrusted bytes to one decoder, checks what must hold whatever
//! the bytes (no panic, a typed error, canonical re-encoding, invariants of what decoded), and
//! carries seeds (valid encodings of every kind) and a dictionary of tokens.

use ledger::{
    dev_key, public_key, Block, Call, Endpoint, GenesisConfig, Ledger, MemStore, SignedTx, StoredBlock,
    TxBody, TxError,
};
use prost::Message;
use std::cell::RefCell;
use std::sync::Arc;

/// One fuzz target.
pub struct Target {
    /// Its name on the command line and its directory under `regressions/`.
    pub name: &'static str,
    /// What it decodes.
    pub about: &'static str,
    /// Tokens a mutation may insert.
    pub dict: &'static [&'static [u8]],
    /// Valid (and some invalid) inputs to start from.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Runs one input; panics on a broken property.
    pub run: fn(&[u8]),
}

/// Every target, in the order the driver runs them.
pub fn all() -> Vec<Target> {
    vec![
        Target {
            name: "transaction",
            about: "SignedTx::decode (what agora_submitTransaction receives), then Ledger::check_tx and check_admission",
            dict: &[],
            seeds: transaction_seeds,
            run: transaction,
        },
        Target {
            name: "block",
            about: "Block and StoredBlock from borsh, then the block's transactions (re-signed) executed by propose",
            dict: &[],
            seeds: block_seeds,
            run: block,
        },
        Target {
            name: "tensor",
            about: "wire::proto::Tensor from protobuf, then wire::decode and decode_output (the tensor codec)",
            dict: &[],
            seeds: tensor_seeds,
            run: tensor,
        },
        Target {
            name: "rpc",
            about: "a JSON-RPC request to the node's real API (every method's parameter parsing), in process",
            dict: RPC_DICT,
            seeds: rpc_seeds,
            run: rpc,
        },
    ]
}

/// The keys that sign what the targets execute: alice (funded) and three registered neurons.
const SIGNERS: [&str; 4] = ["alice", "n0", "n1", "n2"];
const CHAIN: &str = "agora-fuzz";
const MAX_TX_BYTES: usize = 64 * 1024;

/// A chain with funded signers, three neurons and an epoch every 2 blocks.
fn genesis() -> GenesisConfig {
    node::test_utils::neuron_genesis(CHAIN, 2)
}

thread_local! {
    static LEDGER: RefCell<Ledger<MemStore>> =
        RefCell::new(Ledger::init(MemStore::new(), genesis()).expect("the fuzz genesis is valid"));
}

/// One of each call, signed by the signer it needs.
fn calls() -> Vec<(usize, Call)> {
    let key = |i: usize| public_key(&dev_key(SIGNERS[i]));
    vec![
        (0, Call::Transfer { to: key(1), amount: 5 }),
        (0, Call::Register { coldkey: key(0), pow_block: 0, pow_nonce: 7 }),
        (1, Call::RegisterBy { hotkey: public_key(&dev_key("new")), coldkey: key(0), stake: 3 }),
        (1, Call::Serve { endpoint: endpoint() }),
        (0, Call::AddStake { hotkey: key(2), amount: 9 }),
        (0, Call::RemoveStake { hotkey: key(2), amount: 1 }),
        (1, Call::set_weights(vec![0, 2], &[0.25, 0.75])),
        (
            2,
            Call::SetWeights { uids: vec![0, 0], values: vec![ledger::Float(f64::NAN), ledger::Float(-1.0)] },
        ),
        (1, Call::PublishVersion { version: ledger::Hash([7; 32]), step: 3 }),
        (1, Call::PublishVersion { version: ledger::Hash::ZERO, step: 0 }),
    ]
}

fn endpoint() -> Endpoint {
    Endpoint {
        ip: std::net::IpAddr::from([127, 0, 0, 1]).into(),
        port: 9000,
        protocol: ledger::Protocol::Grpc,
        modality: ledger::Modality::Text,
    }
}

fn signed(signer: usize, nonce: u64, call: Call) -> SignedTx {
    let k = dev_key(SIGNERS[signer % SIGNERS.len()]);
    TxBody { sender: public_key(&k), nonce, fee: 10_000, call }.sign(&k, CHAIN)
}

fn transaction_seeds() -> Vec<Vec<u8>> {
    calls().into_iter().map(|(s, c)| signed(s, 0, c).encode()).collect()
}

/// `SignedTx::decode`: a typed error or a transaction whose encoding is the input, which the
/// ledger's checks then judge without panicking.
fn transaction(bytes: &[u8]) {
    match SignedTx::decode(bytes, MAX_TX_BYTES) {
        Ok(tx) => {
            assert_eq!(tx.encode(), bytes, "two encodings of one transaction");
            assert_eq!(tx.prepare().size, bytes.len());
            LEDGER.with(|l| {
                let l = l.borrow();
                let _ = l.check_tx(&tx);
                let _ = l.check_admission(&tx, &[&tx.body]);
            });
        }
        Err(e) => assert!(matches!(e, TxError::Malformed(_) | TxError::Oversized { .. }), "{e:?}"),
    }
}

fn block_seeds() -> Vec<Vec<u8>> {
    let txs: Vec<SignedTx> =
        calls().into_iter().enumerate().map(|(n, (s, c))| signed(s, n as u64, c)).collect();
    LEDGER.with(|l| {
        let mut l = l.borrow_mut();
        let (block, _) = l.propose(txs, 1, public_key(&dev_key("v"))).expect("a block");
        let outcome = l.pending().cloned().expect("pending");
        l.discard().expect("discard");
        let stored = StoredBlock { block: block.clone(), receipts: outcome.receipts, epoch: outcome.epoch };
        vec![borsh::to_vec(&block).unwrap_or_default(), borsh::to_vec(&stored).unwrap_or_default()]
    })
}

/// `Block` and `StoredBlock` from borsh (what a store or a peer's block gives): canonical when
/// they decode. The block's transactions are then re-signed by the fuzz signers (a fuzzer cannot
/// forge signatures, and unsigned they stop at authentication) and executed by `propose`:
/// issuance must still equal balances plus stakes, and the ledger return to its head.
fn block(bytes: &[u8]) {
    if let Ok(sb) = borsh::from_slice::<StoredBlock>(bytes) {
        assert_eq!(borsh::to_vec(&sb).unwrap_or_default(), bytes, "two encodings of one stored block");
    }
    let Ok(b) = borsh::from_slice::<Block>(bytes) else { return };
    assert_eq!(borsh::to_vec(&b).unwrap_or_default(), bytes, "two encodings of one block");
    LEDGER.with(|l| {
        let mut l = l.borrow_mut();
        let head = l.head();
        let mut nonces = [0u64; SIGNERS.len()];
        let txs: Vec<SignedTx> = b
            .txs
            .into_iter()
            .take(64)
            .map(|t| {
                let s = usize::from(t.body.sender.0[0]) % SIGNERS.len();
                let nonce = if t.body.nonce % 4 == 0 { t.body.nonce } else { nonces[s] };
                nonces[s] += 1;
                let k = dev_key(SIGNERS[s]);
                TxBody { sender: public_key(&k), nonce, ..t.body }.sign(&k, CHAIN)
            })
            .collect();
        let ts = b.header.timestamp_ms.max(head.timestamp_ms);
        if l.propose(txs, ts, b.header.proposer).is_ok() {
            let total = l.issuance().total();
            assert_eq!(total, l.state().circulating(), "issuance != balances + stakes after the block");
            l.discard().expect("discard");
        }
        assert_eq!(l.head(), head);
    });
}

fn tensor_seeds() -> Vec<Vec<u8>> {
    use wire::{DType, Modality};
    let mut seeds = vec![
        wire::encode(DType::F32, &[2, 3, 4], Modality::Tensor, wire::tensor::f32s_to_le_bytes(&[0.5; 24])),
        wire::encode(DType::F16, &[1, 2, 2], Modality::Tensor, vec![0; 8]),
        wire::encode(DType::BF16, &[1, 1, 2], Modality::Tensor, vec![0; 4]),
        wire::encode(DType::F32, &[1, 1, 1], Modality::Tensor, f32::NAN.to_le_bytes().to_vec()),
        wire::encode(DType::F32, &[u64::MAX, 2, 2], Modality::Tensor, vec![0; 16]),
    ];
    for m in [Modality::Text, Modality::Image] {
        for d in [DType::I64, DType::U8, DType::F32] {
            let rank = m.rank();
            let shape = vec![1u64; rank];
            seeds.push(wire::encode(d, &shape, m, vec![1; d.size()]));
        }
    }
    seeds.into_iter().map(|t| t.encode_to_vec()).collect()
}

/// The tensor codec: protobuf bytes to `proto::Tensor` (prost), then `wire::decode` under the
/// default limits and under small ones. A decoded view's bytes are exactly its shape times its
/// dtype's size, within the limits, finite for floats, and survive re-encoding.
fn tensor(bytes: &[u8]) {
    let Ok(t) = wire::proto::Tensor::decode(bytes) else { return };
    assert_eq!(wire::proto::Tensor::decode(t.encode_to_vec().as_slice()).ok().as_ref(), Some(&t));
    let small = wire::Limits { max_bytes: 4096, max_batch: 4 };
    for limits in [wire::Limits::default(), small] {
        for output in [false, true] {
            let view = if output { wire::decode_output(&t, &limits) } else { wire::decode(&t, &limits) };
            match view {
                Ok(v) => {
                    let elements: u64 = v.shape.iter().product();
                    assert_eq!(elements * v.dtype.size() as u64, v.data.len() as u64);
                    assert!(v.data.len() <= limits.max_bytes && v.shape[0] <= limits.max_batch);
                    if let Some(f) = v.to_f32_vec() {
                        assert!(f.iter().all(|x| x.is_finite()), "a non-finite float passed");
                    }
                    let again = v.to_owned().into_proto();
                    assert_eq!(wire::decode(&again, &limits).map(|w| w.to_owned()).ok(), Some(v.to_owned()));
                }
                Err(e) => {
                    let _ =
                        (e.to_string(), e.code(wire::Direction::Request), e.code(wire::Direction::Response));
                }
            }
        }
    }
}

const RPC_DICT: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b":",
    b"null",
    b"true",
    b"-1",
    b"18446744073709551616",
    b"1e308",
    b"0x",
    b"\"params\":",
    b"\"method\":",
    b"\"id\":",
    b"{\"uid\":65535}",
    b"{\"block\":1}",
    b"\"5122d3e3d3df172712f79d7acc6f3d824458d4e027d01596976a341b202ca57d\"",
    b"agora_submitTransaction",
    b"agora_metagraph",
    b"agora_block",
    b"agora_neuron",
    b"agora_subscribeNewHeads",
    b"agora_neurons",
    b"agora_network",
    b"agora_history",
    b"agora_weights",
    b"agora_localnet",
    b"{\"limit\":1000,\"sort\":\"stake\",\"descending\":true}",
    b"{\"uids\":[0,1],\"from\":1,\"to\":2}",
];

/// The node's API over a small chain in a temp dir, and a runtime to call it on.
struct Api {
    rt: tokio::runtime::Runtime,
    module: jsonrpsee::RpcModule<Arc<node::Shared>>,
    dir: std::path::PathBuf,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

thread_local! {
    static API: Api = api();
}

fn api() -> Api {
    let dir = std::env::temp_dir().join(format!("agora-fuzz-rpc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (module, shared) = node::api(&dir, genesis()).expect("an API over a new chain");
    // A few blocks, with the seeds' transactions, so past heights and blocks exist.
    for (n, (s, c)) in calls().into_iter().enumerate() {
        let _ = shared.submit(&signed(s, n as u64, c).encode());
        shared.produce_block().expect("a block");
    }
    Api { rt, module, dir }
}

fn rpc_seeds() -> Vec<Vec<u8>> {
    let tx = hex::encode(signed(0, 0, Call::Transfer { to: public_key(&dev_key("n1")), amount: 1 }).encode());
    let key = public_key(&dev_key("alice")).to_string();
    let call = |method: &str, params: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#)
    };
    [
        call("agora_submitTransaction", &format!(r#"["{tx}"]"#)),
        call("agora_submitTransaction", &format!(r#"["0x{tx}"]"#)),
        call("agora_getTransaction", &format!(r#"["{}"]"#, "ab".repeat(32))),
        call("agora_account", &format!(r#"["{key}"]"#)),
        call("agora_neuron", r#"[{"uid":1}]"#),
        call("agora_neuron", &format!(r#"{{"hotkey":"{}"}}"#, public_key(&dev_key("n0")))),
        call("agora_metagraph", "[]"),
        call("agora_metagraph", "[2]"),
        call("agora_metagraph", r#"{"block":3}"#),
        call("agora_block", "[1]"),
        call("agora_block", &format!(r#"["{}"]"#, "cd".repeat(32))),
        call("agora_head", "[]"),
        call("agora_genesis", "[]"),
        call("agora_difficulty", "[]"),
        call("agora_subscribeNewHeads", "[]"),
        call("agora_neurons", r#"[{"offset":1,"limit":2,"sort":"incentive","descending":true}]"#),
        call("agora_neurons", r#"{"limit":0}"#),
        call("agora_network", "[]"),
        call("agora_history", r#"[{"uids":[0,1],"from":1,"to":3}]"#),
        call("agora_history", r#"[{"from":0,"to":18446744073709551615}]"#),
        call("agora_weights", "[0]"),
        call("agora_localnet", "[]"),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// A request to the node's API: an answer that is JSON, and never JSON-RPC's "internal error"
/// (a handler that failed without saying why).
fn rpc(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    API.with(|api| {
        let Ok((answer, _subscription)) = api.rt.block_on(api.module.raw_json_request(&text, 4)) else {
            return;
        };
        let v: serde_json::Value =
            serde_json::from_str(answer.get()).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"));
        assert_ne!(v["error"]["code"], -32603, "internal error: {answer}");
    });
}
