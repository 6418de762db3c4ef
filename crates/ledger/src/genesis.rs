//! The genesis configuration: everything fixed for the life of a chain.
//!
//! A JSON file (serde; every field has a default, unknown fields are refused so a typo is an
//! error, not a silently ignored setting). [`GenesisConfig::validate`] checks it before a chain
//! starts from it; its hash identifies the chain together with the `chain_id` that every
//! signature commits to.

use crate::merkle::sha256;
use crate::types::{Endpoint, Hash, PublicKey};
use ed25519_dalek::SigningKey;
use mechanism::{EpochInput, Mechanism, MechanismState, SparseMatrix};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest table the uid type allows (uids are `u16`, as on the production chain).
pub const MAX_NEURONS_LIMIT: u32 = 1 << 16;
/// Lazy emission accrues in units of 2^-[`LAZY_FRACTION_BITS`] base units, so the per-block
/// emission must stay below 2^(64 - bits) base units for the scaled amount to fit in a u64.
pub const LAZY_FRACTION_BITS: u32 = 16;
/// The longest proof-of-work window: the chain keeps this many recent block hashes.
pub const MAX_POW_WINDOW: u64 = 1024;

/// How minted stake reaches neurons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmissionMode {
    /// Every `tempo` blocks the mechanism runs and its emission is credited to stake at once.
    PerEpoch,
    /// The papers' transaction-triggered inflation (market paper §5): emission accrues per
    /// neuron and is paid along its weight row when it transacts. See `epoch.rs` for the exact
    /// mapping onto the mechanism.
    Lazy,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub key: PublicKey,
    /// Free balance in base units.
    pub balance: u64,
}

/// A neuron present from the first block (a network bootstraps from them: market paper §5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisNeuron {
    pub hotkey: PublicKey,
    pub coldkey: PublicKey,
    /// Stake in base units (part of the genesis issuance).
    #[serde(default)]
    pub stake: u64,
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
}

/// A validator of the chain: one of the keys that order and finalise blocks (the consensus
/// engine's participants, ed25519), not a neuron. An empty list is the single-validator chain
/// of `agora node` without `--validator-key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub key: PublicKey,
    /// Voting power. The engine (commonware simplex) counts every validator once: a block is
    /// final with the votes of more than two thirds of the validators, so all powers must be
    /// equal (checked by `validate`).
    #[serde(default = "one")]
    pub power: u64,
}

fn one() -> u64 {
    1
}

/// Proof-of-work registration (market paper v2, "Transactions and Token Inflation") and its
/// difficulty adjustment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationConfig {
    /// Difficulty at genesis: a seal is valid when `seal * difficulty < 2^256` (seal read as a
    /// 256-bit big-endian number), so about `difficulty` hashes are needed per registration.
    pub difficulty: u64,
    pub min_difficulty: u64,
    pub max_difficulty: u64,
    /// Registrations per interval the difficulty steers toward.
    pub target_per_interval: u64,
    /// Blocks per adjustment interval.
    pub interval: u64,
    /// A proof of work must name one of the last `pow_window` blocks (so work cannot be
    /// stockpiled in advance).
    pub pow_window: u64,
    /// Burn at genesis of a burned registration (`burned_register`, and `register_by` whose
    /// sponsor pays it instead of doing work). It then adjusts at every interval as the
    /// difficulty does, by the same rule, within `[min_burn, max_burn]`.
    pub burn: u64,
    pub min_burn: u64,
    pub max_burn: u64,
    /// Registrations of either kind accepted per block.
    pub max_per_block: u32,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            difficulty: 10_000,
            min_difficulty: 1,
            max_difficulty: u64::MAX,
            target_per_interval: 2,
            interval: 100,
            pow_window: 64,
            burn: crate::UNITS_PER_TOKEN,
            // Subtensor's bounds: 0.0005 and 100 TAO.
            min_burn: crate::UNITS_PER_TOKEN / 2_000,
            max_burn: 100 * crate::UNITS_PER_TOKEN,
            max_per_block: 4,
        }
    }
}

