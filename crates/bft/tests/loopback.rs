//! Four validators on real sockets (loopback, commonware's authenticated p2p and tokio
//! runtime), each on its own thread: a transaction submitted to one is included, and all
//! hold the same blocks and state roots.

use bft::net::{spawn, NetConfig};
use bft::{Chain, Timeouts};
use ledger::{
    dev_key, public_key, Call, GenesisConfig, GenesisValidator, Ledger, MemStore, TxBody, TxStatus,
};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port")
}

#[test]
fn four_validators_on_loopback_finalize_the_same_chain() {
    let n = 4;
    let mut g = GenesisConfig::dev(&["alice", "bob"], 1_000_000_000);
    g.validators = (0..n)
        .map(|i| GenesisValidator { key: public_key(&dev_key(&format!("validator-{i}"))), power: 1 })
        .collect();
    let keys: Vec<_> =
        (0..n).map(|i| bft::signing_key(&dev_key(&format!("validator-{i}")).to_bytes())).collect();
    let addrs: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
    let dir = std::env::temp_dir().join(format!("agora-bft-loopback-{}", std::process::id()));
    let chains: Vec<_> = (0..n)
        .map(|_| Arc::new(Chain::new(Ledger::init(MemStore::new(), g.clone()).expect("genesis"), 1000)))
        .collect();
    let running: Vec<_> = (0..n)
        .map(|i| {
            let peers = (0..n)
                .filter(|&j| j != i)
                .map(|j| (commonware_cryptography::Signer::public_key(&keys[j]), addrs[j]))
                .collect();
            let net = NetConfig {
                listen: addrs[i],
                peers,
                storage: dir.join(i.to_string()),
                timeouts: Timeouts::default(),
            };
            spawn(chains[i].clone(), keys[i].clone(), net).expect("starts")
        })
        .collect();

    let k = dev_key("alice");
    let tx = TxBody {
        sender: public_key(&k),
        nonce: 0,
        fee: 10_000,
        call: Call::Transfer { to: public_key(&dev_key("bob")), amount: 5 },
    }
    .sign(&k, &g.chain_id);
    let id = futures::executor::block_on(running[2].mailbox.submit(tx.encode())).expect("admitted");

    let start = Instant::now();
    loop {
        let included = chains.iter().all(|c| c.ledger().transaction(&id).expect("store").is_some());
        if included && chains.iter().all(|c| c.head().height >= 3) {
            break;
        }
        let heads: Vec<u64> = chains.iter().map(|c| c.head().height).collect();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "heads {heads:?} after 60 s, transaction included: {included}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for r in running {
        r.stop();
    }
    let height = chains.iter().map(|c| c.head().height).min().unwrap_or(0);
    let rows = |c: &Chain<MemStore>| -> Vec<_> {
        let l = c.ledger();
        (1..=height).map(|h| l.block(h).expect("store").expect("block").block.header).collect()
    };
    for c in &chains[1..] {
        assert_eq!(rows(c), rows(&chains[0]));
    }
    let (_, _, receipt) = chains[0].ledger().transaction(&id).expect("store").expect("included");
    assert_eq!(receipt.status, TxStatus::Applied);
    let _ = std::fs::remove_dir_all(dir);
}
