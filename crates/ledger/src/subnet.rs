//! Subnets: several independent networks on one chain (issue 20).
//!
//! A subnet has its own neuron table, weight rows, mechanism, bonds, proof-of-work difficulty,
//! registration burn, epoch schedule and commitments; accounts, the issuance and tau (the
//! emission per block) are chain-wide. Netuid 0 is the genesis network, with the genesis
//! file's parameters. A [`Call::CreateSubnet`](crate::Call::CreateSubnet) burns the chain's
//! `subnets.creation_cost` from its sender (who becomes the subnet's owner) and opens the next
//! netuid with the [`SubnetParams`] it names; subnets are never removed.
//!
//! # Emission between subnets
//! Each block's emission tau is split between the subnets in proportion to the stake of the
//! hotkeys registered in each (the sum of its neurons' stake S), by the largest remainder rule
//! ([`crate::apportion()`], ties to the lower netuid), so the shares add up to exactly tau: a
//! subnet with no stake gets nothing. When no subnet has any stake, the whole block's emission
//! goes to netuid 0, as it did before subnets existed. Each subnet accrues its shares until its
//! own epoch (every `tempo` of its blocks), where its mechanism distributes them among its
//! neurons exactly as the single network did with `tempo * tau`; with only netuid 0 the two
//! are the same number. What an epoch does not pay (no neurons, or the mechanism withholding)
//! lapses. Subnets need per-epoch emission: a chain in lazy mode refuses `create_subnet`.

use crate::apportion::apportion;
use crate::commit_reveal::CommitRevealConfig;
use crate::genesis::GenesisConfig;
use crate::types::PublicKey;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// The genesis network's netuid: every call without one acts here.
pub const ROOT_NETUID: u16 = 0;

/// Chain-wide rules for creating subnets (genesis `subnets`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubnetsConfig {
    /// Base units a `create_subnet` burns from its sender (besides its fee).
    pub creation_cost: u64,
    /// Most subnets besides netuid 0.
    pub max_subnets: u16,
}

impl Default for SubnetsConfig {
    fn default() -> Self {
        // 100 tokens: a hundred blocks of the default emission, so opening a network costs
        // something a newcomer has to earn, and a dev chain's accounts can still afford it.
        SubnetsConfig { creation_cost: 100 * crate::UNITS_PER_TOKEN, max_subnets: 32 }
    }
}

impl SubnetsConfig {
    /// True for the defaults (the genesis file then leaves the field out, so the hash of a
    /// genesis written before subnets existed is unchanged).
    pub fn is_default(&self) -> bool {
        *self == SubnetsConfig::default()
    }
}

/// The parameters a `create_subnet` chooses; everything else (fees, limits, the registration
/// bounds and its adjustment interval, delegation, activity cutoff, validator permits) is the
/// genesis network's.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SubnetParams {
    /// The incentive mechanism, by name (`basic`, `connectivity`, `trust`, `nakamoto`, `yuma`),
    /// with its default parameters.
    pub mechanism: String,
    /// Blocks per epoch: the subnet's mechanism runs at every height that is a multiple of it.
    pub tempo: u64,
    pub max_neurons: u32,
    /// Blocks after registration during which a neuron cannot be replaced.
    pub immunity_period: u64,
    /// The initial proof-of-work difficulty (within the genesis bounds); it then adjusts with
    /// the subnet's own registrations.
    pub difficulty: u64,
    /// Blocks between two weight rows of one neuron.
    pub weights_rate_limit: u64,
    /// Commit-reveal weights: `None` for plain `set_weights`.
    pub commit_reveal: Option<CommitRevealConfig>,
}

impl SubnetParams {
    /// The genesis network's parameters, as a subnet would name them.
    pub fn of_genesis(cfg: &GenesisConfig) -> SubnetParams {
        SubnetParams {
            mechanism: cfg.mechanism.name().to_string(),
            tempo: cfg.tempo,
            max_neurons: cfg.max_neurons,
            immunity_period: cfg.immunity_period,
            difficulty: cfg.registration.difficulty,
            weights_rate_limit: cfg.weights.rate_limit,
            commit_reveal: cfg.weights.commit_reveal.clone(),
        }
    }