/// Rules for `set_weights`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeightsConfig {
    /// Blocks that must pass between two `set_weights` of one neuron (0: no limit).
    pub rate_limit: u64,
    /// Bounded change (intermodel paper §2.3, `||dW_i||_2 < epsilon`): the largest L2 distance
    /// between a neuron's normalised row and its replacement. `None`: unbounded. A neuron's first
    /// row is never bounded (there is nothing to change from).
    pub max_change: Option<f64>,
    /// Most entries in one row.
    pub max_len: u32,
    /// Commit-reveal weights ([`crate::commit_reveal`]): `None` (the default), rows are set in
    /// the open with `set_weights`; `Some`, only by `commit_weights` then `reveal_weights`. A
    /// chain-wide parameter while there are no subnets. Not written when off, so the hash of a
    /// genesis without it is what it was before it existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_reveal: Option<crate::commit_reveal::CommitRevealConfig>,
}

impl Default for WeightsConfig {
    fn default() -> Self {
        WeightsConfig { rate_limit: 1, max_change: Some(1.0), max_len: 256, commit_reveal: None }
    }
}

/// Minimum fee of each transaction kind, in base units. The fee is paid from the sender's free
/// balance and burned (market paper §5: fees in the staking token).
///
/// Weight setting is free by default, as on Bittensor: a new hotkey registers by proof of work
/// and sets weights without being funded first. What bounds it instead is the per-neuron
/// `weights.rate_limit` (a `set_weights` within it is refused with `WeightsRateLimited` before
/// it reaches a block) and the mempool's rule that a transaction paying no fee is admitted only
/// as its sender's next one, checked in full against the current state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeeSchedule {
    pub transfer: u64,
    /// Zero by default: a new hotkey has no balance, and the proof of work is its cost.
    pub register: u64,
    pub register_by: u64,
    pub serve: u64,
    pub add_stake: u64,
    pub remove_stake: u64,
    /// Zero by default: weight setting is rate-limited instead (see above).
    pub set_weights: u64,
    pub set_take: u64,
    pub burned_register: u64,
}

impl FeeSchedule {
    /// The least fee a transaction of this kind must offer.
    pub fn min_fee(&self, kind: crate::tx::CallKind) -> u64 {
        use crate::tx::CallKind;
        match kind {
            // Opening a subnet pays a transfer's fee; its cost is the creation burn.
            CallKind::Transfer | CallKind::CreateSubnet => self.transfer,
            CallKind::Register => self.register,
            CallKind::RegisterBy => self.register_by,
            // Both announce what a neuron serves (see `Call::PublishVersion`).
            CallKind::Serve | CallKind::PublishVersion => self.serve,
            CallKind::AddStake => self.add_stake,
            CallKind::SetTake => self.set_take,
            CallKind::BurnedRegister => self.burned_register,
            CallKind::RemoveStake => self.remove_stake,
            // The two halves of a set_weights cost what it costs.
            CallKind::SetWeights | CallKind::CommitWeights | CallKind::RevealWeights => self.set_weights,
        }
    }
}

impl Default for FeeSchedule {
    fn default() -> Self {
        let fee = 10_000; // 1e-5 token
        FeeSchedule {
            transfer: fee,
            register: 0,
            register_by: fee,
            serve: fee,
            add_stake: fee,
            remove_stake: fee,
            set_weights: 0,
            set_take: fee,
            burned_register: fee,
        }
    }
}

