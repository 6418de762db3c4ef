//! `agora node --dev` as a child process, driven through the `client` crate: transfers and
//! receipts, refusals with their typed reasons, subscriptions, /metrics, SIGKILL while blocks
//! are being committed, restart on the same data directory, replay of the node's blocks into a
//! fresh in-memory ledger, and a clean SIGTERM exit.

use crate::TempDir;
use client::types::codes;
use client::{Client, ClientError, TxLookup};
use ledger::{dev_key, public_key, Call, SignedTx, TxBody, TxError, UNITS_PER_TOKEN};
use node::test_utils::NodeProcess;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

pub(crate) const FEE: u64 = 10_000;

/// A running `agora node` (this test build's binary), killed (SIGKILL) when dropped. Shared
/// with the other modules that drive a node.
pub(crate) struct NodeProc(NodeProcess);

impl std::ops::Deref for NodeProc {
    type Target = NodeProcess;
    fn deref(&self) -> &NodeProcess {
        &self.0
    }
}

impl NodeProc {
    /// `agora node --dev --data-dir DIR MODE...` on a free port.
    pub(crate) fn start(data_dir: &str, mode: &[&str]) -> NodeProc {
        NodeProc::start_with(&[&["--dev", "--data-dir", data_dir], mode].concat())
    }

    /// `agora node ARGS...` on a free port.
    pub(crate) fn start_with(args: &[&str]) -> NodeProc {
        NodeProc(NodeProcess::spawn(std::path::Path::new(env!("CARGO_BIN_EXE_agora")), args))
    }

    pub(crate) fn sigkill(self) {
        self.0.sigkill()
    }

    /// SIGTERM, then the exit code.
    pub(crate) fn sigterm(self) -> Option<i32> {
        self.0.sigterm()
    }
}

pub(crate) fn transfer(from: &str, to: &str, nonce: u64, amount: u64, chain: &str) -> SignedTx {
    let k = dev_key(from);
    TxBody {
        sender: public_key(&k),
        nonce,
        fee: FEE,
        call: Call::Transfer { to: public_key(&dev_key(to)), amount },
    }
    .sign(&k, chain)
}

