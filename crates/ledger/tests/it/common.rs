//! A small chain harness: dev keys, a genesis with funded accounts and neurons, and helpers that
//! sign with the right nonce and produce committed blocks.

use ledger::mechanism::Mechanism;
use ledger::*;
use std::collections::HashMap;

pub const TOKEN: u64 = UNITS_PER_TOKEN;
pub const FEE: u64 = 1_000;

pub fn key(name: &str) -> SigningKey {
    dev_key(name)
}

pub fn pk(name: &str) -> PublicKey {
    public_key(&dev_key(name))
}

pub fn hot(i: usize) -> String {
    format!("hot{i}")
}

pub fn cold(i: usize) -> String {
    format!("cold{i}")
}

/// `n` neurons (hotkeys `hot{i}` owned by `cold{i}`, 100 tokens staked each), hotkeys and
/// coldkeys funded with 10 and 1,000 tokens, plus `alice` and `bob` with 1,000 tokens.
pub fn genesis(n: usize, mechanism: &str) -> GenesisConfig {
    let mut accounts = vec![
        GenesisAccount { key: pk("alice"), balance: 1_000 * TOKEN },
        GenesisAccount { key: pk("bob"), balance: 1_000 * TOKEN },
    ];
    let mut neurons = Vec::new();
    for i in 0..n {
        accounts.push(GenesisAccount { key: pk(&hot(i)), balance: 10 * TOKEN });
        accounts.push(GenesisAccount { key: pk(&cold(i)), balance: 1_000 * TOKEN });
        neurons.push(GenesisNeuron {
            hotkey: pk(&hot(i)),
            coldkey: pk(&cold(i)),
            stake: 100 * TOKEN,
            endpoint: None,
        });
    }
    GenesisConfig {
        chain_id: "agora-test".into(),
        genesis_time_ms: 1_700_000_000_000,
        accounts,
        neurons,
        mechanism: Mechanism::from_name(mechanism).expect("known mechanism"),
        emission_mode: EmissionMode::PerEpoch,
        tempo: 5,
        emission_per_block: TOKEN,
        max_issuance: 21_000_000 * TOKEN,
        max_neurons: 8,
        immunity_period: 4,
        activity_cutoff: 5000,
        max_validators: 128,
        registration: RegistrationConfig {
            difficulty: 64,
            min_difficulty: 1,
            max_difficulty: 1 << 40,
            target_per_interval: 1,
            interval: 10,
            pow_window: 8,
            burn: TOKEN,
            min_burn: TOKEN / 100,
            max_burn: 100 * TOKEN,
            max_per_block: 3,
        },
        weights: WeightsConfig { rate_limit: 2, max_change: Some(1.0), max_len: 64, commit_reveal: None },
        fees: FeeSchedule {
            transfer: FEE,
            register: 0,
            register_by: FEE,
            serve: FEE,
            add_stake: FEE,
            remove_stake: FEE,
            set_weights: FEE,
            set_take: FEE,
            burned_register: FEE,
        },
        limits: Limits { max_tx_bytes: 4096, max_block_txs: 1000 },
        adaptive_inflation: None,
        delegation: DelegationConfig {
            take_notice: 3,
            min_nomination: TOKEN / 10,
            max_nominators: 3,
            ..Default::default()
        },
        validators: Vec::new(),
        subnets: SubnetsConfig { creation_cost: 50 * TOKEN, max_subnets: 3 },
    }
}

pub struct Chain {
    pub ledger: Ledger<MemStore>,
    pub time: u64,
    /// Nonces handed out since the last block, per sender.
    used: HashMap<PublicKey, u64>,
}

impl Chain {
    pub fn new(g: GenesisConfig) -> Chain {
        let time = g.genesis_time_ms;
        Chain { ledger: Ledger::init(MemStore::new(), g).expect("genesis"), time, used: HashMap::new() }
    }

    /// The next nonce for `sender`, counting transactions built but not yet in a block.
    pub fn nonce(&mut self, sender: &PublicKey) -> u64 {
        let base = self.ledger.account(sender).nonce;
        let used = self.used.entry(*sender).or_insert(0);
        let n = base + *used;
        *used += 1;
        n
    }

    pub fn tx(&mut self, key: &SigningKey, call: Call) -> SignedTx {
        self.tx_fee(key, FEE.max(self.min_fee(&call)), call)
    }

    pub fn min_fee(&self, call: &Call) -> u64 {
        self.ledger.genesis().fees.min_fee(call.kind())
    }

    pub fn tx_fee(&mut self, key: &SigningKey, fee: u64, call: Call) -> SignedTx {
        let sender = public_key(key);
        let nonce = self.nonce(&sender);
        TxBody { sender, nonce, fee, call }.sign(key, &self.ledger.genesis().chain_id.clone())
    }

    /// Proposes and commits a block one second after the last.
    pub fn block(&mut self, txs: Vec<SignedTx>) -> BlockOutcome {
        let (_, out) = self.propose(txs);
        self.ledger.commit().expect("commit").tap(|c| assert_eq!(c.hash, out.hash))
    }

    pub fn propose(&mut self, txs: Vec<SignedTx>) -> (Block, BlockOutcome) {
        self.time += 1000;
        self.used.clear();
        self.ledger.propose(txs, self.time, pk("proposer")).expect("propose")
    }

    /// Empty blocks until the height is `h`.
    pub fn advance_to(&mut self, h: u64) {
        while self.ledger.head().height < h {
            self.block(vec![]);
        }
    }

    /// Empty blocks until the height is `h`; the outcome of the last one.
    pub fn advance_and_get(&mut self, h: u64) -> BlockOutcome {
        assert!(self.ledger.head().height < h);
        loop {
            let out = self.block(vec![]);
            if out.header.height == h {
                return out;
            }
        }
    }

    pub fn root(&self) -> Hash {
        self.ledger.head().state_root
    }

    pub fn balance(&self, name: &str) -> u64 {
        self.ledger.account(&pk(name)).balance
    }

    pub fn stake(&self, uid: u16) -> u64 {
        self.ledger.neuron(uid).expect("neuron").stake
    }

    /// Conservation: balances + stakes = genesis + minted - burned.
    pub fn assert_conserved(&self) {
        let s = self.ledger.state();
        assert_eq!(
            s.circulating(),
            self.ledger.issuance().total(),
            "conservation broken at {}",
            self.ledger.head().height
        );
    }
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&Self)) -> Self {
        f(&self);
        self
    }
}
impl<T> Tap for T {}

/// A fresh ledger executing `blocks` from genesis `g` reaches each block's state root.
pub fn check_replay(g: GenesisConfig, blocks: &[Block]) -> Result<(), proptest::test_runner::TestCaseError> {
    let mut replay = Ledger::init(MemStore::new(), g).expect("genesis");
    for b in blocks {
        let out = replay.execute_block(b).expect("a produced block executes");
        proptest::prop_assert_eq!(out.header.state_root, b.header.state_root);
        replay.commit().expect("commit");
    }
    Ok(())
}

pub fn weights(pairs: &[(u16, f64)]) -> Call {
    Call::set_weights(pairs.iter().map(|p| p.0).collect(), &pairs.iter().map(|p| p.1).collect::<Vec<_>>())
}
