//! Four `agora node --validator-key` processes on loopback, one chain: a transfer submitted to
//! one is final on all; then one validator at a time is killed with SIGKILL at a random moment
//! while the other three keep finalizing, and restarted on its data directory it catches up to
//! the same blocks.

use crate::node::{transfer, NodeProc};
use crate::TempDir;
use client::Client;
use ledger::{GenesisConfig, GenesisValidator};
use rand::{Rng, SeedableRng};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

struct Network {
    dir: TempDir,
    genesis: String,
    keys: Vec<String>,
    pubkeys: Vec<ledger::PublicKey>,
    p2p: Vec<SocketAddr>,
}

impl Network {
    /// Four validator hotkeys (wallets `v0`..`v3`), a genesis naming them, free p2p ports.
    fn new(name: &str) -> Network {
        let dir = TempDir::new(name);
        let root = dir.0.join("wallets");
        let mut keys = Vec::new();
        let mut pubkeys = Vec::new();
        for i in 0..4 {
            let (w, _) = wallet::Wallet::create(
                &root,
                &format!("v{i}"),
                b"pw",
                wallet::WordCount::Twelve,
                &wallet::KdfParams::INSECURE_FOR_TESTS,
                false,
            )
            .expect("wallet");
            w.create_hotkey("validator", wallet::WordCount::Twelve, false).expect("hotkey");
            pubkeys.push(w.hotkey_public("validator").expect("hotkey"));
            keys.push(w.dir().join("hotkeys/validator").to_str().expect("utf-8").to_string());
        }
        let mut g = GenesisConfig::dev(&["alice", "bob"], 1_000_000_000_000);
        g.validators = pubkeys.iter().map(|k| GenesisValidator { key: *k, power: 1 }).collect();
        let genesis = dir.0.join("genesis.json");
        std::fs::write(&genesis, g.to_json_pretty()).expect("genesis");
        let free = || TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let p2p = (0..4).map(|_| free()).collect();
        Network { genesis: genesis.to_str().expect("utf-8").to_string(), dir, keys, pubkeys, p2p }
    }

    /// `agora node` as validator `i`, on its data directory.
    fn start(&self, i: usize) -> NodeProc {
        let peers: Vec<String> =
            (0..4).filter(|&j| j != i).map(|j| format!("{}@{}", self.pubkeys[j], self.p2p[j])).collect();
        let data = self.dir.0.join(format!("data-{i}"));
        let p2p = self.p2p[i].to_string();
        NodeProc::start_with(&[
            "--genesis",
            &self.genesis,
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--validator-key",
            &self.keys[i],
            "--peers",
            &peers.join(","),
            "--p2p-addr",
            &p2p,
        ])
    }
}

async fn height(n: &NodeProc) -> u64 {
    Client::connect(&n.http()).await.expect("connect").head().await.expect("head").height
}

/// Waits until every running validator is at `h` or above.
async fn reach(nodes: &[Option<NodeProc>], h: u64, within: Duration) {
    let start = Instant::now();
    loop {
        let mut heads = Vec::new();
        for n in nodes.iter().flatten() {
            heads.push(height(n).await);
        }
        if heads.iter().all(|&x| x >= h) {
            return;
        }
        assert!(start.elapsed() < within, "heads {heads:?}, wanted {h} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The same block hash at `h` on every validator.
async fn same_block(nodes: &[Option<NodeProc>], h: u64) {
    let mut hashes = Vec::new();
    for n in nodes.iter().flatten() {
        hashes.push(Client::connect(&n.http()).await.expect("connect").block(h).await.expect("block").hash);
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "block {h}: {hashes:?}");
}

async fn kill_and_restart(rounds: usize) {
    let net = Network::new("validators");
    let mut nodes: Vec<Option<NodeProc>> = (0..4).map(|i| Some(net.start(i))).collect();
    let c = Client::connect(&nodes[2].as_ref().expect("running").http()).await.expect("connect");
    let chain = c.genesis().await.expect("genesis").config.chain_id;
    let (h, receipt) = c.submit_and_wait(&transfer("alice", "bob", 0, 5, &chain)).await.expect("included");
    assert!(receipt.is_applied(), "{receipt:?}");
    reach(&nodes, h, Duration::from_secs(60)).await;
    same_block(&nodes, h).await;
    let status = c.status().await.expect("status");
    assert_eq!(status.validators, 4);
    assert!(status.latest >= status.finalized.height, "{status:?}");

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    for round in 0..rounds {
        let victim = rng.gen_range(0..4);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..1500))).await;
        nodes[victim].take().expect("running").sigkill();
        // The other three are a quorum: they keep finalizing.
        let mut top = 0;
        for n in nodes.iter().flatten() {
            top = top.max(height(n).await);
        }
        reach(&nodes, top + 2, Duration::from_secs(60)).await;
        nodes[victim] = Some(net.start(victim));
        let mut top = 0;
        for n in nodes.iter().flatten() {
            top = top.max(height(n).await);
        }
        reach(&nodes, top, Duration::from_secs(120)).await;
        same_block(&nodes, top).await;
        eprintln!("round {round}: validator {victim} killed and back at height {top}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn four_validator_processes_finalize_one_chain_through_a_kill9() {
    kill_and_restart(1).await;
}

/// The loop: 20 rounds (a few minutes); `cargo test -p cli --test it -- --ignored kill9`.
#[tokio::test(flavor = "current_thread")]
#[ignore]
async fn validators_kill9_twenty_times() {
    kill_and_restart(20).await;
}
