//! What a node promises under load (issue 13), each figure against a reference measured in the
//! same run, on the release `agora node`:
//! 1. a caller's `agora_head` latency while 500 slow or idle clients hold the port, against the
//!    same caller with the port to itself;
//! 2. `agora_metagraph` at a past height of a 1,500-block chain (tempo 100), served from the
//!    epoch's checkpoint, against replaying the blocks from genesis in this process, which is
//!    what the node did per call before;
//! 3. the node's resident memory during 64 such calls at once, against its memory just before;
//! 4. a batch of 32 past metagraphs, against one.
//!
//! `cargo bench -p cli --bench node_limits` (about two minutes).

use client::Client;
use ledger::{dev_key, public_key, Call, Ledger, MemStore, TxBody};
use node::test_utils::attack::{slow_body, websocket};
use node::test_utils::{neuron_genesis, post, temp_dir, NodeProcess};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const CHAIN: &str = "agora-bench";
const HEIGHT: u64 = 1_500;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// p50, p99 and the largest of some durations, in milliseconds.
fn spread(mut d: Vec<Duration>) -> (f64, f64, f64) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1e3;
    let at = |q: f64| ms(d[((d.len() - 1) as f64 * q).round() as usize]);
    (at(0.5), at(0.99), ms(*d.last().unwrap_or(&Duration::ZERO)))
}

