//! Four validators in commonware's deterministic runtime and simulated network (seeded):
//! random delay and loss on every link, a 2|2 partition that halts finality and is healed,
//! one validator crashed and restarted from its journal and ledger. No fork: every validator
//! holds the same block hash and state root at every height, transactions submitted to any
//! validator are included once, and the same seed replays the same chain to the byte (so a
//! failing seed replays its failure: `BFT_SEED=N cargo test -p bft --test simulation`).
//! A validator far behind the payloads the others keep in memory catches up from their stored
//! blocks.

use bft::{Chain, Timeouts, ValidatorKey};
use commonware_p2p::simulated::{Config, Link, Network, Oracle};
use commonware_runtime::{deterministic, Clock, Quota, Runner, Spawner, Supervisor};
use commonware_utils::{probability, NZUsize, NZU32};
use ledger::{
    dev_key, public_key, Call, GenesisConfig, GenesisValidator, Hash, Ledger, MemStore, TxBody, TxStatus,
};
use std::sync::Arc;
use std::time::Duration;

const VALIDATORS: usize = 4;
const USERS: usize = 12;

type Ctx = deterministic::Context;

/// One block as every validator must hold it: height, block hash, state root.
type Row = (u64, Hash, Hash);

fn user(i: usize) -> String {
    format!("user-{i}")
}

fn genesis() -> GenesisConfig {
    let names: Vec<String> = (0..USERS).map(user).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut g = GenesisConfig::dev(&names, 1_000_000_000);
    g.validators = (0..VALIDATORS)
        .map(|i| GenesisValidator { key: public_key(&dev_key(&format!("validator-{i}"))), power: 1 })
        .collect();
    g
}

/// A transfer of `user-i` to `user-0`, nonce 0.
fn transfer(i: usize, chain_id: &str) -> ledger::SignedTx {
    let k = dev_key(&user(i));
    TxBody {
        sender: public_key(&k),
        nonce: 0,
        fee: 10_000,
        call: Call::Transfer { to: public_key(&dev_key(&user(0))), amount: 1 },
    }
    .sign(&k, chain_id)
}

async fn link(
    oracle: &Oracle<ValidatorKey, Ctx>,
    keys: &[ValidatorKey],
    across: impl Fn(usize, usize) -> bool,
    up: bool,
) {
    let lossy = Link {
        latency: Duration::from_millis(60),
        jitter: Duration::from_millis(40),
        success_rate: probability!(0.85),
    };
    for (i, a) in keys.iter().enumerate() {
        for (j, b) in keys.iter().enumerate() {
            if i == j || !across(i, j) {
                continue;
            }
            match up {
                true => oracle.add_link(a.clone(), b.clone(), lossy.clone()).await.expect("link"),
                false => oracle.remove_link(a.clone(), b.clone()).await.expect("unlink"),
            }
        }
    }
}

/// Starts validator `i` with its engine journal in its own storage partition.
async fn start(
    context: &Ctx,
    oracle: &Oracle<ValidatorKey, Ctx>,
    i: usize,
    chain: &Arc<Chain<MemStore>>,
) -> bft::Validator {
    start_as(context, oracle, i, chain, &format!("validator-{i}"), Timeouts::default()).await
}

type Channel =
    (commonware_p2p::simulated::Sender<ValidatorKey, Ctx>, commonware_p2p::simulated::Receiver<ValidatorKey>);

/// Registers `me`'s four channels (anew after a crash).
async fn channels(oracle: &Oracle<ValidatorKey, Ctx>, me: &ValidatorKey) -> Vec<Channel> {
    let control = oracle.control(me.clone());
    let quota = Quota::per_second(NZU32!(10_000));
    let mut channels = Vec::new();
    for c in [
        bft::channels::VOTES,
        bft::channels::CERTIFICATES,
        bft::channels::RESOLVER,
        bft::channels::APPLICATION,
    ] {
        channels.push(control.register(c, quota).await.expect("register"));
    }
    channels
}

fn signing_key(i: usize) -> commonware_cryptography::ed25519::PrivateKey {
    bft::signing_key(&dev_key(&format!("validator-{i}")).to_bytes())
}

