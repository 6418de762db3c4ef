//! The peer's chain operations against the real ledger in process (`LocalChain`).

use ledger::{dev_key, public_key, Endpoint, GenesisConfig, Modality, Protocol, UNITS_PER_TOKEN};
use peer::{Chain, ChainError, LocalChain, Participant, RateLimitPolicy, WeightSetter, WeightsOutcome};
use std::sync::Arc;

fn genesis(rate_limit: u64, max_change: Option<f64>) -> GenesisConfig {
    let mut g = GenesisConfig::dev(&["p0", "p1", "p2", "cold"], 1_000 * UNITS_PER_TOKEN);
    g.registration.difficulty = 200;
    g.weights.rate_limit = rate_limit;
    g.weights.max_change = max_change;
    g.tempo = 1000;
    g
}

async fn participants(chain: &Arc<LocalChain>, k: usize) -> Vec<Participant<Arc<LocalChain>>> {
    let mut out = Vec::new();
    for i in 0..k {
        let hotkey = dev_key(&format!("p{i}"));
        let p = Participant::new(chain.clone(), hotkey, public_key(&dev_key("cold"))).await.unwrap();
        out.push(p);
    }
    out
}

/// The chain stores rows in units of 1/65535: compare to that resolution.
fn assert_row(got: &[(u16, f64)], want: &[(u16, f64)]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(g.0 == w.0 && (g.1 - w.1).abs() < 2.0 / 65535.0, "{got:?} vs {want:?}");
    }
}