/// Size limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest encoded signed transaction.
    pub max_tx_bytes: u32,
    /// Most transactions in one block.
    pub max_block_txs: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_tx_bytes: 64 * 1024, max_block_txs: 10_000 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenesisConfig {
    /// Every signature commits to it: a transaction signed for one chain is invalid on another.
    pub chain_id: String,
    /// Timestamp of the genesis state (milliseconds since the Unix epoch); blocks must not go
    /// back before it.
    pub genesis_time_ms: u64,
    pub accounts: Vec<GenesisAccount>,
    pub neurons: Vec<GenesisNeuron>,
    /// The incentive mechanism and its parameters (the `mechanism` crate, tagged by `kind`).
    pub mechanism: Mechanism,
    pub emission_mode: EmissionMode,
    /// Blocks per epoch: the mechanism runs at every height that is a multiple of `tempo`.
    pub tempo: u64,
    /// New stake the schedule allows per block, in base units.
    pub emission_per_block: u64,
    /// Total issuance never exceeds this; emission stops (or is cut short) when it is reached.
    pub max_issuance: u64,
    pub max_neurons: u32,
    /// Blocks after registration during which a neuron cannot be replaced.
    pub immunity_period: u64,
    /// A neuron validates at an epoch only if its last accepted `set_weights` (or, before its
    /// first, its registration) is at most this many blocks before the epoch's height
    /// (subtensor's `activity_cutoff`). An inactive neuron's weights do not count and its
    /// stake counts zero in the mechanism's validation; it earns no dividends and its bonds
    /// decay. Its stake is untouched, and others' weights on it still count.
    ///
    /// Default 5,000, subtensor's: 50 of our default epochs of 100 blocks, room for a validator
    /// to restart or upgrade without losing its bonds, while one that left stops earning within
    /// a day at second-long blocks. It must be at least `weights.rate_limit`, or no neuron could
    /// stay active; set it well above the interval at which validators set weights.
    pub activity_cutoff: u64,
    /// Validator permits: at each epoch only the `max_validators` neurons with the most stake
    /// (ties to the lower uid) may validate; the others' weights are ignored, they earn no
    /// dividends and their bonds are cleared (subtensor's `max_allowed_validators`). A table
    /// with fewer neurons gives every one a permit.
    ///
    /// Default 128, subtensor's for a subnet of 4,096 uids (our default `max_neurons`): enough
    /// validators that no small group decides consensus, few enough that every validator's
    /// weights are backed by stake worth checking.
    pub max_validators: u32,
    pub registration: RegistrationConfig,
    pub weights: WeightsConfig,
    pub fees: FeeSchedule,
    pub limits: Limits,
    /// Adaptive inflation ([`crate::inflation`], the intermodel paper's Figure 5): each epoch
    /// the emission per block tau moves toward a target sparsity of W, within bounds. `None`
    /// (the default): tau is `emission_per_block` for ever. Not written when off, so the hash of
    /// a genesis without it is what it was before it existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptive_inflation: Option<crate::inflation::AdaptiveInflation>,
    /// Delegation ([`crate::delegation`]): the default and largest take, the notice before a
    /// take increase applies, and the bounds on nominations.
    pub delegation: crate::delegation::DelegationConfig,
    /// The validator set (empty: the single-validator chain). Not serialised when empty, so
    /// the hash of a genesis without validators is what it was before validators existed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub validators: Vec<GenesisValidator>,
    /// What creating a subnet costs and how many there may be ([`crate::subnet`]). Not
    /// serialised when default, so the hash of a genesis written before subnets is unchanged.
    #[serde(skip_serializing_if = "crate::subnet::SubnetsConfig::is_default")]
    pub subnets: crate::subnet::SubnetsConfig,
}

impl Default for GenesisConfig {
    fn default() -> Self {
        GenesisConfig {
            chain_id: "agora-dev".into(),
            genesis_time_ms: 0,
            accounts: Vec::new(),
            neurons: Vec::new(),
            mechanism: Mechanism::from_name("yuma").unwrap_or(Mechanism::Basic(Default::default())),
            emission_mode: EmissionMode::PerEpoch,
            tempo: 100,
            emission_per_block: crate::UNITS_PER_TOKEN,
            // 21 million tokens, as in the papers' reference chain.
            max_issuance: 21_000_000 * crate::UNITS_PER_TOKEN,
            max_neurons: 4096,
            immunity_period: 1000,
            activity_cutoff: 5000,
            max_validators: 128,
            registration: RegistrationConfig::default(),
            weights: WeightsConfig::default(),
            fees: FeeSchedule::default(),
            limits: Limits::default(),
            adaptive_inflation: None,
            delegation: Default::default(),
            validators: Vec::new(),
            subnets: Default::default(),
        }
    }
}

/// Why a genesis configuration cannot start a chain.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GenesisError {
    #[error("genesis file is not valid JSON for a genesis configuration: {0}")]
    Parse(String),
    #[error("genesis field {field} = {value}: {reason}")]
    Invalid { field: &'static str, value: String, reason: &'static str },
    #[error("genesis names key {0} twice (in {1})")]
    DuplicateKey(PublicKey, &'static str),
    #[error("genesis issuance overflows: balances and stakes add up to more than max_issuance {max}")]
    IssuanceTooLarge { max: u64 },
    #[error("mechanism parameters rejected: {0}")]
    Mechanism(String),
}

impl GenesisConfig {
    /// A development chain: the defaults, with each name in `names` funded with `balance`
    /// through its [`dev_key`] (insecure by design: anyone can derive these keys).
    pub fn dev(names: &[&str], balance: u64) -> GenesisConfig {
        let accounts =
            names.iter().map(|n| GenesisAccount { key: public_key(&dev_key(n)), balance }).collect();
        GenesisConfig { accounts, ..GenesisConfig::default() }
    }