/// Starts validator `i` with its engine journal in storage partition `partition`.
async fn start_as(
    context: &Ctx,
    oracle: &Oracle<ValidatorKey, Ctx>,
    i: usize,
    chain: &Arc<Chain<MemStore>>,
    partition: &str,
    timeouts: Timeouts,
) -> bft::Validator {
    let key = signing_key(i);
    let me = commonware_cryptography::Signer::public_key(&key);
    let mut channels = channels(oracle, &me).await.into_iter();
    let mut next = || channels.next().expect("four channels");
    bft::start(
        context.child("validator").with_attribute("index", i),
        chain.clone(),
        key,
        timeouts,
        partition.to_string(),
        oracle.control(me.clone()),
        next(),
        next(),
        next(),
        next(),
    )
    .expect("a validator of the genesis")
}

/// Waits (simulated time) until every chain in `which` is at `height` or above.
async fn reach(
    context: &Ctx,
    chains: &[Arc<Chain<MemStore>>],
    which: &[usize],
    height: u64,
    within: Duration,
) {
    let start = context.current();
    while which.iter().any(|&i| chains[i].head().height < height) {
        let waited = context.current().duration_since(start).unwrap_or_default();
        let heads: Vec<u64> = chains.iter().map(|c| c.head().height).collect();
        assert!(
            waited < within,
            "validators {which:?} not at height {height} after {waited:?}: heads {heads:?}"
        );
        context.sleep(Duration::from_millis(100)).await;
    }
}

fn heads(chains: &[Arc<Chain<MemStore>>]) -> Vec<u64> {
    chains.iter().map(|c| c.head().height).collect()
}

/// Blocks 1 to `height` of validator 0, after checking every validator holds the same ones (no
/// fork: the same block hash and state root at every height).
fn same_rows(chains: &[Arc<Chain<MemStore>>], height: u64) -> Vec<Row> {
    let rows = |c: &Chain<MemStore>| -> Vec<Row> {
        let l = c.ledger();
        (1..=height)
            .map(|h| {
                let b = l.block(h).expect("store").expect("block").block;
                (h, b.header.hash(), b.header.state_root)
            })
            .collect()
    };
    let common = rows(&chains[0]);
    for (i, c) in chains.iter().enumerate() {
        assert_eq!(rows(c), common, "validator {i} differs from validator 0");
    }
    common
}

/// The simulated network of the validators `keys`, every pair linked.
async fn network(context: &Ctx, keys: &[ValidatorKey]) -> Oracle<ValidatorKey, Ctx> {
    let config = Config {
        max_size: (bft::payload::MAX_PAYLOAD_BYTES + 1024) as u32,
        max_peers_per_set: NZUsize!(VALIDATORS),
        disconnect_on_block: true,
        tracked_peer_sets: NZUsize!(1),
    };
    let (network, oracle) = Network::new_with_peers(context.child("network"), config, keys.to_vec()).await;
    network.start();
    link(&oracle, keys, |_, _| true, true).await;
    oracle
}

/// A ledger of genesis `g` in memory, with a mempool.
fn chain(g: &GenesisConfig) -> Arc<Chain<MemStore>> {
    Arc::new(Chain::new(Ledger::init(MemStore::new(), g.clone()).expect("genesis"), 10_000))
}