fn endpoint(port: u16) -> Endpoint {
    Endpoint {
        ip: "127.0.0.1".parse::<std::net::IpAddr>().unwrap().into(),
        port,
        protocol: Protocol::Grpc,
        modality: Modality::Text,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn register_is_idempotent_and_serve_publishes_the_endpoint() {
    let chain = Arc::new(LocalChain::new(genesis(1, None)).unwrap());
    let ps = participants(&chain, 3).await;
    let mut uids = Vec::new();
    for p in &ps {
        assert_eq!(p.uid().await.unwrap(), None);
        uids.push(p.register().await.unwrap());
    }
    assert_eq!(uids, [0, 1, 2]);
    let height = chain.head().await.unwrap().height;
    // Registered already: no transaction, same uid.
    assert_eq!(ps[1].register().await.unwrap(), 1);
    assert_eq!(chain.head().await.unwrap().height, height);

    let before = ps[1].balance().await.unwrap();
    assert!(ps[1].serve(endpoint(8091)).await.unwrap().is_some());
    let fee = ps[1].genesis().fees.serve;
    assert_eq!(ps[1].balance().await.unwrap(), before - fee);
    assert_eq!(ps[1].serve(endpoint(8091)).await.unwrap(), None, "same endpoint: nothing sent");

    let view = ps[0].sync().await.unwrap();
    assert_eq!(view.n(), 3);
    assert_eq!(view.uid_of(&ps[2].hotkey()), Some(2));
    assert_eq!(view.serving(), vec![(1, ps[1].hotkey(), endpoint(8091))]);
    let stakes = view.stake_by_hotkey();
    assert_eq!(stakes.len(), 3);
    assert_eq!(stakes[&ps[0].hotkey().0], 0);
    // The coldkey named at registration owns the neuron.
    assert_eq!(view.info().coldkeys[2], public_key(&dev_key("cold")));
}

#[tokio::test(flavor = "current_thread")]
async fn an_unregistered_hotkey_cannot_serve_or_weight() {
    let chain = Arc::new(LocalChain::new(genesis(1, None)).unwrap());
    let ps = participants(&chain, 1).await;
    assert!(matches!(ps[0].serve(endpoint(1)).await, Err(ChainError::NotRegistered(_))));
    let r = ps[0].set_weights(vec![0], &[1.0], RateLimitPolicy::Skip).await;
    assert!(matches!(r, Err(ChainError::NotRegistered(_))));
}

#[tokio::test(flavor = "current_thread")]
async fn set_weights_respects_the_rate_limit_instead_of_being_refused() {
    let chain = Arc::new(LocalChain::new(genesis(5, None)).unwrap());
    let ps = participants(&chain, 2).await;
    for p in &ps {
        p.register().await.unwrap();
    }
    let first = ps[0].set_weights(vec![0, 1], &[0.5, 0.5], RateLimitPolicy::Skip).await.unwrap();
    let WeightsOutcome::Applied { height } = first else { panic!("{first:?}") };
    let again = ps[0].set_weights(vec![1], &[1.0], RateLimitPolicy::Skip).await.unwrap();
    assert_eq!(again, WeightsOutcome::RateLimited { next_allowed: height + 5 });
    let waited = ps[0].set_weights(vec![1], &[1.0], RateLimitPolicy::Wait).await.unwrap();
    assert_eq!(waited, WeightsOutcome::Applied { height: height + 5 });
    let view = ps[0].sync().await.unwrap();
    assert_eq!(view.weights_of(0), &[(1, 1.0)]);
    assert_eq!(view.last_update(0), Some(height + 5));
}

#[tokio::test(flavor = "current_thread")]
async fn the_weight_setter_submits_every_interval_and_converges_under_bounded_change() {
    let chain = Arc::new(LocalChain::new(genesis(1, Some(0.3))).unwrap());
    let ps = participants(&chain, 3).await;
    for p in &ps {
        p.register().await.unwrap();
    }
    let mut setter = WeightSetter::new(3);
    // A first row is not bounded.
    let out = setter.step(&ps[0], &[(0, 1.0), (1, 1.0), (7, 9.0), (2, f32::NAN)]).await.unwrap();
    let Some(WeightsOutcome::Applied { height: h0 }) = out else { panic!("{out:?}") };
    assert_row(ps[0].sync().await.unwrap().weights_of(0), &[(0, 0.5), (1, 0.5)]);
    // Not due before the interval has passed.
    assert_eq!(setter.step(&ps[0], &[(2, 1.0)]).await.unwrap(), None);
    // All weight to uid 2 is ~1.22 away: it takes several bounded steps, each accepted.
    let mut steps = 0;
    loop {
        let head = chain.head().await.unwrap().height;
        chain.next_block(head.max(setter.last_submitted().unwrap() + 2)).await.unwrap();
        let out = setter.step(&ps[0], &[(2, 1.0)]).await.unwrap();
        assert!(matches!(out, Some(WeightsOutcome::Applied { .. })), "{out:?}");
        steps += 1;
        let row = ps[0].sync().await.unwrap().weights_of(0).to_vec();
        if row == [(2, 1.0)] {
            break;
        }
        assert!(steps < 10, "row {row:?} after {steps} steps");
    }
    assert!(steps >= 4, "a distance of 1.22 at 0.3 per step takes at least 4 steps, took {steps}");
    assert!(setter.last_submitted().unwrap() > h0);

    let mut cabal = WeightSetter::new(1).with_cabal(vec![1, 2]);
    cabal.step(&ps[1], &[(0, 5.0)]).await.unwrap();
    assert_row(ps[1].sync().await.unwrap().weights_of(1), &[(1, 0.5), (2, 0.5)]);
}

#[tokio::test(flavor = "current_thread")]
async fn submissions_are_checked_like_the_node_checks_them() {
    let chain = LocalChain::new(genesis(1, None)).unwrap();
    let g = chain.genesis().await.unwrap();
    let k = dev_key("p0");
    let transfer = |nonce, amount| {
        ledger::TxBody {
            sender: public_key(&k),
            nonce,
            fee: g.fees.transfer,
            call: ledger::Call::Transfer { to: public_key(&dev_key("p1")), amount },
        }
        .sign(&k, &g.chain_id)
    };
    let tx = |nonce| transfer(nonce, 5);
    let a = chain.submit(&tx(0)).await.unwrap();
    let b = chain.submit(&tx(1)).await.unwrap();
    assert_eq!(chain.submit(&tx(1)).await.unwrap(), b, "the same transaction again is the one pending");
    assert!(matches!(
        chain.submit(&transfer(1, 6)).await,
        Err(ChainError::Mempool(ledger::MempoolError::NoncePending { nonce: 1, next: 2, .. }))
    ));
    assert!(matches!(
        chain.submit(&tx(5)).await,
        Err(ChainError::Rejected(ledger::TxError::NonceTooHigh { .. }))
    ));
    let (ha, ra) = chain.wait_for(a).await.unwrap();
    let (hb, rb) = chain.wait_for(b).await.unwrap();
    assert_eq!((ha, hb), (1, 1), "both queued transactions went into one block");
    assert!(ra.is_applied() && rb.is_applied());
    assert!(matches!(
        chain.submit(&tx(0)).await,
        Err(ChainError::Rejected(ledger::TxError::NonceReused { .. }))
    ));
}

/// The roles the localnet relies on, on the real ledger with the yuma mechanism: honest peers
/// weight their neighbours by value through `WeightSetter`, the cabal weights only itself, the
/// noise peer gets no weight. The cabal's share of stake falls every epoch and the noise peer
/// earns (almost) nothing.
#[tokio::test(flavor = "current_thread")]
async fn under_yuma_the_cabal_decays_and_noise_earns_nothing() {
    let names: Vec<String> = (0..7).map(|i| format!("p{i}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut g = GenesisConfig::dev(&name_refs, 10 * UNITS_PER_TOKEN);
    g.mechanism = ledger::mechanism::Mechanism::from_name("yuma").unwrap();
    g.tempo = 5;
    g.weights.rate_limit = 1;
    g.weights.max_change = None;
    g.emission_per_block = 10 * UNITS_PER_TOKEN;
    g.neurons = names
        .iter()
        .map(|n| ledger::GenesisNeuron {
            hotkey: public_key(&dev_key(n)),
            coldkey: public_key(&dev_key(n)),
            stake: 100 * UNITS_PER_TOKEN,
            endpoint: None,
        })
        .collect();
    let chain = Arc::new(LocalChain::new(g).unwrap());
    let mut ps = Vec::new();
    for n in &names {
        ps.push(Participant::new(chain.clone(), dev_key(n), public_key(&dev_key(n))).await.unwrap());
    }
    // uids 0..4 honest (value 4, 3, 2, 1), 4 noise, 5 and 6 the cabal.
    let value = [4.0f32, 3.0, 2.0, 1.0, 0.0];
    let honest_scores: Vec<(u16, f32)> = (0..5u16).map(|u| (u, value[usize::from(u)])).collect();
    let mut setters: Vec<WeightSetter> = (0..7)
        .map(|u| if u >= 5 { WeightSetter::new(5).with_cabal(vec![5, 6]) } else { WeightSetter::new(5) })
        .collect();
    let cabal_share = |v: &peer::MetagraphView| {
        let s = &v.info().S;
        (s[5] + s[6]) as f64 / s.iter().sum::<u64>() as f64
    };
    let mut shares = Vec::new();
    for _ in 0..20 {
        for (u, (p, w)) in ps.iter().zip(setters.iter_mut()).enumerate() {
            // The noise peer weights like an honest one: its own row does not make it useful.
            let scores: &[(u16, f32)] = if u < 5 { &honest_scores } else { &[] };
            w.step(p, scores).await.unwrap();
        }
        let head = chain.head().await.unwrap().height;
        let head = chain.next_block(head).await.unwrap().height;
        if head % 5 == 0 {
            shares.push(cabal_share(&ps[0].sync().await.unwrap()));
        }
    }
    assert!(shares.len() >= 3, "epochs sampled: {shares:?}");
    assert!(shares.windows(2).skip(1).all(|w| w[1] < w[0]), "cabal share per epoch {shares:?}");
    let view = ps[0].sync().await.unwrap();
    let inc = &view.info().I;
    assert!(inc[4] < 0.01, "noise incentive {inc:?}");
    assert!(inc[0] > inc[1] && inc[1] > inc[2] && inc[2] > inc[3], "honest incentive follows value: {inc:?}");
    assert!(inc[5] + inc[6] < 0.05, "cabal incentive {inc:?}");
}