async fn head_latencies(c: &Client, calls: usize, gap: Duration) -> Vec<Duration> {
    let mut out = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        c.head().await.expect("the head");
        out.push(t.elapsed());
        tokio::time::sleep(gap).await;
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = temp_dir("bench-limits");
    let g = neuron_genesis(CHAIN, 100);
    let file = dir.join("genesis.json");
    std::fs::write(&file, g.to_json_pretty()).expect("write genesis");
    let data = dir.join("data");
    let agora = std::path::Path::new(env!("CARGO_BIN_EXE_agora"));
    let n = NodeProcess::spawn(
        agora,
        &["--genesis", file.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "--instant"],
    );
    let c = Client::connect(&n.http()).await.expect("connect");

    // --- 1. the head under 500 slow or idle clients ---------------------------------------
    let alone = head_latencies(&c, 200, Duration::from_millis(5)).await;
    let addr: SocketAddr = n.addr.parse().expect("address");
    let until = Instant::now() + Duration::from_secs(14);
    let attackers: Vec<_> = (0..500u32)
        .map(|k| {
            let src = if k < 250 { [127, 0, 0, 2] } else { [127, 0, 0, 3 + (k % 10) as u8] };
            tokio::spawn(async move {
                match k % 4 {
                    0 | 1 => slow_body(src, addr, until).await,
                    2 => websocket(src, addr, true, until).await,
                    _ => websocket(src, addr, false, until).await,
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attacked = head_latencies(&c, 200, Duration::from_millis(50)).await;
    for a in attackers {
        let _ = a.await;
    }

    // --- the chain: weights, then a block per transfer up to HEIGHT ------------------------
    for (who, uids) in [("n0", [1u16, 2]), ("n1", [0, 2]), ("n2", [0, 1])] {
        let k = dev_key(who);
        let tx = TxBody {
            sender: public_key(&k),
            nonce: 0,
            fee: 10_000,
            call: Call::set_weights(uids.to_vec(), &[0.5, 0.5]),
        }
        .sign(&k, CHAIN);
        c.submit(&tx).await.expect("weights");
    }
    let alice = dev_key("alice");
    let mut nonce = 0;
    while c.head().await.expect("head").height < HEIGHT {
        let tx = TxBody {
            sender: public_key(&alice),
            nonce,
            fee: 10_000,
            call: Call::Transfer { to: public_key(&dev_key("bob")), amount: 1 },
        }
        .sign(&alice, CHAIN);
        c.submit_and_wait(&tx).await.expect("included");
        nonce += 1;
    }
    let head = c.head().await.expect("head").height;
    let past = head - head % 100 - 1; // the last block before an epoch: the longest replay

    // --- 2. one past metagraph: checkpoint + replay vs replay from genesis ------------------
    let mut blocks = Vec::new();
    for h in 1..=past {
        blocks.push(c.block(h).await.expect("block").stored.block);
    }
    let t = Instant::now();
    let mut replay = Ledger::init(MemStore::new(), g.clone()).expect("genesis");
    for b in &blocks {
        replay.execute_block(b).expect("replays");
        replay.commit().expect("commit");
    }
    let reference_mg = replay.metagraph();
    let from_genesis = t.elapsed();
    let mut served = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mg = c.metagraph(Some(past)).await.expect("past metagraph");
        served.push(t.elapsed());
        assert_eq!(mg.block, reference_mg.block);
        assert_eq!(mg.S, reference_mg.stake(), "the node's past state is the replayed one");
    }
    let (served_p50, _, _) = spread(served.clone());

    // --- 3. memory during 64 concurrent past metagraphs --------------------------------------
    let pid = n.pid();
    let idle = rss_kib(pid);
    let t = Instant::now();
    let calls: Vec<_> = (0..64u64)
        .map(|k| {
            let url = n.http();
            tokio::spawn(async move {
                let c = Client::connect(&url).await.expect("connect");
                c.metagraph(Some(past - k % 90)).await.map(|m| m.block)
            })
        })
        .collect();
    let mut peak = idle;
    let mut done = 0;
    let mut failed = 0;
    let mut pending = calls;
    while !pending.is_empty() {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (finished, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|h| h.is_finished());
        for h in finished {
            match h.await.expect("task") {
                Ok(_) => done += 1,
                Err(_) => failed += 1,
            }
        }
        pending = rest;
    }
    let concurrent = t.elapsed();

    // --- 4. a batch of 32 past metagraphs vs one ----------------------------------------------
    let batch: Vec<String> = (0..32)
        .map(|i| {
            format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"agora_metagraph","params":[{}]}}"#, past - i % 90)
        })
        .collect();
    let body = format!("[{}]", batch.join(","));
    let t = Instant::now();
    let answer = post(&n.addr, &body);
    let batch_time = t.elapsed();
    assert_eq!(answer.matches("\"block\":").count(), 32, "{answer:.300}");

    let (a50, a99, amax) = spread(alone);
    let (b50, b99, bmax) = spread(attacked);
    println!(
        "node limits (issue 13), release agora node, head {head}; each row against a reference from this run"
    );
    println!("| measured | value | reference (same run) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| agora_head under 500 slow/idle clients, p50 / p99 / max | {b50:.2} / {b99:.2} / {bmax:.1} ms | alone: {a50:.2} / {a99:.2} / {amax:.1} ms | p99 {:.1}x |",
        b99 / a99
    );
    println!(
        "| agora_metagraph at block {past} (checkpoint {} + {} blocks), p50 of 5 | {:.1} ms | replay from genesis, {past} blocks: {:.1} ms | {:.1}x faster |",
        past - past % 100,
        past % 100,
        served_p50,
        from_genesis.as_secs_f64() * 1e3,
        from_genesis.as_secs_f64() * 1e3 / served_p50
    );
    println!(
        "| node memory during 64 concurrent past metagraphs ({done} served, {failed} busy, {:.1} s) | {:.0} MB peak | {:.0} MB just before | {:.2}x |",
        concurrent.as_secs_f64(),
        peak as f64 / 1024.0,
        idle as f64 / 1024.0,
        peak as f64 / idle.max(1) as f64
    );
    println!(
        "| a batch of 32 past metagraphs | {:.0} ms | one: {:.1} ms | {:.1}x |",
        batch_time.as_secs_f64() * 1e3,
        served_p50,
        batch_time.as_secs_f64() * 1e3 / served_p50
    );
    let _ = std::fs::remove_dir_all(dir);
}
