//! The chain a localnet run starts: its mechanism, a short epoch, cheap registration, and one
//! funded faucet account that pays for the peers' stake and fees.

use crate::scenario::Scenario;
use ledger::{GenesisAccount, GenesisConfig, SigningKey, UNITS_PER_TOKEN};

/// The chain id of every localnet.
pub const CHAIN_ID: &str = "agora-localnet";

/// Tokens each peer's coldkey and hotkey receive for fees on top of its stake.
pub const FEE_BUDGET: u64 = 10 * UNITS_PER_TOKEN;

/// The faucet's key: derived from a public name, like the node's dev accounts, so it is
/// INSECURE by design and only fit for a throwaway local chain.
pub fn faucet_key() -> SigningKey {
    ledger::dev_key("localnet-faucet")
}

/// The genesis of a run of `scenario`.
///
/// - mechanism and tempo from the scenario; emission per block so that an epoch mints
///   `inflation_per_epoch` of the initial total stake;
/// - proof-of-work difficulty 1,000 (a few milliseconds) and room for every peer to register in
///   one block; immunity longer than any run, so no peer is replaced;
/// - `set_weights` rate limit of half the peers' interval, and no bounded change (peers move
///   their rows freely: the run is short);
/// - the scenario's activity cutoff (default 4 weight intervals), so a peer that leaves stops
///   validating and earning dividends within the run.
pub fn genesis(scenario: &Scenario) -> GenesisConfig {
    let stakes = scenario.stakes();
    let total: u64 = stakes.iter().sum();
    let n = scenario.peers.len() as u64;
    let faucet_balance = total + 2 * n * FEE_BUDGET + 1_000 * UNITS_PER_TOKEN;
    let mut g = GenesisConfig {
        chain_id: CHAIN_ID.into(),
        accounts: vec![GenesisAccount { key: ledger::public_key(&faucet_key()), balance: faucet_balance }],
        tempo: scenario.tempo,
        ..GenesisConfig::default()
    };
    g.mechanism = mechanism::Mechanism::from_name(&scenario.mechanism).unwrap_or(g.mechanism);
    if let (mechanism::Mechanism::Yuma(p), Some(rule)) = (&mut g.mechanism, scenario.dividend_rule) {
        p.dividend_rule = rule;
    }
    let per_epoch = (total as f64 * scenario.inflation_per_epoch) as u64;
    g.emission_per_block = (per_epoch / scenario.tempo).max(1);
    g.max_neurons = (scenario.peers.len() as u32).max(2) * 2;
    g.immunity_period = u64::MAX / 4;
    g.registration.difficulty = 1_000;
    g.registration.min_difficulty = 1;
    g.registration.max_difficulty = 1_000_000;
    g.registration.max_per_block = (n as u32).max(4);
    g.registration.target_per_interval = n.max(1);
    g.weights.rate_limit = (scenario.weights_interval / 2).max(1);
    g.activity_cutoff = scenario.activity_cutoff().max(g.weights.rate_limit);
    g.weights.max_change = None;
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_genesis_is_valid_for_every_mechanism_and_funds_the_stakes() {
        for m in mechanism::MECHANISM_NAMES {
            let s = Scenario { mechanism: m.into(), ..Scenario::default() };
            let g = genesis(&s);
            g.validate().unwrap();
            assert_eq!(g.mechanism, mechanism::Mechanism::from_name(m).unwrap());
            let total: u64 = s.stakes().iter().sum();
            assert!(g.accounts[0].balance > total + 16 * FEE_BUDGET);
            assert_eq!(g.emission_per_block * s.tempo, (total as f64 * 0.02) as u64 / s.tempo * s.tempo);
        }
    }
}
