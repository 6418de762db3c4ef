//! Finality and throughput of a validator network (issue 14), on loopback, beside the ledger
//! alone in the same run:
//! 1. finality latency: a transfer submitted over JSON-RPC to one validator (round robin) until
//!    that validator serves it as included (it serves finalized state only), one at a time,
//!    p50 and p99;
//! 2. finalized blocks per second while the network is idle (empty blocks, no block time);
//! 3. `set_weights` transactions per second through the whole path: clients submit them over
//!    JSON-RPC, spread over the validators -> mempool -> forwarded to the others -> proposed
//!    -> ordered and finalized by the engine -> executed and committed (redb) on every
//!    validator; timed from the first submission until every validator has finalized all;
//! 4. the ledger alone: the same transactions proposed and committed in one block of a fresh
//!    in-memory ledger of the same genesis, as `cargo bench -p ledger` measures its execute
//!    path (here on the whole machine, wall clock), and the ratio of the two.
//!
//! Each validator is a `node::Node` in this process (its RPC server, its redb store in a
//! temporary directory, commonware's authenticated p2p on loopback), with 1 and with 4
//! validators. `cargo bench -p node --bench finality` (two to three minutes after the build).

use client::Client;
use ledger::{dev_key, public_key, Call, GenesisConfig, GenesisNeuron, GenesisValidator, Ledger, MemStore};
use ledger::{SignedTx, TxBody, UNITS_PER_TOKEN};
use node::{Node, NodeConfig, NodeHandle, ValidatorConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Neurons, each setting one row of weights.
const NEURONS: usize = 2_048;
/// Uids in each row.
const ROW: usize = 64;
/// Transfers timed one at a time for the latency.
const LATENCY_SAMPLES: usize = 100;
/// Concurrent submitting clients in the throughput phase.
const SUBMITTERS: usize = 16;

fn hotkey(i: usize) -> ledger::SigningKey {
    dev_key(&format!("bench-hot-{i}"))
}

fn genesis(validators: usize) -> GenesisConfig {
    let mut g = GenesisConfig::dev(&["alice", "bob"], 1_000_000 * UNITS_PER_TOKEN);
    g.chain_id = "agora-finality-bench".into();
    g.max_neurons = NEURONS as u32;
    g.weights.rate_limit = 1;
    g.weights.max_len = ROW as u32;
    // No epoch during the run: the figure is the transactions', not the mechanism's.
    g.tempo = 1_000_000;
    for i in 0..NEURONS {
        let hot = public_key(&hotkey(i));
        g.accounts.push(ledger::GenesisAccount { key: hot, balance: 1_000 * UNITS_PER_TOKEN });
        g.neurons.push(GenesisNeuron {
            hotkey: hot,
            coldkey: public_key(&dev_key("alice")),
            stake: 100 * UNITS_PER_TOKEN,
            endpoint: None,
        });
    }
    g.validators = (0..validators)
        .map(|i| GenesisValidator { key: public_key(&dev_key(&format!("validator-{i}"))), power: 1 })
        .collect();
    g
}

/// Every neuron's `set_weights`: a row of `ROW` uids with deterministic weights.
fn weight_txs(g: &GenesisConfig) -> Vec<SignedTx> {
    (0..NEURONS)
        .map(|i| {
            let k = hotkey(i);
            let uids: Vec<u16> = (0..ROW).map(|j| ((i * 7 + j * 31) % NEURONS) as u16).collect();
            let raw: Vec<f64> = (0..ROW).map(|j| 1.0 + ((i + j) % 5) as f64).collect();
            let sum: f64 = raw.iter().sum();
            let values: Vec<f64> = raw.iter().map(|v| v / sum).collect();
            TxBody {
                sender: public_key(&k),
                nonce: 0,
                fee: g.fees.set_weights,
                call: Call::set_weights(uids, &values),
            }
            .sign(&k, &g.chain_id)
        })
        .collect()
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port")
}

async fn start(g: &GenesisConfig, dir: &std::path::Path) -> Vec<NodeHandle> {
    let n = g.validators.len();
    let p2p: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
    let mut nodes = Vec::new();
    for i in 0..n {
        let peers = (0..n).filter(|&j| j != i).map(|j| (g.validators[j].key, p2p[j])).collect();
        let data = dir.join(format!("v{i}"));
        let secret = dev_key(&format!("validator-{i}")).to_bytes();
        let (ledger, _) = node::chain_dir::open(&data, g.clone(), false).expect("a data directory");
        let config = NodeConfig {
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            // Blocks as fast as the engine finalizes them (no block time).
            validator: Some(ValidatorConfig::new(secret, p2p[i], peers, data.join("consensus"))),
            ..NodeConfig::new(g.clone())
        };
        nodes.push(Node::start(config, ledger.into_store()).await.expect("a validator starts"));
    }
    nodes
}

/// Transactions a validator has executed in blocks (applied, failed or rejected).
fn executed(n: &NodeHandle) -> u64 {
    let m = &n.shared().metrics;
    [&m.txs_applied, &m.txs_failed, &m.txs_rejected].iter().map(|c| c.get()).sum()
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
}

/// The figures of one network size.
struct Figures {
    validators: usize,
    p50_ms: f64,
    p99_ms: f64,
    idle_blocks_per_s: f64,
    txs_per_s: f64,
    blocks_in_load: u64,
}

async fn measure(validators: usize, txs: &[SignedTx]) -> Figures {
    let g = genesis(validators);
    let dir = std::env::temp_dir().join(format!("agora-finality-bench-{validators}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let nodes = start(&g, &dir).await;
    let mut clients = Vec::new();
    for n in &nodes {
        clients.push(Client::connect(&n.http_url()).await.expect("connect"));
    }
    // Every validator connected and finalizing.
    for n in &nodes {
        tokio::time::timeout(Duration::from_secs(60), n.wait_for_height(2)).await.expect("the chain starts");
    }

    // 1. Finality latency, one transfer at a time.
    let alice = dev_key("alice");
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for nonce in 0..LATENCY_SAMPLES as u64 {
        let c = &clients[nonce as usize % clients.len()];
        let tx = TxBody {
            sender: public_key(&alice),
            nonce,
            fee: g.fees.transfer,
            call: Call::Transfer { to: public_key(&dev_key("bob")), amount: 1 },
        }
        .sign(&alice, &g.chain_id);
        let t = Instant::now();
        let id = c.submit(&tx).await.expect("admitted");
        loop {
            if let client::types::TxLookup::Included { .. } = c.transaction(&id).await.expect("lookup") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(t.elapsed());
    }
    latencies.sort();

    // 2. Idle blocks per second.
    let h0 = nodes[0].head().height;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_blocks_per_s = (nodes[0].head().height - h0) as f64 / t.elapsed().as_secs_f64();

    // 3. set_weights through the whole path.
    let h0 = nodes.iter().map(|n| n.head().height).min().unwrap_or(0);
    let before: Vec<u64> = nodes.iter().map(executed).collect();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..SUBMITTERS {
        let url = nodes[s % nodes.len()].http_url();
        let mine: Vec<SignedTx> = txs.iter().skip(s).step_by(SUBMITTERS).cloned().collect();
        tasks.push(tokio::spawn(async move {
            let c = Client::connect(&url).await.expect("connect");
            for tx in &mine {
                c.submit(tx).await.expect("admitted");
            }
        }));
    }
    for task in tasks {
        task.await.expect("submitted");
    }
    // Done when every validator has executed every row.
    while nodes.iter().zip(&before).any(|(n, b)| executed(n) - b < txs.len() as u64) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = t.elapsed();
    let blocks_in_load = nodes.iter().map(|n| n.head().height).min().unwrap_or(0) - h0;
    for n in nodes {
        n.stop().await.expect("stops");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Figures {
        validators,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        idle_blocks_per_s,
        txs_per_s: txs.len() as f64 / took.as_secs_f64(),
        blocks_in_load,
    }
}

/// The ledger alone: the same transactions in one block of a fresh in-memory ledger.
fn ledger_only(txs: &[SignedTx]) -> f64 {
    let mut ledger = Ledger::init(MemStore::new(), genesis(1)).expect("genesis");
    let t = Instant::now();
    let (_, out) = ledger.propose(txs.to_vec(), 1_000, public_key(&dev_key("validator-0"))).expect("propose");
    ledger.commit().expect("commit");
    let took = t.elapsed();
    assert!(out.receipts.iter().all(ledger::Receipt::is_applied), "every row applies");
    txs.len() as f64 / took.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let txs = weight_txs(&genesis(1));
    let alone = ledger_only(&txs);
    println!(
        "{NEURONS} set_weights of {ROW} uids; finality latency over {LATENCY_SAMPLES} transfers, one at a time"
    );
    println!("validators | latency p50 | p99 | idle blocks/s | set_weights/s (whole path) | blocks | ledger alone/s | ratio");
    for v in [1, 4] {
        let f = measure(v, &txs).await;
        println!(
            "{:>10} | {:>8.1} ms | {:>6.1} ms | {:>13.1} | {:>26.0} | {:>6} | {:>14.0} | {:.1}x",
            f.validators,
            f.p50_ms,
            f.p99_ms,
            f.idle_blocks_per_s,
            f.txs_per_s,
            f.blocks_in_load,
            alone,
            alone / f.txs_per_s
        );
    }
}
