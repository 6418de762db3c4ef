//! `agora node` under the attacks of issue 13, each reproduced as the probe did it: 500 slow or
//! idle clients against a caller reading the head, 64 concurrent past metagraphs and an
//! oversized batch, an account holding two fees flooding the mempool, and a subscription asked
//! for over HTTP.

use crate::node::{metrics, start_genesis, transfer, NodeProc, FEE};
use crate::TempDir;
use client::types::codes;
use client::{Client, ClientError};
use ledger::{dev_key, public_key, Call, TxBody};
use node::test_utils::attack::{slow_body, websocket, Fate};
use node::test_utils::neuron_genesis;
use node::test_utils::post;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The value of a metric line (`name` including its labels) in `/metrics` text.
pub(crate) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

/// Issue 13: 100 slow senders or 100 held subscriptions got every other client HTTP 429. Now
/// 500 of them, half from one address and half spread over ten, leave a caller at another
/// address reading the head within a second, every time; the slow bodies and idle WebSockets
/// are closed at their timeouts, the held subscriptions stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_slow_or_idle_clients_do_not_keep_a_caller_from_the_head() {
    let dir = TempDir::new("node-slow-clients");
    let data = dir.0.join("data");
    let timeout = 3;
    let n = NodeProc::start_with(&[
        "--dev",
        "--data-dir",
        data.to_str().unwrap(),
        "--block-time-ms",
        "200",
        "--rpc-request-timeout-secs",
        &timeout.to_string(),
        "--rpc-ws-idle-secs",
        &timeout.to_string(),
    ]);
    let addr: SocketAddr = n.addr.parse().expect("address");
    let attack = Duration::from_secs(9);
    let until = Instant::now() + attack;

    // 250 from 127.0.0.2 (more than one address may hold), 250 over 127.0.0.3..=12 (25 each).
    // Each group: half slow bodies, a quarter held subscriptions, a quarter idle WebSockets.
    let mut clients = Vec::new();
    for k in 0..500u32 {
        let src = if k < 250 { [127, 0, 0, 2] } else { [127, 0, 0, 3 + (k % 10) as u8] };
        let kind = k % 4;
        clients.push((
            src,
            kind,
            tokio::spawn(async move {
                match kind {
                    0 | 1 => slow_body(src, addr, until).await,
                    2 => websocket(src, addr, true, until).await,
                    _ => websocket(src, addr, false, until).await,
                }
            }),
        ));
    }

    // The legitimate caller, from 127.0.0.1: the head, ten times a second, all attack long.
    let c = Client::connect(&n.http()).await.expect("connect");
    let mut calls = 0;
    let mut slowest = Duration::ZERO;
    while Instant::now() < until {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(1), c.head()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("call {calls}: the head was refused under attack: {e}"),
            Err(_) => panic!("call {calls}: no head within a second under attack"),
        }
        slowest = slowest.max(t.elapsed());
        calls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A subscription of its own still gets in, and gets heads.
    let ws = Client::connect(&n.ws()).await.expect("ws connect under attack");
    let mut heads = ws.subscribe_heads().await.expect("subscribe under attack");
    tokio::time::timeout(Duration::from_secs(5), heads.next())
        .await
        .expect("a head")
        .expect("open")
        .expect("decodes");

    let mut fates = Vec::new();
    for (src, kind, task) in clients {
        fates.push((src, kind, task.await.expect("client task")));
    }
    let text = metrics(&n.addr);
    let from_one = |f: &dyn Fn(&Fate) -> bool| fates.iter().filter(|(s, _, x)| s[3] == 2 && f(x)).count();
    let spread = |kind: u32, f: &dyn Fn(&Fate) -> bool| {
        fates.iter().filter(|(s, k, x)| s[3] != 2 && *k == kind && f(x)).count()
    };
    let closed_at_timeout = |f: &Fate| matches!(f, Fate::Closed(d) if *d >= Duration::from_secs(timeout) && *d <= Duration::from_secs(timeout + 3));
    println!(
        "{calls} head calls under attack, slowest {slowest:?}; 127.0.0.2: {} refused of 250; {}",
        from_one(&|f| *f == Fate::Refused),
        text.lines().filter(|l| l.starts_with("agora_rpc_refused_total")).collect::<Vec<_>>().join(", ")
    );
    assert!(calls >= 50, "{calls} calls");
    // One address holds at most 128 connections: the rest were refused at once.
    assert!(from_one(&|f| *f != Fate::Refused) <= 128, "{fates:?}");
    assert!(metric(&text, "agora_rpc_refused_total{reason=\"connections_per_ip\"}") >= 122.0, "{text}");
    // Spread over ten addresses, every one got in: slow bodies were cut at the timeout, idle
    // WebSockets closed, held subscriptions kept.
    let all = |kind: u32| spread(kind, &|_| true);
    for kind in [0, 1] {
        assert_eq!(spread(kind, &closed_at_timeout), all(kind), "slow bodies: {fates:?}");
    }
    assert_eq!(spread(2, &|f| *f == Fate::Open), all(2), "subscriptions: {fates:?}");
    let idle_closed = |f: &Fate| matches!(f, Fate::Closed(d) if *d >= Duration::from_secs(timeout));
    assert_eq!(spread(3, &idle_closed), all(3), "idle WebSockets: {fates:?}");
    assert!(metric(&text, "agora_rpc_refused_total{reason=\"body_timeout\"}") >= 125.0, "{text}");
    assert!(metric(&text, "agora_rpc_refused_total{reason=\"websocket_idle\"}") >= 62.0, "{text}");
}