/// Runs the whole scenario under `seed`; returns the common chain.
fn simulate(seed: u64) -> Vec<Row> {
    let config = deterministic::Config::new().with_seed(seed).with_timeout(Some(Duration::from_secs(3_600)));
    deterministic::Runner::new(config).start(|context| async move {
        let g = genesis();
        let keys: Vec<ValidatorKey> = bft::participants(&g).expect("validators").into_iter().collect();
        let oracle = network(&context, &keys).await;

        let chains: Vec<Arc<Chain<MemStore>>> = (0..VALIDATORS).map(|_| chain(&g)).collect();
        let mut validators = Vec::new();
        for (i, chain) in chains.iter().enumerate() {
            validators.push(Some(start(&context, &oracle, i, chain).await));
        }
        let all: Vec<usize> = (0..VALIDATORS).collect();

        // Transactions to any validator are gossiped and included once.
        let mut submitted = Vec::new();
        for u in 1..5 {
            let tx = transfer(u, &g.chain_id);
            let v = validators[u % VALIDATORS].as_ref().expect("running");
            submitted.push(v.mailbox.submit(tx.encode()).await.expect("admitted"));
            context.sleep(Duration::from_millis(300)).await;
        }
        reach(&context, &chains, &all, 8, Duration::from_secs(120)).await;

        // A 2|2 partition: neither side has the two thirds to finalize.
        // (Sides by position in the sorted key set, which is how `link` names validators.)
        let side = |k: usize| k < 2;
        link(&oracle, &keys, |i, j| side(i) != side(j), false).await;
        // What was in flight lands, and a side may still fetch what one of its members has.
        context.sleep(Duration::from_secs(5)).await;
        let top = heads(&chains).into_iter().max().unwrap_or(0);
        let tx = transfer(5, &g.chain_id);
        submitted.push(
            validators[0].as_ref().expect("running").mailbox.submit(tx.encode()).await.expect("admitted"),
        );
        context.sleep(Duration::from_secs(30)).await;
        let during = heads(&chains).into_iter().max().unwrap_or(0);
        assert_eq!(during, top, "a block was finalized without a two-thirds quorum");
        eprintln!("seed {seed}: partitioned at height {top} for 30 s: heads {:?}", heads(&chains));

        // Healed: finality resumes.
        link(&oracle, &keys, |i, j| side(i) != side(j), true).await;
        reach(&context, &chains, &all, top + 5, Duration::from_secs(300)).await;

        // Validator 3 crashes, misses blocks, restarts from its journal and its ledger.
        validators[3].take().expect("running").abort();
        let others: Vec<usize> = (0..3).collect();
        let top = heads(&chains).into_iter().max().unwrap_or(0);
        for u in 6..9 {
            let tx = transfer(u, &g.chain_id);
            submitted.push(
                validators[u % 3]
                    .as_ref()
                    .expect("running")
                    .mailbox
                    .submit(tx.encode())
                    .await
                    .expect("admitted"),
            );
        }
        reach(&context, &chains, &others, top + 5, Duration::from_secs(300)).await;
        validators[3] = Some(start(&context, &oracle, 3, &chains[3]).await);
        let top = heads(&chains).into_iter().max().unwrap_or(0);
        reach(&context, &chains, &all, top + 3, Duration::from_secs(300)).await;

        // Validator 2 loses its data directory (ledger and journal): it rejoins from genesis,
        // fetching every payload from the others.
        validators[2].take().expect("running").abort();
        let wiped = chain(&g);
        validators[2] =
            Some(start_as(&context, &oracle, 2, &wiped, "validator-2-wiped", Timeouts::default()).await);
        let mut chains = chains;
        chains[2] = wiped;
        let top = heads(&chains).into_iter().max().unwrap_or(0);
        reach(&context, &chains, &all, top + 2, Duration::from_secs(300)).await;

        eprintln!(
            "seed {seed}: after the restart and the wipe, heads {:?} at {:?}",
            heads(&chains),
            context.current().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
        );
        // No fork: the same block and state root at every height on every validator.
        let height = heads(&chains).into_iter().min().unwrap_or(0);
        let common = same_rows(&chains, height);
        // Each submitted transaction in exactly one block, applied.
        let l = chains[0].ledger();
        for id in &submitted {
            let (_, _, receipt) =
                l.transaction(id).expect("store").unwrap_or_else(|| panic!("{id} not included"));
            assert_eq!(receipt.status, TxStatus::Applied, "{id}");
        }
        let mut included: Vec<Hash> = (1..=height)
            .flat_map(|h| l.block(h).expect("store").expect("block").block.txs)
            .map(|t| t.id())
            .collect();
        let n = included.len();
        included.sort_by_key(|h| h.0);
        included.dedup();
        assert_eq!(included.len(), n, "a transaction was included twice");
        assert!(chains.iter().all(|c| c.evidence().is_empty()), "honest validators never equivocate");
        drop(l);
        common
    })
}

