//! Adaptive inflation on chain (intermodel paper, Figure 5): each epoch tau moves toward the
//! target sparsity of W, within its bounds, and sets what the next epochs mint.

use crate::common::*;
use ledger::*;

fn chain(mode: EmissionMode) -> Chain {
    let mut g = genesis(3, "basic");
    g.emission_mode = mode;
    // Rows move freely between the phases below.
    g.weights.max_change = None;
    g.adaptive_inflation = Some(AdaptiveInflation {
        target_sparsity: 0.5,
        gain: 0.2,
        min_per_block: TOKEN / 5,
        max_per_block: 2 * TOKEN,
    });
    Chain::new(g)
}

/// Every neuron sets `row(i)`; then epochs run until block `until`. Returns tau after each epoch
/// and checks each epoch minted `tempo * tau` of the epoch before (per-epoch mode).
fn phase(c: &mut Chain, row: impl Fn(u16) -> Vec<(u16, f64)>, until: u64) -> Vec<u64> {
    let txs: Vec<SignedTx> = (0..3).map(|i| c.tx(&key(&hot(i)), weights(&row(i as u16)))).collect();
    let out = c.block(txs);
    assert!(out.receipts.iter().all(Receipt::is_applied), "{:?}", out.receipts);
    let mut taus = Vec::new();
    while c.ledger.head().height < until {
        let tau = c.ledger.metagraph().tau;
        let out = c.block(vec![]);
        if let Some(e) = &out.epoch {
            if c.ledger.genesis().emission_mode == EmissionMode::PerEpoch {
                assert_eq!(e.minted, 5 * tau, "an epoch mints tempo * tau at block {}", e.height);
            }
            taus.push(c.ledger.metagraph().tau);
        }
    }
    c.assert_conserved();
    taus
}

#[test]
fn tau_moves_toward_the_target_sparsity_within_its_bounds() {
    let mut c = chain(EmissionMode::PerEpoch);
    assert_eq!((c.ledger.metagraph().tau, c.ledger.metagraph().sparsity), (TOKEN, None));
    // Connected (no self-weight): sparsity 0 < 0.5, tau rises by 0.2 * 0.5 = 0.1 token an epoch
    // and stops at the upper bound.
    let others = |i: u16| vec![((i + 1) % 3, 0.5), ((i + 2) % 3, 0.5)];
    let up = phase(&mut c, others, 60);
    let tenth = TOKEN / 10;
    assert_eq!(&up[..4], &[TOKEN + tenth, TOKEN + 2 * tenth, TOKEN + 3 * tenth, TOKEN + 4 * tenth]);
    assert_eq!(*up.last().unwrap(), 2 * TOKEN, "{up:?}");
    assert!(up.windows(2).all(|w| w[0] <= w[1]), "{up:?}");
    assert_eq!(c.ledger.metagraph().sparsity, Some(0.0));

    // Disconnected (the identity, sparsity 1): tau falls back, down to the lower bound.
    let down = phase(&mut c, |i| vec![(i, 1.0)], 160);
    assert_eq!(down[0], 2 * TOKEN - tenth, "{down:?}");
    assert!(down.windows(2).all(|w| w[0] >= w[1]), "{down:?}");
    assert_eq!(*down.last().unwrap(), TOKEN / 5, "{down:?}");
    assert_eq!(c.ledger.metagraph().sparsity, Some(1.0));

    // At the target (half self-weight): tau holds.
    let held = phase(&mut c, |i| vec![(i, 0.5), ((i + 1) % 3, 0.5)], 180);
    assert!(held.iter().all(|&t| t == held[0]), "{held:?}");
}

#[test]
fn lazy_accrual_follows_tau_and_a_fixed_chain_keeps_its_rate() {
    // Lazy mode: the per-block accrual rates add up to tau (in 2^-16 units).
    let mut c = chain(EmissionMode::Lazy);
    let others = |i: u16| vec![((i + 1) % 3, 0.5), ((i + 2) % 3, 0.5)];
    phase(&mut c, others, 11);
    let tau = c.ledger.metagraph().tau;
    assert!(tau > TOKEN);
    // Rates were fixed at block 10's epoch from the tau the epoch at 5 left.
    let rates: u64 = c.ledger.neurons().iter().map(|n| n.emission_rate).sum();
    assert_eq!(rates, (TOKEN + TOKEN / 10) << 16);

    // Without adaptive inflation tau is emission_per_block for ever, whatever W does.
    let mut fixed = Chain::new(genesis(3, "basic"));
    let others = |i: u16| vec![((i + 1) % 3, 0.5), ((i + 2) % 3, 0.5)];
    let taus = phase(&mut fixed, others, 20);
    assert!(taus.iter().all(|&t| t == TOKEN), "{taus:?}");

    // Bad parameters are refused at genesis, by name.
    let mut g = genesis(1, "basic");
    g.adaptive_inflation = Some(AdaptiveInflation { target_sparsity: 0.0, ..Default::default() });
    assert!(matches!(
        g.validate(),
        Err(GenesisError::Invalid { field: "adaptive_inflation.target_sparsity", .. })
    ));
    g.adaptive_inflation = Some(AdaptiveInflation { min_per_block: 2 * TOKEN, ..Default::default() });
    assert!(matches!(g.validate(), Err(GenesisError::Invalid { field: "emission_per_block", .. })));
}