    /// The configuration the subnet runs under: the chain's genesis with these parameters, no
    /// genesis accounts or neurons, and no adaptive inflation (tau is chain-wide and steered
    /// by netuid 0). Refused, with the reason, when the genesis validation refuses it.
    pub fn config(&self, chain: &GenesisConfig) -> Result<GenesisConfig, String> {
        let mechanism = mechanism::Mechanism::from_name(&self.mechanism).ok_or_else(|| {
            format!(
                "mechanism {:?} is unknown: use one of basic, connectivity, trust, nakamoto, yuma",
                self.mechanism
            )
        })?;
        let mut c = GenesisConfig {
            accounts: Vec::new(),
            neurons: Vec::new(),
            validators: Vec::new(),
            adaptive_inflation: None,
            mechanism,
            tempo: self.tempo,
            max_neurons: self.max_neurons,
            immunity_period: self.immunity_period,
            ..chain.clone()
        };
        c.registration.difficulty = self.difficulty;
        c.weights.rate_limit = self.weights_rate_limit;
        c.weights.commit_reveal = self.commit_reveal.clone();
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

/// A subnet's creation record, committed in the state.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SubnetInfo {
    pub netuid: u16,
    /// The coldkey that paid for it.
    pub owner: PublicKey,
    /// Height of the block that created it.
    pub created_at: u64,
    pub params: SubnetParams,
}

/// One block's emission `tau` split between subnets whose registered stakes are `stakes`
/// (netuid 0 first): see the module doc. The parts add up to exactly `tau`.
pub fn split_block_emission(tau: u64, stakes: &[u128]) -> Vec<u64> {
    // f64 shares lose precision only beyond 2^53 base units, and apportion still hands out
    // exactly `tau`.
    let shares: Vec<f64> = stakes.iter().map(|&s| s as f64).collect();
    apportion(tau, &shares).unwrap_or_else(|| {
        let mut parts = vec![0; stakes.len().max(1)];
        parts[0] = tau;
        parts
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn no_stake_anywhere_leaves_everything_to_netuid_0() {
        assert_eq!(split_block_emission(10, &[0, 0, 0]), vec![10, 0, 0]);
        assert_eq!(split_block_emission(10, &[]), vec![10]);
        assert_eq!(split_block_emission(10, &[0, 3, 1]), vec![0, 8, 2]);
    }

    #[test]
    fn params_are_checked_by_the_genesis_rules() {
        let chain = GenesisConfig::default();
        let ok = SubnetParams { mechanism: "basic".into(), ..SubnetParams::of_genesis(&chain) };
        assert_eq!(ok.config(&chain).unwrap().mechanism.name(), "basic");
        let bad = SubnetParams { mechanism: "nope".into(), ..ok.clone() };
        assert!(bad.config(&chain).unwrap_err().contains("unknown"));
        let bad = SubnetParams { tempo: 0, ..ok.clone() };
        assert!(bad.config(&chain).unwrap_err().contains("tempo"));
        let bad = SubnetParams { max_neurons: 0, ..ok };
        assert!(bad.config(&chain).unwrap_err().contains("max_neurons"));
    }

    proptest! {
        #[test]
        fn the_split_hands_out_exactly_tau_and_nothing_to_a_subnet_without_stake(
            tau in 0..u64::MAX / 2,
            stakes in proptest::collection::vec(prop_oneof![Just(0u128), 0..u64::MAX as u128], 1..8),
        ) {
            let parts = split_block_emission(tau, &stakes);
            prop_assert_eq!(parts.iter().map(|&p| u128::from(p)).sum::<u128>(), u128::from(tau));
            if stakes.iter().any(|&s| s > 0) {
                for (s, p) in stakes.iter().zip(&parts) {
                    if *s == 0 { prop_assert_eq!(*p, 0); }
                }
            }
        }
    }
}
