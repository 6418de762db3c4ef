//! The `peer` crate's chain link against a real `agora node --dev` child process.

use crate::node::NodeProc;
use crate::TempDir;
use ledger::{dev_key, public_key, Call, Endpoint, Modality, Protocol, UNITS_PER_TOKEN};
use peer::{Chain, Participant, RateLimitPolicy, RpcChain, WeightSetter, WeightsOutcome};
use std::sync::Arc;

#[tokio::test(flavor = "current_thread")]
async fn a_peer_registers_serves_and_sets_weights_on_a_real_node() {
    let dir = TempDir::new("peer-chain");
    let data = dir.0.join("data");
    let node = NodeProc::start(data.to_str().expect("utf-8"), &["--block-time-ms", "100"]);
    let chain = Arc::new(RpcChain::connect(&node.http()).await.expect("connect"));

    // Dev accounts are funded: each signs as its own coldkey and hotkey.
    let alice =
        Participant::new(chain.clone(), dev_key("alice"), public_key(&dev_key("alice"))).await.unwrap();
    let bob = Participant::new(chain.clone(), dev_key("bob"), public_key(&dev_key("bob"))).await.unwrap();
    assert_eq!(alice.uid().await.unwrap(), None);
    let a = alice.register().await.expect("proof-of-work registration");
    let b = bob.register().await.expect("proof-of-work registration");
    assert_eq!((a, b), (0, 1));
    assert_eq!(alice.register().await.unwrap(), 0, "registered already: skipped");

    let endpoint = Endpoint {
        ip: "127.0.0.1".parse::<std::net::IpAddr>().unwrap().into(),
        port: 9000,
        protocol: Protocol::Grpc,
        modality: Modality::Text,
    };
    let before = alice.balance().await.unwrap();
    assert!(alice.serve(endpoint).await.unwrap().is_some());
    assert_eq!(alice.balance().await.unwrap(), before - alice.genesis().fees.serve);
    bob.transact(Call::AddStake { hotkey: bob.hotkey(), amount: 5 * UNITS_PER_TOKEN }).await.unwrap();

    let view = alice.sync().await.unwrap();
    assert_eq!(view.serving(), vec![(0, alice.hotkey(), endpoint)]);
    assert_eq!(view.stake_by_hotkey()[&bob.hotkey().0], 5 * UNITS_PER_TOKEN);
    assert_eq!(view.uid_of(&bob.hotkey()), Some(1));

    let mut setter = WeightSetter::new(2);
    let out = setter.step(&alice, &[(1, 3.0), (0, 1.0), (9, 1.0)]).await.unwrap();
    let Some(WeightsOutcome::Applied { height }) = out else { panic!("{out:?}") };
    let row = alice.sync().await.unwrap().weights_of(0).to_vec();
    assert_eq!(row.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 1]);
    assert!((row[1].1 - 0.75).abs() < 1e-4, "{row:?}");
    // The next one waits for the rate limit instead of being refused.
    let out = alice.set_weights(vec![1], &[1.0], RateLimitPolicy::Wait).await.unwrap();
    assert!(matches!(out, WeightsOutcome::Applied { height: h } if h > height), "{out:?}");
    assert!(chain.head().await.unwrap().height > height);
}

/// A peer's link to its node survives the node going away: the node is killed and started
/// again on the same port and data directory, and the same `RpcChain` (over a WebSocket, the
/// transport that used to fail with "restart required") goes on reading the chain.
#[tokio::test(flavor = "current_thread")]
async fn the_chain_link_reconnects_when_the_node_restarts() {
    let dir = TempDir::new("peer-reconnect");
    let data = dir.0.join("data").to_str().expect("utf-8").to_string();
    let node = NodeProc::start(&data, &["--block-time-ms", "100"]);
    let addr = node.addr.clone();
    let chain = RpcChain::connect(&node.ws()).await.expect("connect");
    let before = chain.next_block(2).await.expect("a block").height;
    node.sigkill();
    // Started again a second later, on the same port, while the link is already waiting.
    let restart = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(1));
        std::process::Command::new(env!("CARGO_BIN_EXE_agora"))
            .args(["node", "--dev", "--data-dir", &data, "--block-time-ms", "100", "--rpc-addr", &addr])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("restart the node")
    });
    let after = chain.next_block(before).await.expect("the link reconnected");
    assert!(after.height > before, "{} then {}", before, after.height);
    let mut restarted = restart.join().expect("restart thread");
    let _ = restarted.kill();
    let _ = restarted.wait();
}

/// The chain link of `agora peer run --netuid`: a participant put on subnet 1 registers there
/// by proof of work at the subnet's difficulty, serves, and sets weights under the subnet's rate
/// limit, and the genesis network never sees it.
#[tokio::test(flavor = "current_thread")]
async fn a_peer_joins_a_subnet() {
    let dir = TempDir::new("peer-subnet");
    let data = dir.0.join("data");
    let node = NodeProc::start(data.to_str().expect("utf-8"), &["--block-time-ms", "100"]);
    let root = Arc::new(RpcChain::connect(&node.http()).await.expect("connect"));
    let bob = Participant::new(root.clone(), dev_key("bob"), public_key(&dev_key("bob"))).await.unwrap();
    let params = ledger::SubnetParams {
        mechanism: "basic".into(),
        tempo: 5,
        max_neurons: 8,
        immunity_period: 0,
        difficulty: 1,
        weights_rate_limit: 3,
        commit_reveal: None,
    };
    bob.transact(Call::CreateSubnet { params: params.clone() }).await.expect("subnet created");

    let mut link = RpcChain::connect(&node.http()).await.expect("connect");
    link.netuid = 1;
    let link = Arc::new(link);
    let alice = Participant::new(link.clone(), dev_key("alice"), public_key(&dev_key("alice")))
        .await
        .unwrap()
        .on_subnet(1, &params)
        .unwrap();
    assert_eq!((alice.netuid(), alice.genesis().weights.rate_limit), (1, 3));
    assert_eq!(link.difficulty().await.unwrap(), 1);
    assert_eq!(alice.register().await.expect("registered in subnet 1"), 0);
    let endpoint = Endpoint {
        ip: "127.0.0.1".parse::<std::net::IpAddr>().unwrap().into(),
        port: 9001,
        protocol: Protocol::Grpc,
        modality: Modality::Text,
    };
    assert!(alice.serve(endpoint).await.unwrap().is_some());
    let out = alice.set_weights(vec![0], &[1.0], RateLimitPolicy::Skip).await.unwrap();
    let WeightsOutcome::Applied { height } = out else { panic!("{out:?}") };
    // The subnet's rate limit, 3 blocks, not the genesis network's 1.
    let out = alice.set_weights(vec![0], &[1.0], RateLimitPolicy::Skip).await.unwrap();
    assert!(
        matches!(out, WeightsOutcome::RateLimited { next_allowed } if next_allowed == height + 3),
        "{out:?}"
    );
    let view = alice.sync().await.unwrap();
    assert_eq!(view.serving(), vec![(0, alice.hotkey(), endpoint)]);
    assert_eq!(view.weights_of(0).iter().map(|e| e.0).collect::<Vec<_>>(), [0]);
    // The genesis network has no neurons: alice is subnet 1's only.
    assert_eq!(root.metagraph().await.unwrap().n, 0);
    assert_eq!(bob.uid().await.unwrap(), None);
}
