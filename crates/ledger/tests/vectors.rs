//! The shared transaction vectors (`docs/vectors/transactions.json`): what the ledger encodes,
//! hashes, signs and identifies, byte for byte, so another implementation (the Python package's
//! tests read the same file, `docs/transactions.md` specifies the format) can check itself
//! against the ledger. A change to the encoding makes this test fail until the file is
//! regenerated on purpose:
//!
//! ```sh
//! AGORA_WRITE_VECTORS=1 cargo test -p ledger --test vectors
//! ```

use ledger::{
    dev_key, pow, public_key, Call, CommitRevealConfig, Endpoint, Float, Hash, Ip, Modality, Protocol,
    PublicKey, Salt, SignedTx, SubnetParams, TxBody, TxError,
};
use serde_json::{json, Value};
use std::path::PathBuf;

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors/transactions.json")
}

fn key(name: &str) -> PublicKey {
    public_key(&dev_key(name))
}

/// One transaction of every kind, with edge values: the largest u64, an IPv6 endpoint, an
/// empty and a long weight row, a chain id of 64 bytes.
fn cases() -> Vec<(&'static str, &'static str, &'static str, u64, u64, Call)> {
    let endpoint = |ip: Ip, port, modality| Endpoint { ip, port, protocol: Protocol::Grpc, modality };
    let long_uids: Vec<u16> = (0..40).map(|k| k * 7).collect();
    // Dyadic values (24 of 1/32, 16 of 1/64): exact in binary and in short decimals, because
    // the JSON `body` must parse back to the same bits in any reader (serde_json's default
    // float parser, for one, is not exact for every 17-digit decimal).
    let long_values: Vec<f64> = (0..40).map(|k| if k < 24 { 1.0 / 32.0 } else { 1.0 / 64.0 }).collect();
    let chain64 = "c".repeat(64);
    let chain64: &'static str = Box::leak(chain64.into_boxed_str());
    vec![
        (
            "transfer",
            "alice",
            "agora-dev",
            0,
            10_000,
            Call::Transfer { to: key("bob"), amount: 1_000_000_000 },
        ),
        (
            "transfer_max_amount",
            "bob",
            "agora-localnet",
            u64::MAX,
            u64::MAX,
            Call::Transfer { to: key("alice"), amount: u64::MAX },
        ),
        (
            "register",
            "miner-hotkey",
            "agora-dev",
            0,
            0,
            Call::Register { coldkey: key("miner-coldkey"), pow_block: 17, pow_nonce: 123_456_789 },
        ),
        (
            "register_by",
            "alice",
            "agora-dev",
            5,
            10_000,
            Call::RegisterBy {
                hotkey: key("newcomer"),
                coldkey: key("newcomer-coldkey"),
                stake: 2_500_000_000,
            },
        ),
        (
            "serve_ipv4",
            "miner-hotkey",
            "agora-dev",
            1,
            10_000,
            Call::Serve { endpoint: endpoint(Ip::V4([203, 0, 113, 7]), 8091, Modality::Text) },
        ),
        (
            "serve_ipv6",
            "miner-hotkey",
            "agora-dev",
            2,
            10_000,
            Call::Serve {
                endpoint: endpoint(
                    Ip::V6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
                    65535,
                    Modality::Tensor,
                ),
            },
        ),
        (
            "add_stake",
            "miner-coldkey",
            "agora-dev",
            3,
            10_000,
            Call::AddStake { hotkey: key("miner-hotkey"), amount: 10 * ledger::UNITS_PER_TOKEN },
        ),
        (
            "remove_stake",
            "miner-coldkey",
            "agora-dev",
            4,
            10_000,
            Call::RemoveStake { hotkey: key("miner-hotkey"), amount: 2_500_000_000 },
        ),
        (
            "set_weights",
            "miner-hotkey",
            "agora-dev",
            3,
            10_000,
            Call::set_weights(vec![0, 2, 5], &[0.5, 0.25, 0.25]),
        ),
        ("set_weights_empty", "miner-hotkey", chain64, 4, 10_000, Call::set_weights(vec![], &[])),
        (
            "set_weights_long",
            "miner-hotkey",
            "agora-localnet",
            9,
            20_000,
            Call::SetWeights { uids: long_uids, values: long_values.into_iter().map(Float).collect() },
        ),
        (
            "commit_weights",
            "miner-hotkey",
            "agora-dev",
            10,
            0,
            Call::CommitWeights {
                commitment: ledger::commitment(
                    &key("miner-hotkey"),
                    &[0, 2],
                    &[Float(0.75), Float(0.25)],
                    &Salt([0x5a; 32]),
                ),
            },
        ),
        (
            "reveal_weights",
            "miner-hotkey",
            "agora-dev",
            11,
            0,
            Call::RevealWeights {
                uids: vec![0, 2],
                values: vec![Float(0.75), Float(0.25)],
                salt: Salt([0x5a; 32]),
            },
        ),
        (
            "publish_version",
            "miner-hotkey",
            "agora-dev",
            10,
            10_000,
            Call::PublishVersion { version: Hash(*b"blake3 of the model parameters!!"), step: 1_234 },
        ),
        (
            "set_take",
            "miner-coldkey",
            "agora-dev",
            2,
            10_000,
            Call::SetTake { hotkey: key("miner-hotkey"), take: 11_796 },
        ),
        (
            "burned_register",
            "alice",
            "agora-dev",
            6,
            10_000,
            Call::BurnedRegister { hotkey: key("newcomer") },
        ),
        (
            "create_subnet",
            "alice",
            "agora-dev",
            7,
            10_000,
            Call::CreateSubnet {
                params: SubnetParams {
                    mechanism: "basic".into(),
                    tempo: 50,
                    max_neurons: 256,
                    immunity_period: 200,
                    difficulty: 1_000,
                    weights_rate_limit: 5,
                    commit_reveal: Some(CommitRevealConfig { reveal_delay: 50, reveal_window: 25 }),
                },
            },
        ),
        (
            "subnet_set_weights",
            "miner-hotkey",
            "agora-dev",
            11,
            0,
            Call::set_weights(vec![0, 3], &[0.25, 0.75]).on_subnet(3),
        ),
    ]
}