/// Negative control: with one limit for everything, as jsonrpsee's default of 100 was, 150 slow
/// bodies from ten addresses take every slot and the caller is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_limit_of_100_slow_clients_do_keep_the_caller_out() {
    let dir = TempDir::new("node-one-limit");
    let data = dir.0.join("data");
    let n = NodeProc::start_with(&[
        "--dev",
        "--data-dir",
        data.to_str().unwrap(),
        "--rpc-max-connections",
        "100",
    ]);
    let addr: SocketAddr = n.addr.parse().expect("address");
    let until = Instant::now() + Duration::from_secs(4);
    let clients: Vec<_> =
        (0..150u8).map(|k| tokio::spawn(slow_body([127, 0, 0, 3 + k % 10], addr, until))).collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let c = Client::connect(&n.http()).await.expect("connect");
    let refused = tokio::time::timeout(Duration::from_secs(1), c.head()).await;
    assert!(matches!(refused, Ok(Err(_))), "the caller got in: {refused:?}");
    for t in clients {
        t.await.expect("client task");
    }
}

/// Issue 13: a past metagraph cost a replay from genesis per call, with no limit on how many
/// ran at once or on a batch's size (64 concurrent calls took a node from 84 to 440 MB; one
/// 23 KB batch cost 26 s of CPU). Now it is rebuilt from the epoch's checkpoint, at most two
/// at once (`agora_rpc_historical_peak`), batches hold at most 32 calls, and heights older
/// than `--history-blocks` are refused with their own code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_metagraphs_are_rebuilt_from_a_checkpoint_a_few_at_a_time() {
    let dir = TempDir::new("node-history");
    // An epoch, and so a checkpoint, every 5 blocks.
    let n = start_genesis(&dir, &neuron_genesis("agora-history", 5), &["--history-blocks", "60"]);
    let c = Client::connect(&n.http()).await.expect("connect");
    // Weights early, so the epochs pay out and the metagraph differs from epoch to epoch.
    for (who, uids) in [("n0", [1u16, 2]), ("n1", [0, 2]), ("n2", [0, 1])] {
        let k = dev_key(who);
        let tx = TxBody {
            sender: public_key(&k),
            nonce: 0,
            fee: FEE,
            call: Call::set_weights(uids.to_vec(), &[0.5, 0.5]),
        }
        .sign(&k, "agora-history");
        c.submit(&tx).await.expect("weights accepted");
    }
    // A block per transfer (instant mode), up to a head that then stays put.
    for nonce in 0..85 {
        c.submit_and_wait(&transfer("alice", "bob", nonce, 1, "agora-history")).await.expect("included");
    }
    let head = c.head().await.expect("head").height;
    assert!(head >= 85, "head {head}");
    // 64 calls at once, at heights 39..=79.
    let calls: Vec<_> = (0..64u64)
        .map(|k| {
            let url = n.http();
            tokio::spawn(async move {
                let c = Client::connect(&url).await.expect("connect");
                let h = 39 + k % 41;
                (h, c.metagraph(Some(h)).await)
            })
        })
        .collect();
    let mut by_height = std::collections::BTreeMap::new();
    for call in calls {
        let (h, mg) = call.await.expect("task");
        let mg = mg.unwrap_or_else(|e| panic!("metagraph at {h}: {e}"));
        assert_eq!(mg.block, h);
        if let Some(prev) = by_height.insert(h, mg.clone()) {
            assert_eq!(prev, mg, "two answers for block {h}");
        }
    }
    assert_ne!(by_height[&39].S, by_height[&79].S, "epochs paid out in between");
    let text = metrics(&n.addr);
    let peak = metric(&text, "agora_rpc_historical_peak");
    assert!((1.0..=2.0).contains(&peak), "{peak} rebuilds ran at once\n{text}");

    // Older than the history kept: its own code, saying what is kept.
    match c.metagraph(Some(3)).await {
        Err(ClientError::Rpc { code, message, .. }) => {
            assert_eq!(code, codes::HISTORICAL_STATE_UNAVAILABLE, "{message}");
            assert!(message.contains("--history-blocks"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A batch of 32 past metagraphs runs (one after another); 33 calls are one too many.
    let batch = |k: u64| {
        let calls: Vec<String> = (0..k)
            .map(|i| {
                format!(
                    r#"{{"jsonrpc":"2.0","id":{i},"method":"agora_metagraph","params":[{}]}}"#,
                    60 + i % 20
                )
            })
            .collect();
        format!("[{}]", calls.join(","))
    };
    let ok: serde_json::Value = serde_json::from_str(&post(&n.addr, &batch(32))).expect("batch answer");
    let blocks: Vec<_> =
        ok.as_array().expect("an array").iter().map(|r| r["result"]["block"].as_u64()).collect();
    assert_eq!(blocks, (0..32).map(|i| Some(60 + i % 20)).collect::<Vec<_>>());
    let too_big: serde_json::Value = serde_json::from_str(&post(&n.addr, &batch(33))).expect("batch answer");
    assert_eq!(too_big["error"]["code"], -32010, "{too_big}");
}

/// Issue 13: an account holding two fees got 964 transactions stored in blocks as "rejected",
/// paying nothing. Now the mempool admits what its balance pays for, and blocks reject none.
#[tokio::test(flavor = "current_thread")]
async fn an_account_holding_two_fees_cannot_fill_blocks() {
    let dir = TempDir::new("node-flood");
    let data = dir.0.join("data");
    let n = NodeProc::start(data.to_str().unwrap(), &["--instant"]);
    let c = Client::connect(&n.http()).await.expect("connect");
    let chain = c.genesis().await.expect("genesis").config.chain_id;
    let (_, r) =
        c.submit_and_wait(&transfer("alice", "mallory", 0, 2 * FEE + 2, &chain)).await.expect("funded");
    assert!(r.is_applied());
    let mut accepted = 0;
    for nonce in 0..1_000 {
        match c.submit(&transfer("mallory", "bob", nonce, 1, &chain)).await {
            Ok(_) => accepted += 1,
            Err(ClientError::Rejected(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(accepted, 2, "an account holding two fees queued {accepted} transactions");
    let start = Instant::now();
    while c.account(&public_key(&dev_key("mallory"))).await.unwrap().nonce < 2 {
        assert!(start.elapsed() < Duration::from_secs(20), "not included");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = metrics(&n.addr);
    assert_eq!(metric(&text, "agora_transactions_total{status=\"rejected\"}"), 0.0, "{text}");
    assert_eq!(metric(&text, "agora_transactions_total{status=\"applied\"}"), 3.0, "{text}");
}

/// Issue 13: a subscription over HTTP answered -32603 "Internal error". Now it says what is
/// wrong, with its own code; over WebSocket it works.
#[test]
fn a_subscription_over_http_says_it_needs_a_websocket() {
    let dir = TempDir::new("node-http-sub");
    let data = dir.0.join("data");
    let n = NodeProc::start(data.to_str().unwrap(), &["--instant"]);
    let one = r#"{"jsonrpc":"2.0","id":1,"method":"agora_subscribeNewHeads","params":[]}"#;
    let r: serde_json::Value = serde_json::from_str(&post(&n.addr, one)).expect("json");
    assert_eq!(r["error"]["code"], codes::WEBSOCKET_REQUIRED, "{r}");
    assert!(r["error"]["message"].as_str().is_some_and(|m| m.contains("ws://")), "{r}");
    let batch = format!(r#"[{one},{{"jsonrpc":"2.0","id":2,"method":"agora_head","params":[]}}]"#);
    let r: serde_json::Value = serde_json::from_str(&post(&n.addr, &batch)).expect("json");
    assert_eq!(r[0]["error"]["code"], codes::WEBSOCKET_REQUIRED, "{r}");
    assert_eq!(r[1]["result"]["height"], 0, "{r}");
}