    pub fn from_json(text: &str) -> Result<Self, GenesisError> {
        let g: GenesisConfig = serde_json::from_str(text).map_err(|e| GenesisError::Parse(e.to_string()))?;
        g.validate()?;
        Ok(g)
    }

    pub fn to_json_pretty(&self) -> String {
        // Serialising plain structs of numbers, strings and enums cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Identifies the chain's starting point: the hash of the canonical JSON form. Stored in the
    /// state and used as the parent hash of block 1.
    pub fn hash(&self) -> Hash {
        let json = serde_json::to_vec(self).unwrap_or_default();
        sha256(&[b"agora/genesis/v1", &json])
    }

    /// Base units in existence at genesis: balances plus stakes.
    pub fn issuance(&self) -> Result<u64, GenesisError> {
        let mut total: u64 = 0;
        let amounts = self.accounts.iter().map(|a| a.balance).chain(self.neurons.iter().map(|n| n.stake));
        for x in amounts {
            total = total.checked_add(x).ok_or(GenesisError::IssuanceTooLarge { max: self.max_issuance })?;
        }
        if total > self.max_issuance {
            return Err(GenesisError::IssuanceTooLarge { max: self.max_issuance });
        }
        Ok(total)
    }

    pub fn validate(&self) -> Result<(), GenesisError> {
        let bad = |field: &'static str, value: &dyn std::fmt::Display, reason: &'static str| {
            Err(GenesisError::Invalid { field, value: value.to_string(), reason })
        };
        if self.chain_id.is_empty()
            || self.chain_id.len() > 64
            || !self.chain_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return bad("chain_id", &self.chain_id, "must be 1 to 64 printable ASCII characters");
        }
        if self.tempo == 0 {
            return bad("tempo", &self.tempo, "must be at least 1 block");
        }
        if self.emission_per_block >= 1u64 << (64 - LAZY_FRACTION_BITS) {
            return bad("emission_per_block", &self.emission_per_block, "must be below 2^48 base units");
        }
        if let Some(a) = &self.adaptive_inflation {
            if let Some((field, value, reason)) = a.invalid(self.emission_per_block) {
                return Err(GenesisError::Invalid { field, value, reason });
            }
        }
        if self.max_neurons == 0 || self.max_neurons > MAX_NEURONS_LIMIT {
            return bad("max_neurons", &self.max_neurons, "must be in 1..=65536 (uids are u16)");
        }
        if self.neurons.len() > self.max_neurons as usize {
            return bad("neurons", &self.neurons.len(), "more genesis neurons than max_neurons");
        }
        if self.activity_cutoff == 0 || self.activity_cutoff < self.weights.rate_limit {
            return bad(
                "activity_cutoff",
                &self.activity_cutoff,
                "must be at least 1 block and at least weights.rate_limit, or no neuron could stay active",
            );
        }
        if self.max_validators == 0 {
            return bad(
                "max_validators",
                &self.max_validators,
                "must be at least 1, or nobody could validate",
            );
        }
        let r = &self.registration;
        if r.min_difficulty == 0 || r.min_difficulty > r.max_difficulty {
            return bad("registration.min_difficulty", &r.min_difficulty, "must be in 1..=max_difficulty");
        }
        if r.difficulty < r.min_difficulty || r.difficulty > r.max_difficulty {
            return bad(
                "registration.difficulty",
                &r.difficulty,
                "must lie in [min_difficulty, max_difficulty]",
            );
        }
        if r.min_burn == 0 || r.min_burn > r.max_burn {
            return bad(
                "registration.min_burn",
                &r.min_burn,
                "must be in 1..=max_burn (a burn of 0 could never rise again)",
            );
        }
        if r.burn < r.min_burn || r.burn > r.max_burn {
            return bad("registration.burn", &r.burn, "must lie in [min_burn, max_burn]");
        }
        if r.interval == 0 {
            return bad("registration.interval", &r.interval, "must be at least 1 block");
        }
        if r.target_per_interval == 0 {
            return bad("registration.target_per_interval", &r.target_per_interval, "must be at least 1");
        }
        if r.pow_window == 0 || r.pow_window > MAX_POW_WINDOW {
            return bad("registration.pow_window", &r.pow_window, "must be in 1..=1024 blocks");
        }
        if let Some(eps) = self.weights.max_change {
            if !eps.is_finite() || eps < 0.0 {
                return bad("weights.max_change", &eps, "must be a finite L2 distance >= 0");
            }
        }
        if let Some(cr) = &self.weights.commit_reveal {
            if cr.reveal_delay == 0 {
                return bad(
                    "weights.commit_reveal.reveal_delay",
                    &cr.reveal_delay,
                    "must be at least 1 block, or the weights are never hidden",
                );
            }
            if cr.reveal_window == 0 {
                return bad(
                    "weights.commit_reveal.reveal_window",
                    &cr.reveal_window,
                    "must be at least 1 block, or no reveal could land",
                );
            }
        }
        let d = &self.delegation;
        if d.default_take > d.max_take {
            return bad("delegation.default_take", &d.default_take, "must be at most delegation.max_take");
        }
        if d.min_nomination == 0 {
            return bad("delegation.min_nomination", &d.min_nomination, "must be at least 1 base unit");
        }
        if d.max_nominators == 0 {
            return bad("delegation.max_nominators", &d.max_nominators, "must be at least 1");
        }
        if self.weights.max_len == 0 {
            return bad("weights.max_len", &self.weights.max_len, "must be at least 1");
        }
        if self.limits.max_tx_bytes < 256 {
            return bad("limits.max_tx_bytes", &self.limits.max_tx_bytes, "must be at least 256 bytes");
        }
        if self.limits.max_block_txs == 0 {
            return bad("limits.max_block_txs", &self.limits.max_block_txs, "must be at least 1");
        }
        let mut keys = std::collections::BTreeSet::new();
        for a in &self.accounts {
            if !keys.insert(a.key) {
                return Err(GenesisError::DuplicateKey(a.key, "accounts"));
            }
        }
        let mut hotkeys = std::collections::BTreeSet::new();
        for n in &self.neurons {
            if !hotkeys.insert(n.hotkey) {
                return Err(GenesisError::DuplicateKey(n.hotkey, "neurons"));
            }
        }
        let mut validators = std::collections::BTreeSet::new();
        for v in &self.validators {
            if !validators.insert(v.key) {
                return Err(GenesisError::DuplicateKey(v.key, "validators"));
            }
            if v.power == 0 {
                return bad("validators.power", &v.power, "must be at least 1");
            }
            if v.power != self.validators[0].power {
                return bad(
                    "validators.power",
                    &v.power,
                    "must be the same for every validator (the engine counts each validator once)",
                );
            }
        }
        self.issuance()?;
        // The mechanism validates its parameters at every epoch; run one trivial epoch now so a
        // bad parameter is refused at genesis instead of silently skipping every epoch.
        let w = SparseMatrix::zeros(1);
        let state = MechanismState::genesis(1);
        let input = EpochInput::new(&w, &[1.0], 0.0, &state);
        self.mechanism.epoch(&input).map_err(|e| GenesisError::Mechanism(e.to_string()))?;
        Ok(())
    }
}