/// Seeds 1 to 3 (about 10 s each), or the one in `BFT_SEED`; the first runs twice and must
/// replay the same chain, block hashes (with their simulated timestamps) and state roots.
#[test]
fn four_validators_survive_loss_a_partition_and_a_restart_without_forking_and_replay_exactly() {
    let seeds: Vec<u64> = match std::env::var("BFT_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => vec![1, 2, 3],
    };
    for &seed in &seeds {
        let chain = simulate(seed);
        assert!(chain.len() >= 15, "seed {seed}: only {} blocks", chain.len());
        if seed == seeds[0] {
            assert_eq!(simulate(seed), chain, "seed {seed} did not replay the same chain");
        }
    }
}

/// One of four validators equivocates (two votes for different payloads in every view it
/// votes in). The three honest ones, exactly a quorum, keep finalizing the same chain, and
/// each reports the equivocation with the validator's index.
#[test]
fn an_equivocating_validator_is_reported_and_does_not_fork_the_chain() {
    let config = deterministic::Config::new().with_seed(7).with_timeout(Some(Duration::from_secs(3_600)));
    deterministic::Runner::new(config).start(|context| async move {
        let g = genesis();
        let set = bft::participants(&g).expect("validators");
        let keys: Vec<ValidatorKey> = set.clone().into_iter().collect();
        let oracle = network(&context, &keys).await;
        let chains: Vec<Arc<Chain<MemStore>>> = (0..3).map(|_| chain(&g)).collect();
        let mut validators = Vec::new();
        for (i, chain) in chains.iter().enumerate() {
            validators.push(start(&context, &oracle, i, chain).await);
        }
        let key = signing_key(3);
        let me = commonware_cryptography::Signer::public_key(&key);
        let byzantine = keys.iter().position(|k| *k == me).expect("in the set") as u32;
        let namespace = format!("agora/{}", g.chain_id).into_bytes();
        let scheme = bft::Scheme::signer(&namespace, set, key).expect("a validator");
        let votes = channels(&oracle, &me).await.into_iter().next().expect("the vote channel");
        context.child("byzantine").spawn(move |_| bft::byzantine::equivocate(scheme, votes));

        let honest: Vec<usize> = (0..3).collect();
        reach(&context, &chains, &honest, 10, Duration::from_secs(600)).await;
        let height = heads(&chains).into_iter().min().unwrap_or(0);
        let roots = |c: &Chain<MemStore>| -> Vec<Hash> {
            let l = c.ledger();
            (1..=height).map(|h| l.block(h).expect("store").expect("block").block.header.state_root).collect()
        };
        for c in &chains[1..] {
            assert_eq!(roots(c), roots(&chains[0]), "the honest validators forked");
        }
        for (i, c) in chains.iter().enumerate() {
            let evidence = c.evidence();
            assert!(!evidence.is_empty(), "validator {i} reported no equivocation");
            assert!(
                evidence.iter().all(|e| e.validator == byzantine),
                "{evidence:?} blames an honest validator"
            );
        }
        drop(validators);
    })
}