/// `GET /metrics` over plain HTTP/1.0.
pub(crate) fn metrics(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

fn rejected(r: Result<ledger::Hash, ClientError>) -> TxError {
    match r {
        Err(ClientError::Rejected(reason)) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn node_serves_rejects_and_survives_sigkill() {
    let dir = TempDir::new("node");
    let data = dir.0.join("data");
    let data = data.to_str().expect("utf-8");
    let dev = node::DEV_BALANCE;

    // --- instant mode: transfers, receipts, balances ------------------------------------
    let n = NodeProc::start(data, &["--instant"]);
    let c = Client::connect(&n.http()).await.expect("connect");
    let chain = c.genesis().await.expect("genesis").config.chain_id;
    assert_eq!(c.head().await.expect("head").height, 0);
    let amount = 3 * UNITS_PER_TOKEN;
    let t0 = transfer("alice", "bob", 0, amount, &chain);
    let (h0, receipt) = c.submit_and_wait(&t0).await.expect("included");
    assert!(receipt.is_applied(), "{receipt:?}");
    assert_eq!(receipt.fee_paid, FEE);
    assert_eq!(c.account(&public_key(&dev_key("alice"))).await.unwrap().balance, dev - amount - FEE);
    assert_eq!(c.account(&public_key(&dev_key("bob"))).await.unwrap().balance, dev + amount);
    match c.transaction(&t0.id()).await.unwrap() {
        TxLookup::Included { height, index: 0, .. } => assert_eq!(height, h0),
        other => panic!("{other:?}"),
    }
    // Queued nonces from one sender, submitted at once, all land in order.
    let queued: Vec<SignedTx> = (1..=4).map(|k| transfer("alice", "charlie", k, 1, &chain)).collect();
    for t in &queued[..3] {
        c.submit(t).await.expect("queued");
    }
    let (_, last) = c.submit_and_wait(&queued[3]).await.expect("last included");
    assert!(last.is_applied());
    for t in &queued {
        assert!(matches!(c.transaction(&t.id()).await.unwrap(), TxLookup::Included { .. }));
    }
    assert_eq!(c.account(&public_key(&dev_key("charlie"))).await.unwrap().balance, dev + 4);
    assert_eq!(c.account(&public_key(&dev_key("alice"))).await.unwrap().nonce, 5);

    // --- refusals at submission, with their typed reasons -------------------------------
    let root_before = c.head().await.unwrap().state_root;
    let mut bad_sig = transfer("bob", "alice", 0, 1, &chain);
    bad_sig.body.fee += 1;
    assert!(matches!(rejected(c.submit(&bad_sig).await), TxError::BadSignature { .. }));
    assert!(matches!(rejected(c.submit(&t0).await), TxError::NonceReused { expected: 5, got: 0, .. }));
    let broke = transfer("dave", "eve", 0, 2 * dev, &chain);
    assert!(matches!(rejected(c.submit(&broke).await), TxError::InsufficientBalance { .. }));
    assert!(matches!(rejected(c.submit_bytes(b"\x00\x01").await), TxError::Malformed(_)));
    assert_eq!(c.head().await.unwrap().state_root, root_before, "refusals change nothing");

    // --- queries and their errors -------------------------------------------------------
    let b1 = c.block(1).await.expect("block 1");
    assert_eq!(c.block_by_hash(&b1.hash).await.unwrap(), b1);
    match c.block(10_000).await {
        Err(ClientError::Rpc { code, .. }) => assert_eq!(code, codes::NOT_FOUND),
        other => panic!("{other:?}"),
    }
    let head = c.head().await.unwrap();
    let mg = c.metagraph(None).await.expect("metagraph");
    assert_eq!((mg.n, mg.block), (0, head.height));
    assert_eq!(c.metagraph(Some(head.height)).await.unwrap(), mg);
    let genesis_mg = c.metagraph(Some(0)).await.expect("metagraph at genesis, by replay");
    assert_eq!((genesis_mg.n, genesis_mg.block), (0, 0));
    match c.metagraph(Some(head.height + 1_000)).await {
        Err(ClientError::Rpc { code, .. }) => assert_eq!(code, codes::NOT_FOUND),
        other => panic!("{other:?}"),
    }
    match c.neuron(0).await {
        Err(ClientError::Rpc { code, .. }) => assert_eq!(code, codes::NOT_FOUND),
        other => panic!("{other:?}"),
    }
    assert!(c.difficulty().await.unwrap() > 0);

    // --- WebSocket subscription ---------------------------------------------------------
    let ws = Client::connect(&n.ws()).await.expect("ws connect");
    let mut heads = ws.subscribe_heads().await.expect("subscribe");
    let t5 = transfer("alice", "bob", 5, 1, &chain);
    ws.submit(&t5).await.expect("submit over ws");
    let new = tokio::time::timeout(Duration::from_secs(10), heads.next())
        .await
        .expect("a head within 10 s")
        .expect("stream open")
        .expect("decodes");
    assert_eq!(new.height, head.height + 1);
    assert_eq!(new.txs, 1);

    let text = metrics(&n.addr);
    assert!(text.contains("application/openmetrics-text; version=1.0.0"), "{text}");
    assert!(text.ends_with("\n# EOF\n"), "{text}");
    assert!(text.contains(&format!("agora_height {}", new.height)), "{text}");
    assert!(text.contains("agora_transactions_total{status=\"applied\"} 6"), "{text}");
    assert!(text.contains("agora_mempool_size 0"), "{text}");
    n.sigkill();

    // --- SIGKILL while producing a block every 20 ms ------------------------------------
    let n = NodeProc::start(data, &["--block-time-ms", "20"]);
    let c = Client::connect(&n.http()).await.expect("reconnect");
    let resumed = c.head().await.unwrap();
    assert!(resumed.height >= new.height, "lost blocks: {} < {}", resumed.height, new.height);
    // Keep transactions flowing while blocks are committed.
    for k in 6..16 {
        c.submit(&transfer("alice", "bob", k, 1, &chain)).await.expect("submit");
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let start = Instant::now();
    while c.head().await.unwrap().height < resumed.height + 20 {
        assert!(start.elapsed() < Duration::from_secs(30), "blocks stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = c.head().await.unwrap();
    let mut roots = Vec::new();
    for h in 1..=seen.height {
        let b = c.block(h).await.expect("block");
        roots.push((b.hash, b.stored.block.header.state_root));
    }
    n.sigkill();

    // --- restart: every committed block is there with the same hash and root -----------
    let n = NodeProc::start(data, &["--instant"]);
    let c = Client::connect(&n.http()).await.expect("reconnect");
    let after = c.head().await.unwrap();
    assert!(after.height >= seen.height, "lost committed blocks: {} < {}", after.height, seen.height);
    for (h, (hash, root)) in (1..).zip(&roots) {
        let b = c.block(h).await.expect("block after restart");
        assert_eq!((&b.hash, &b.stored.block.header.state_root), (hash, root), "height {h}");
    }
    let last = c.block(after.height).await.unwrap();
    assert_eq!(last.stored.block.header.state_root, after.state_root);
    // The chain goes on from where it stopped.
    let nonce = c.account(&public_key(&dev_key("alice"))).await.unwrap().nonce;
    let (h, r) = c.submit_and_wait(&transfer("alice", "bob", nonce, 1, &chain)).await.expect("included");
    assert!(r.is_applied());
    assert_eq!(h, after.height + 1);

    // --- determinism: the node's blocks replayed into a fresh in-memory ledger -----------
    let genesis = c.genesis().await.unwrap().config;
    let mut replay = ledger::Ledger::init(ledger::MemStore::new(), genesis).expect("genesis");
    let head = c.head().await.unwrap();
    for h in 1..=head.height {
        let b = c.block(h).await.expect("block");
        replay.execute_block(&b.stored.block).unwrap_or_else(|e| panic!("block {h} does not replay: {e}"));
        let out = replay.commit().expect("commit");
        assert_eq!(out.hash, b.hash, "height {h}");
    }
    assert_eq!(replay.head(), head);

    // --- SIGTERM: finish the block, exit 0 ----------------------------------------------
    assert_eq!(n.sigterm(), Some(0));
}

/// `agora node --genesis DIR/genesis.json --data-dir DIR/data --instant EXTRA...` with `g` in
/// the genesis file.
pub(crate) fn start_genesis(dir: &TempDir, g: &ledger::GenesisConfig, extra: &[&str]) -> NodeProc {
    let file = dir.0.join("genesis.json");
    std::fs::write(&file, g.to_json_pretty()).expect("write genesis");
    let data = dir.0.join("data");
    let args =
        [&["--genesis", file.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "--instant"], extra]
            .concat();
    NodeProc::start_with(&args)
}

#[test]
fn node_without_a_chain_says_what_to_pass() {
    let o = crate::agora(&["node"]);
    assert!(!o.status.success());
    assert!(crate::stderr(&o).contains("pass --dev"), "{}", crate::stderr(&o));
}

/// A genesis file with three neurons and an epoch every 2 blocks: weights go in through
/// JSON-RPC, epochs run, and the metagraph, the neuron queries and /metrics show them.
#[tokio::test(flavor = "current_thread")]
async fn node_from_a_genesis_file_runs_epochs_and_serves_the_metagraph() {
    let dir = TempDir::new("node-genesis");
    let names = ["n0", "n1", "n2"];
    let g = node::test_utils::neuron_genesis("agora-it", 2);
    let n = start_genesis(&dir, &g, &[]);
    let c = Client::connect(&n.http()).await.expect("connect");
    assert_eq!(c.genesis().await.unwrap().config, g);

    let rows: [(&str, Vec<u16>); 3] = [("n0", vec![1, 2]), ("n1", vec![0, 2]), ("n2", vec![0, 1])];
    let mut ids = Vec::new();
    // The metagraph before any weights, to be asked for again by height at the end.
    let before = c.metagraph(None).await.expect("metagraph before weights");
    for (who, uids) in &rows {
        let k = dev_key(who);
        let tx = TxBody {
            sender: public_key(&k),
            nonce: 0,
            fee: FEE,
            call: Call::set_weights(uids.clone(), &[0.5, 0.5]),
        }
        .sign(&k, "agora-it");
        ids.push(tx.clone());
        c.submit(&tx).await.expect("weights accepted");
    }
    for tx in &ids {
        let start = Instant::now();
        loop {
            match c.transaction(&tx.id()).await.unwrap() {
                TxLookup::Included { receipt, .. } => {
                    assert!(receipt.is_applied(), "{receipt:?}");
                    break;
                }
                _ => assert!(start.elapsed() < Duration::from_secs(20), "not included"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Two more blocks so that at least one epoch runs after the weights are in.
    for k in 0..2 {
        let (_, r) = c.submit_and_wait(&transfer("alice", "n0", k, 1, "agora-it")).await.expect("included");
        assert!(r.is_applied());
    }
    let mg = c.metagraph(None).await.expect("metagraph");
    assert_eq!(mg.n, 3);
    assert_eq!(mg.hotkeys, names.iter().map(|n| public_key(&dev_key(n))).collect::<Vec<_>>());
    for (row, (_, uids)) in mg.weights.iter().zip(&rows) {
        assert_eq!(row.iter().map(|&(j, _)| j).collect::<Vec<_>>(), *uids);
        assert!((row.iter().map(|&(_, w)| w).sum::<f64>() - 1.0).abs() < 1e-4, "{row:?}");
    }
    assert!(mg.E.iter().sum::<u64>() > 0, "an epoch minted: {:?}", mg.E);
    assert!(mg.S.iter().all(|&s| s >= 100 * UNITS_PER_TOKEN));
    assert_eq!(mg.R.len(), 3);
    // Every neuron set weights just now and holds a permit (3 of the default 128); yuma keeps
    // all of each row (each column's consensus is the 0.5 both others give it): VT = 1.
    assert_eq!((mg.active.clone(), mg.validator_permit.clone()), (vec![true; 3], vec![true; 3]));
    assert!(mg.VT.iter().all(|&vt| (vt - 1.0).abs() < 1e-4), "{:?}", mg.VT);
    let by_uid = c.neuron(1).await.expect("uid 1");
    assert_eq!(c.neuron_by_hotkey(&public_key(&dev_key("n1"))).await.unwrap(), by_uid);
    assert_eq!(by_uid.stake, mg.S[1]);
    let text = metrics(&n.addr);
    assert!(!text.contains("agora_epochs_total 0"), "{text}");
    // A past height is rebuilt by replaying the stored blocks: it is exactly what the node
    // served at that height, and differs from the latest.
    let past = c.metagraph(Some(before.block)).await.expect("metagraph at a past height");
    assert_eq!(past, before);
    assert_ne!(past.weights, mg.weights);
    dashboard_methods_agree_with_the_metagraph(&c, &n.addr, &mg).await;
}

/// The dashboard's calls (`agora_neurons`, `agora_network`) against the metagraph, their bad
/// parameters refused with what was expected, and the page itself on `GET /`.
async fn dashboard_methods_agree_with_the_metagraph(c: &Client, addr: &str, mg: &client::MetagraphInfo) {
    use client::{NeuronSort, NeuronsQuery};
    let all = c.neurons(NeuronsQuery::default()).await.expect("neurons");
    assert_eq!((all.n, all.block, all.offset), (3, mg.block, 0));
    assert_eq!(all.neurons.iter().map(|n| n.stake).collect::<Vec<_>>(), mg.S);
    assert_eq!(all.neurons.iter().map(|n| n.scores.incentive).collect::<Vec<_>>(), mg.I);
    // Sorted by incentive, largest first, one at a time from the second.
    let q = NeuronsQuery { offset: 1, limit: 1, sort: NeuronSort::Incentive, descending: true };
    let page = c.neurons(q).await.expect("a page");
    let mut by_incentive: Vec<usize> = (0..3).collect();
    by_incentive.sort_by(|&a, &b| mg.I[b].total_cmp(&mg.I[a]).then(a.cmp(&b)));
    assert_eq!(page.neurons.len(), 1);
    assert_eq!(usize::from(page.neurons[0].uid), by_incentive[1]);
    let net = c.network().await.expect("network");
    assert_eq!((net.chain_id.as_str(), net.mechanism.as_str(), net.n), ("agora-it", "yuma", 3));
    assert_eq!(net.head.height, mg.block);
    assert_eq!((net.issuance, net.tau), (mg.issuance, mg.tau));
    assert!(net.block_time_ms.is_some_and(|ms| ms >= 0.0), "{net:?}");

    // Bad parameters: JSON-RPC's invalid-params code, and the message says what is allowed.
    let call = |params: &str| {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"agora_neurons","params":{params}}}"#);
        let v: serde_json::Value = serde_json::from_str(&node::test_utils::post(addr, &body)).expect("json");
        assert_eq!(v["error"]["code"], codes::INVALID_PARAMS, "{params}: {v}");
        v["error"]["message"].as_str().unwrap_or_default().to_string()
    };
    assert!(call(r#"[{"limit": 0}]"#).contains("ask for 1 to 1000"));
    assert!(call(r#"{"limit": 5000}"#).contains("ask for 1 to 1000"));
    let m = call(r#"[{"sort": "height"}]"#);
    assert!(m.contains("unknown variant `height`") && m.contains("`incentive`"), "{m}");
    assert!(call(r#"[{"offset": -1}]"#).contains("expected"));
    assert!(call(r#"[{"colour": "red"}]"#).contains("unknown field `colour`"));

    // The history the node sampled: every block so far, the last sample the table now.
    let hist = c.history(client::HistoryQuery::default()).await.expect("history");
    assert_eq!(hist.neurons.len(), 3);
    assert_eq!(hist.heights.last(), Some(&mg.block));
    let total: u64 = mg.S.iter().sum();
    for n in &hist.neurons {
        let u = usize::from(n.uid);
        let share = n.stake_share.last().copied().flatten().expect("a share at the head");
        assert!((f64::from(share) - mg.S[u] as f64 / total as f64).abs() < 1e-6, "{n:?}");
        assert_eq!(n.emission.last().copied().flatten(), Some(mg.E[u]));
    }
    let refused = |q: client::HistoryQuery| async move {
        match c.history(q).await {
            Err(ClientError::Rpc { code, message, .. }) => (code, message),
            other => panic!("expected an error, got {other:?}"),
        }
    };
    let (code, m) = refused(client::HistoryQuery { uids: Some(vec![0, 9]), ..Default::default() }).await;
    assert_eq!((code, m.as_str()), (codes::NOT_FOUND, "no neuron with uid 9: the network has 3 neurons"));
    let (code, m) = refused(client::HistoryQuery { from: Some(0), to: Some(mg.block + 5), uids: None }).await;
    assert_eq!(code, codes::NOT_FOUND, "{m}");
    let (code, m) = refused(client::HistoryQuery { from: Some(5), to: Some(1), uids: None }).await;
    assert_eq!((code, m.as_str()), (codes::INVALID_PARAMS, "from block 5 is after to block 1"));
    let (code, m) =
        refused(client::HistoryQuery { uids: Some((0..100).collect()), ..Default::default() }).await;
    assert_eq!((code, m.as_str()), (codes::INVALID_PARAMS, "100 uids asked for: at most 64 per call"));

    // A neuron's row and column of W and its bonds, as the metagraph has them.
    for uid in 0..3u16 {
        let l = c.weights(uid).await.expect("weights");
        let u = usize::from(uid);
        assert_eq!(l.given, mg.weights[u]);
        let column: Vec<(u16, f64)> = (0..3u16)
            .filter_map(|i| mg.weights[usize::from(i)].iter().find(|&&(j, _)| j == uid).map(|&(_, w)| (i, w)))
            .collect();
        assert_eq!((l.received, l.bonds), (column, mg.bonds[u].clone()));
    }
    match c.weights(3).await {
        Err(ClientError::Rpc { code, message, .. }) => {
            assert_eq!(
                (code, message.as_str()),
                (codes::NOT_FOUND, "no neuron with uid 3: the network has 3 neurons")
            )
        }
        other => panic!("{other:?}"),
    }

    // The page, its assets, and nothing else, on plain HTTP.
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    };
    let page = get("/");
    assert!(page.starts_with("HTTP/1.0 200") && page.contains("<title>Agora</title>"), "{page}");
    assert!(page.to_lowercase().contains("content-security-policy: default-src 'self'"), "{page}");
    assert!(get("/dashboard.js").contains("agora_subscribeNewHeads"));
    assert!(!get("/nothing-here").starts_with("HTTP/1.0 200"));
}
