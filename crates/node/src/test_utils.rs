//! Fixtures shared by the tests of the node and of the crates that drive one (the `cli`
//! integration tests, the fuzz harness): behind the `test-utils` feature.

use ledger::{dev_key, public_key, GenesisConfig, GenesisNeuron, UNITS_PER_TOKEN};
use std::path::PathBuf;

/// A fresh, empty directory under the system temp dir, unique to this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agora-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// A chain with alice and three neurons n0, n1, n2 (each funded with 1,000 tokens, owned by
/// alice, 100 tokens staked) and an epoch every `tempo` blocks.
pub fn neuron_genesis(chain_id: &str, tempo: u64) -> GenesisConfig {
    let mut g = GenesisConfig::dev(&["alice", "n0", "n1", "n2"], 1_000 * UNITS_PER_TOKEN);
    g.chain_id = chain_id.into();
    g.tempo = tempo;
    g.neurons = ["n0", "n1", "n2"]
        .iter()
        .map(|n| GenesisNeuron {
            hotkey: public_key(&dev_key(n)),
            coldkey: public_key(&dev_key("alice")),
            stake: 100 * UNITS_PER_TOKEN,
            endpoint: None,
        })
        .collect();
    g
}