/// A paced chain (`Timeouts::paced`): every block's timestamp is at least the block time after
/// its parent's, and the chain still advances at about that rate (no view is skipped for a
/// leader that waits).
#[test]
fn a_paced_chain_keeps_the_block_time_between_blocks() {
    let config = deterministic::Config::new().with_seed(3).with_timeout(Some(Duration::from_secs(3_600)));
    deterministic::Runner::new(config).start(|context| async move {
        let g = genesis();
        let keys: Vec<ValidatorKey> = bft::participants(&g).expect("validators").into_iter().collect();
        let oracle = network(&context, &keys).await;
        let chains: Vec<Arc<Chain<MemStore>>> = (0..VALIDATORS).map(|_| chain(&g)).collect();
        let block_time = Duration::from_millis(500);
        let mut validators = Vec::new();
        for (i, chain) in chains.iter().enumerate() {
            let partition = format!("validator-{i}");
            validators
                .push(start_as(&context, &oracle, i, chain, &partition, Timeouts::paced(block_time)).await);
        }
        let all: Vec<usize> = (0..VALIDATORS).collect();
        let started = context.current();
        reach(&context, &chains, &all, 20, Duration::from_secs(60)).await;
        let took = context.current().duration_since(started).unwrap_or_default();
        let l = chains[0].ledger();
        let stamps: Vec<u64> =
            (1..=20).map(|h| l.block(h).expect("store").expect("block").block.header.timestamp_ms).collect();
        for w in stamps.windows(2) {
            assert!(w[1] - w[0] >= 500, "blocks {} ms apart: {stamps:?}", w[1] - w[0]);
        }
        // 20 blocks of 500 ms, plus the links' latency per block: not much more than 10 s.
        assert!(took < Duration::from_secs(20), "20 blocks took {took:?}: {stamps:?}");
        drop(l);
        drop(validators);
    })
}

/// The others keep 16 payloads in memory (`Timeouts::keep_payloads`, 4,096 by default) and run
/// the chain five times past that before validator 3, which held blocks 1 to 10 and then lost
/// its data directory, comes back: every payload it needs below the others' window is rebuilt
/// from their stored blocks, and it reaches the same block hashes and state roots.
#[test]
fn a_wiped_validator_far_behind_the_payloads_in_memory_catches_up_from_stored_blocks() {
    const KEEP: u64 = 16;
    let config = deterministic::Config::new().with_seed(11).with_timeout(Some(Duration::from_secs(3_600)));
    deterministic::Runner::new(config).start(|context| async move {
        let g = genesis();
        let keys: Vec<ValidatorKey> = bft::participants(&g).expect("validators").into_iter().collect();
        let oracle = network(&context, &keys).await;
        let mut chains: Vec<Arc<Chain<MemStore>>> = (0..VALIDATORS).map(|_| chain(&g)).collect();
        let timeouts = Timeouts { keep_payloads: KEEP, ..Timeouts::default() };
        let mut validators = Vec::new();
        for (i, chain) in chains.iter().enumerate() {
            let partition = format!("validator-{i}");
            validators.push(Some(start_as(&context, &oracle, i, chain, &partition, timeouts.clone()).await));
        }
        let all: Vec<usize> = (0..VALIDATORS).collect();
        // Transactions early on, so the payloads rebuilt from the store are not all empty.
        let mut submitted = Vec::new();
        for u in 1..USERS {
            let tx = transfer(u, &g.chain_id);
            let v = validators[u % VALIDATORS].as_ref().expect("running");
            submitted.push(v.mailbox.submit(tx.encode()).await.expect("admitted"));
        }
        reach(&context, &chains, &all, 10, Duration::from_secs(120)).await;

        validators[3].take().expect("running").abort();
        let others: Vec<usize> = (0..3).collect();
        reach(&context, &chains, &others, 5 * KEEP + 10, Duration::from_secs(900)).await;

        let wiped = chain(&g);
        validators[3] = Some(start_as(&context, &oracle, 3, &wiped, "validator-3-wiped", timeouts).await);
        chains[3] = wiped;
        let top = heads(&chains).into_iter().max().unwrap_or(0);
        let wiped_at = context.current();
        reach(&context, &chains, &all, top + 2, Duration::from_secs(60)).await;
        eprintln!(
            "validator 3 caught up {top} blocks in {:?} (simulated)",
            context.current().duration_since(wiped_at).unwrap_or_default()
        );

        let height = heads(&chains).into_iter().min().unwrap_or(0);
        same_rows(&chains, height);
        let l = chains[3].ledger();
        for id in &submitted {
            let (at, _, receipt) =
                l.transaction(id).expect("store").unwrap_or_else(|| panic!("{id} missing"));
            assert_eq!(receipt.status, TxStatus::Applied, "{id}");
            assert!(at + KEEP < height, "{id} at height {at}: within the others' memory");
        }
        drop(l);
        drop(validators);
    })
}