fn transaction_vector(name: &str, signer: &str, chain_id: &str, nonce: u64, fee: u64, call: Call) -> Value {
    let k = dev_key(signer);
    let body = TxBody { sender: public_key(&k), nonce, fee, call };
    let encoded_body = body.encode();
    let body_hash = body.hash();
    let message = ledger::tx::signing_message(chain_id, &body_hash);
    let tx = body.clone().sign(&k, chain_id);
    json!({
        "name": name,
        "signer_dev_key": signer,
        "signer_seed": hex::encode(k.to_bytes()),
        "chain_id": chain_id,
        "body": body,
        "body_hex": hex::encode(&encoded_body),
        "body_hash": body_hash.to_hex(),
        "signing_message": hex::encode(&message),
        "signature": tx.signature.to_hex(),
        "tx_hex": hex::encode(tx.encode()),
        "id": tx.id().to_hex(),
    })
}

/// Proof-of-work seals: one that meets its difficulty and one that does not.
fn pow_vectors() -> Vec<Value> {
    let block = Hash(*b"a block hash of 32 bytes, fixed!");
    let hotkey = key("miner-hotkey");
    let difficulty = 1_000;
    let nonce = pow::solve(&block, &hotkey, difficulty, 0, 1_000_000).expect("a seal within 1M tries");
    let mut out = Vec::new();
    for (n, d) in [(nonce, difficulty), (0, u64::MAX)] {
        let s = pow::seal(&block, &hotkey, n);
        out.push(json!({
            "block_hash": block.to_hex(),
            "hotkey": hotkey.to_hex(),
            "nonce": n,
            "seal": s.to_hex(),
            "difficulty": d,
            "meets": pow::meets(&s, d),
        }));
    }
    out
}

/// Every refusal kind as the node sends it (`data` of error -33010, a receipt's reason), with
/// the ledger's sentence.
fn error_vectors() -> Vec<Value> {
    let all = TxError::one_of_each(key("alice"));
    all.into_iter().map(|e| json!({ "json": e, "message": e.to_string() })).collect()
}

fn vectors() -> Value {
    json!({
        "about": "Agora transaction vectors, generated by crates/ledger/tests/vectors.rs (AGORA_WRITE_VECTORS=1 cargo test -p ledger --test vectors); format in docs/transactions.md. Signer seeds are dev keys: SHA-256(\"agora/dev-key/v1/\" || name), insecure.",
        "transactions": cases()
            .into_iter()
            .map(|(name, signer, chain, nonce, fee, call)| transaction_vector(name, signer, chain, nonce, fee, call))
            .collect::<Vec<_>>(),
        "pow": pow_vectors(),
        "errors": error_vectors(),
    })
}

#[test]
fn the_shared_vectors_are_what_the_ledger_computes() {
    let computed = vectors();
    let path = vectors_path();
    if std::env::var_os("AGORA_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&computed).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let stored: Value = serde_json::from_str(&text).unwrap();
    for (s, c) in
        stored["transactions"].as_array().unwrap().iter().zip(computed["transactions"].as_array().unwrap())
    {
        assert_eq!(s, c, "vector {} differs from the ledger's encoding", c["name"]);
    }
    assert_eq!(stored, computed, "{} is stale: regenerate it (see this file's doc)", path.display());
}

/// The file is self-consistent from the decoding side too: every `tx_hex` decodes to its
/// `body`, re-encodes to the same bytes, verifies for its chain id and not for another, and
/// a byte more or less is refused.
#[test]
fn every_vector_decodes_verifies_and_refuses_tampering() {
    let text = std::fs::read_to_string(vectors_path()).unwrap();
    let stored: Value = serde_json::from_str(&text).unwrap();
    let txs = stored["transactions"].as_array().unwrap();
    assert_eq!(txs.len(), cases().len());
    for v in txs {
        let bytes = hex::decode(v["tx_hex"].as_str().unwrap()).unwrap();
        let tx = SignedTx::decode(&bytes, 1 << 16).unwrap();
        let body: TxBody = serde_json::from_value(v["body"].clone()).unwrap();
        assert_eq!(tx.body, body, "{}", v["name"]);
        assert_eq!(tx.encode(), bytes);
        assert_eq!(tx.id().to_hex(), v["id"].as_str().unwrap());
        let chain = v["chain_id"].as_str().unwrap();
        tx.verify(chain).unwrap();
        assert!(tx.verify("another-chain").is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SignedTx::decode(&longer, 1 << 16).is_err());
        assert!(SignedTx::decode(&bytes[..bytes.len() - 1], 1 << 16).is_err());
    }
    let kinds: std::collections::BTreeSet<&str> =
        txs.iter().map(|v| v["body"]["call"]["type"].as_str().unwrap()).collect();
    // Every variant of `Call`, the subnet wrapper included.
    assert_eq!(kinds.len(), 14, "every call kind has a vector: {kinds:?}");
}
