//! Concrete networks for the experiments: disjoint groups of peers (an honest graph, a cabal)
//! with their weights W and stake S, and the loop that runs a mechanism epoch after epoch.

use crate::error::SimError;
use mechanism::{EpochInput, EpochOutput, Mechanism, MechanismState, SparseMatrix};
use rand::Rng;
use std::ops::Range;

/// How the peers of one group weight each other. Groups never weight outside themselves:
/// that is what makes a cabal "disjoint" (Figure 4 of the market paper).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wiring {
    /// Every member weights every member (itself included) equally: the paper's worst-case
    /// cabal, "weights set equally between each member" (000 §10).
    Full,
    /// Each member weights a random `density` share of the group with uniform random values,
    /// like `random_weight_matrix(n, density)` of appendix 12.7.
    Random {
        /// Share of the group each member weights, in (0, 1].
        density: f64,
    },
}

/// How a group's stake is spread over its members.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StakeSplit {
    /// Every member holds the same stake.
    Equal,
    /// Uniform random draws scaled to the group total (`random_stake_vector` of 12.7).
    Random,
}

/// One group to build: `size` peers holding `stake` in total.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    /// The group's name in reports ("honest", "cabal").
    pub name: String,
    /// Its peers.
    pub size: usize,
    /// Its total stake S.
    pub stake: f64,
    /// How its members weight each other.
    pub wiring: Wiring,
    /// How its stake is spread over its members.
    pub split: StakeSplit,
}

impl GroupSpec {
    /// A group of `size` peers named `name` holding `stake`.
    pub fn new(name: &str, size: usize, stake: f64, wiring: Wiring, split: StakeSplit) -> Self {
        GroupSpec { name: name.to_string(), size, stake, wiring, split }
    }
}

/// A group inside a built network: its peers are the indices `peers`.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// Its peers' indices in the network.
    pub peers: Range<usize>,
}

/// Weights, stake and the groups they were built from.
#[derive(Debug, Clone)]
pub struct Network {
    /// The weight matrix W: row i is what peer i sets on the others.
    pub weights: SparseMatrix,
    /// Each peer's stake S.
    pub stake: Vec<f64>,
    /// The groups, in the order their peers are numbered.
    pub groups: Vec<Group>,
}

impl Network {
    /// Builds disjoint groups side by side: group k's weight block sits on the diagonal of W
    /// and is zero everywhere else. `rng` is only drawn from for random wiring or stake.
    pub fn build(specs: &[GroupSpec], rng: &mut impl Rng) -> Result<Network, SimError> {
        let n: usize = specs.iter().map(|g| g.size).sum();
        let mut rows: Vec<Vec<(usize, f64)>> = Vec::with_capacity(n);
        let mut stake = Vec::with_capacity(n);
        let mut groups = Vec::with_capacity(specs.len());
        for spec in specs {
            if spec.size == 0 {
                return Err(SimError::bad("group size", format!("0 ({})", spec.name), "at least 1 peer"));
            }
            let start = stake.len();
            let peers = start..start + spec.size;
            for _ in peers.clone() {
                rows.push(match spec.wiring {
                    Wiring::Full => peers.clone().map(|j| (j, 1.0 / spec.size as f64)).collect(),
                    Wiring::Random { density } => random_row(peers.clone(), density, rng),
                });
            }
            let raw: Vec<f64> = match spec.split {
                StakeSplit::Equal => vec![1.0; spec.size],
                // 1 - u lies in (0, 1]: no member starts with exactly zero stake.
                StakeSplit::Random => (0..spec.size).map(|_| 1.0 - rng.gen::<f64>()).collect(),
            };
            let sum: f64 = raw.iter().sum();
            stake.extend(raw.iter().map(|x| spec.stake * x / sum));
            groups.push(Group { name: spec.name.clone(), peers });
        }
        let weights = SparseMatrix::from_rows(n, rows).map_err(SimError::Weights)?;
        Ok(Network { weights, stake, groups })
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Sum of S over the group.
    pub fn group_stake(&self, group: &Group) -> f64 {
        self.stake[group.peers.clone()].iter().sum()
    }

    /// The group's share of total stake.
    pub fn share(&self, group: &Group) -> f64 {
        self.group_stake(group) / self.total_stake()
    }

    /// Sum of every peer's stake.
    pub fn total_stake(&self) -> f64 {
        self.stake.iter().sum()
    }
}

/// One row of `random_weight_matrix` (appendix 12.7): `round(density * n)` distinct members
/// (at least one) get a uniform value in (0, 1]; the mechanism normalises the row.
fn random_row(peers: Range<usize>, density: f64, rng: &mut impl Rng) -> Vec<(usize, f64)> {
    let n = peers.len();
    let k = ((density * n as f64).round() as usize).clamp(1, n);
    rand::seq::index::sample(rng, n, k)
        .into_iter()
        .map(|j| (peers.start + j, 1.0 - rng.gen::<f64>()))
        .collect()
}

/// Runs epochs of one mechanism over a network, adding each epoch's emission to S and
/// carrying the mechanism's state (bonds, stake scaling) forward, as a ledger would.
pub struct Run {
    /// The mechanism variant run each epoch.
    pub mechanism: Mechanism,
    /// The network, whose stake grows by each epoch's emission.
    pub network: Network,
    /// What the mechanism carries between epochs (bonds, stake scaling).
    pub state: MechanismState,
    /// Epochs run so far.
    pub epoch: usize,
}

impl Run {
    /// A run at genesis: no epoch yet, the mechanism's initial state.
    pub fn new(mechanism: Mechanism, network: Network) -> Self {
        let state = MechanismState::genesis(network.stake.len());
        Run { mechanism, network, state, epoch: 0 }
    }

    /// One epoch minting `emission`: S += E, state <- output.state.
    pub fn step(&mut self, emission: f64) -> Result<EpochOutput, SimError> {
        let input = EpochInput::new(&self.network.weights, &self.network.stake, emission, &self.state);
        let out = self.mechanism.epoch(&input).map_err(|reason| SimError::Mechanism {
            mechanism: self.mechanism.name(),
            epoch: self.epoch,
            reason,
        })?;
        for (s, e) in self.network.stake.iter_mut().zip(&out.emission) {
            *s += e;
        }
        self.state = out.state.clone();
        self.epoch += 1;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn groups_are_disjoint_blocks_with_their_stake() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let specs = [
            GroupSpec::new("honest", 4, 0.51, Wiring::Random { density: 0.9 }, StakeSplit::Random),
            GroupSpec::new("cabal", 3, 0.49, Wiring::Full, StakeSplit::Equal),
        ];
        let net = Network::build(&specs, &mut rng).unwrap();
        assert_eq!(net.stake.len(), 7);
        for (i, j, _) in net.weights.iter() {
            assert_eq!(i < 4, j < 4, "edge {i}->{j} crosses groups");
        }
        // round(0.9 * 4) = 4 entries per honest row; the cabal is complete.
        assert_eq!(net.weights.nnz(), 4 * 4 + 3 * 3);
        let honest = net.group("honest").unwrap();
        assert!((net.share(honest) - 0.51).abs() < 1e-12);
        assert_eq!(net.stake[4..], [0.49 / 3.0; 3]);
    }
}