/// A deterministic signing key derived from a name: for dev chains and tests only. Anyone who
/// knows the name has the key.
pub fn dev_key(name: &str) -> SigningKey {
    SigningKey::from_bytes(&sha256(&[b"agora/dev-key/v1/", name.as_bytes()]).0)
}

/// The public key of a signing key, in the ledger's form.
pub fn public_key(key: &SigningKey) -> PublicKey {
    PublicKey(key.verifying_key().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips_through_json() {
        let g = GenesisConfig::default();
        g.validate().unwrap();
        let back = GenesisConfig::from_json(&g.to_json_pretty()).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.hash(), g.hash());
    }

    #[test]
    fn validators_keep_old_hashes_and_must_vote_alike() {
        let g = GenesisConfig::default();
        let before = g.hash();
        assert!(!g.to_json_pretty().contains("\"validators\""), "an empty set is not written");
        let v = |seed: u8, power: u64| GenesisValidator { key: PublicKey([seed; 32]), power };
        let with = GenesisConfig { validators: vec![v(1, 1), v(2, 1)], ..g.clone() };
        with.validate().unwrap();
        assert_ne!(with.hash(), before, "the validator set is part of the chain");
        assert_eq!(GenesisConfig::from_json(&with.to_json_pretty()).unwrap(), with);
        let uneven = GenesisConfig { validators: vec![v(1, 1), v(2, 3)], ..g.clone() };
        assert!(matches!(uneven.validate(), Err(GenesisError::Invalid { field: "validators.power", .. })));
        let twice = GenesisConfig { validators: vec![v(1, 1), v(1, 1)], ..g.clone() };
        assert!(matches!(twice.validate(), Err(GenesisError::DuplicateKey(_, "validators"))));
        let zero = GenesisConfig { validators: vec![v(1, 0)], ..g };
        assert!(matches!(zero.validate(), Err(GenesisError::Invalid { field: "validators.power", .. })));
    }

    #[test]
    fn dev_chains_fund_their_named_keys() {
        let g = GenesisConfig::dev(&["alice", "bob"], 5);
        g.validate().unwrap();
        assert_eq!(g.accounts[1], GenesisAccount { key: public_key(&dev_key("bob")), balance: 5 });
        assert_eq!(g.issuance().unwrap(), 10);
    }

    #[test]
    fn partial_files_take_defaults_and_typos_are_refused() {
        let g = GenesisConfig::from_json(
            r#"{"chain_id": "t", "tempo": 3, "mechanism": {"kind": "nakamoto", "rho": 10, "kappa": 0.5, "bonds_moving_average": null}}"#,
        )
        .unwrap();
        assert_eq!(g.tempo, 3);
        assert_eq!(g.mechanism.name(), "nakamoto");
        assert!(matches!(GenesisConfig::from_json(r#"{"tempoo": 3}"#), Err(GenesisError::Parse(_))));
    }

    #[test]
    fn invalid_fields_are_named() {
        let mut g = GenesisConfig { tempo: 0, ..Default::default() };
        assert!(matches!(g.validate(), Err(GenesisError::Invalid { field: "tempo", .. })));
        g.tempo = 1;
        g.max_neurons = 70_000;
        assert!(matches!(g.validate(), Err(GenesisError::Invalid { field: "max_neurons", .. })));
        g.max_neurons = 10;
        g.accounts = vec![GenesisAccount { key: PublicKey([1; 32]), balance: u64::MAX }];
        assert!(matches!(g.validate(), Err(GenesisError::IssuanceTooLarge { .. })));
        g.accounts.clear();
        g.mechanism = Mechanism::Yuma(mechanism::yuma::YumaParams { kappa: 2.0, ..Default::default() });
        assert!(matches!(g.validate(), Err(GenesisError::Mechanism(_))));
        g.mechanism = Mechanism::from_name("yuma").unwrap();
        g.validate().unwrap();
        for (cutoff, rate_limit) in [(0, 0), (3, 4)] {
            let g = GenesisConfig {
                activity_cutoff: cutoff,
                weights: WeightsConfig { rate_limit, ..Default::default() },
                ..g.clone()
            };
            assert!(matches!(g.validate(), Err(GenesisError::Invalid { field: "activity_cutoff", .. })));
        }
        let g = GenesisConfig { max_validators: 0, ..g };
        let err = g.validate().unwrap_err();
        assert!(matches!(err, GenesisError::Invalid { field: "max_validators", .. }), "{err}");
        assert!(err.to_string().contains("max_validators = 0"), "{err}");
    }

    #[test]
    fn files_from_before_activity_and_permits_load_with_the_defaults() {
        // A genesis file written before these fields existed (and before yuma's dividend rule).
        let old = r#"{"chain_id": "old", "tempo": 10, "max_neurons": 16,
            "mechanism": {"kind": "yuma", "kappa": 0.5, "bonds_moving_average": 0.9, "server_share": 0.5}}"#;
        let g = GenesisConfig::from_json(old).unwrap();
        assert_eq!((g.activity_cutoff, g.max_validators), (5000, 128));
        assert_eq!(g.mechanism, Mechanism::from_name("yuma").unwrap());
        // And the new fields are read when given.
        let new = r#"{"activity_cutoff": 20, "max_validators": 3,
            "mechanism": {"kind": "yuma", "dividend_rule": "validator_trust"}}"#;
        let g = GenesisConfig::from_json(new).unwrap();
        assert_eq!((g.activity_cutoff, g.max_validators), (20, 3));
        let Mechanism::Yuma(p) = &g.mechanism else { panic!("{:?}", g.mechanism) };
        assert_eq!(p.dividend_rule, mechanism::yuma::DividendRule::ValidatorTrust);
        assert!(matches!(
            GenesisConfig::from_json(r#"{"activity_cutoff": -1}"#),
            Err(GenesisError::Parse(_))
        ));
    }
}
