//! Delegation: stake a coldkey puts on someone else's hotkey (a nominator), and the take the
//! hotkey's owner keeps of what that stake earns (issue 20; subtensor's delegates).
//!
//! Stake on a hotkey, S, is one number to the mechanism (`Neuron::stake`); the ledger keeps its
//! breakdown: each nominator's part (`Neuron::nominations`) and the owner's own part, the rest.
//! Whatever the ledger pays to a hotkey's stake (the per-epoch emission E, incentive and
//! dividends together, and lazy payouts along weight rows) is split by [`split`]:
//! `take = floor(amount * take / 65535)` to the owner, then the remainder pro rata to all stake
//! on the hotkey, the owner's own included: nominator k gets `floor(rest * n_k / S)` and the
//! owner what is left (its pro-rata part, its take and the rounding, under one unit per
//! nominator). The parts add up to the amount exactly, so issuance is untouched.
//!
//! Subtensor splits only the validator part with the take and pays the server part to the
//! owner; here the whole payment is split, since the ledger credits E as one amount and a
//! nominator backs the hotkey as a whole.
//!
//! Take changes: a decrease applies at once (it only helps nominators); an increase is announced
//! and applies `take_notice` blocks later, so a nominator always sees a raise coming for at least
//! that long and can leave first. A new announcement replaces the pending one and restarts the
//! notice. This is a notice period rather than a rate limit because a rate limit alone still lets
//! an owner raise the take in the very block a nominator's stake is paid. The take never exceeds
//! `max_take`.

use crate::types::{Neuron, Nomination, PublicKey};
use serde::{Deserialize, Serialize};

/// A take is in parts of 65,535 (subtensor's u16 form): 65,535 is 100%.
pub const TAKE_SCALE: u16 = u16::MAX;

/// The genesis rules of delegation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DelegationConfig {
    /// The take of a hotkey whose owner never set one (subtensor's default, 18%).
    pub default_take: u16,
    /// The largest take an owner may set (also 18%, subtensor's `MaxDelegateTake`).
    pub max_take: u16,
    /// Blocks between announcing a take increase and its first use.
    pub take_notice: u64,
    /// Least stake a nomination may hold (a removal leaves 0 or at least this): without it,
    /// dust nominations could fill a hotkey's `max_nominators` slots for nothing.
    pub min_nomination: u64,
    /// Most nominators one hotkey may have (they are stored in its neuron record, which every
    /// epoch rewrites).
    pub max_nominators: u32,
}

/// 18% in parts of 65,535, as subtensor stores it.
pub const DEFAULT_TAKE: u16 = 11_796;

impl Default for DelegationConfig {
    fn default() -> Self {
        DelegationConfig {
            default_take: DEFAULT_TAKE,
            max_take: DEFAULT_TAKE,
            // Ten of the default 100-block epochs.
            take_notice: 1_000,
            min_nomination: crate::UNITS_PER_TOKEN / 10,
            max_nominators: 64,
        }
    }
}

/// A take as a fraction (for display).
pub fn take_fraction(take: u16) -> f64 {
    f64::from(take) / f64::from(TAKE_SCALE)
}

/// A fraction in [0, 1] as a take, rounded to the nearest part; `None` outside [0, 1].
pub fn take_from_fraction(x: f64) -> Option<u16> {
    (x.is_finite() && (0.0..=1.0).contains(&x)).then(|| (x * f64::from(TAKE_SCALE)).round() as u16)
}

impl Neuron {
    /// Stake nominators hold on this hotkey.
    pub fn nominated(&self) -> u64 {
        self.nominations.iter().fold(0u64, |s, n| s.saturating_add(n.stake))
    }

    /// The owner's own stake: what the nominators do not hold.
    pub fn own_stake(&self) -> u64 {
        self.stake.saturating_sub(self.nominated())
    }

    /// `coldkey`'s nomination on this hotkey (0 if none).
    pub fn nomination(&self, coldkey: &PublicKey) -> u64 {
        self.nominations.iter().find(|n| n.coldkey == *coldkey).map_or(0, |n| n.stake)
    }

    /// The take in force at `height` (a pending increase counts from its `effective_at`).
    pub fn take_at(&self, height: u64) -> u16 {
        match self.pending_take {
            Some(p) if height >= p.effective_at => p.take,
            _ => self.take,
        }
    }

    /// Adds `amount` to `coldkey`'s nomination (and to the stake), keeping the list sorted.
    pub(crate) fn nominate(&mut self, coldkey: PublicKey, amount: u64) {
        self.stake = self.stake.saturating_add(amount);
        match self.nominations.binary_search_by_key(&coldkey, |n| n.coldkey) {
            Ok(k) => self.nominations[k].stake = self.nominations[k].stake.saturating_add(amount),
            Err(k) => self.nominations.insert(k, Nomination { coldkey, stake: amount }),
        }
    }

    /// Takes `amount` off `coldkey`'s nomination (and the stake), dropping it at zero. The
    /// caller checked the nomination holds it.
    pub(crate) fn unnominate(&mut self, coldkey: &PublicKey, amount: u64) {
        self.stake = self.stake.saturating_sub(amount);
        if let Ok(k) = self.nominations.binary_search_by_key(coldkey, |n| n.coldkey) {
            let left = self.nominations[k].stake.saturating_sub(amount);
            if left == 0 {
                self.nominations.remove(k);
            } else {
                self.nominations[k].stake = left;
            }
        }
    }

    /// Credits `amount` to the stake at `height`, split between owner and nominators (see the
    /// module doc).
    pub(crate) fn credit_stake(&mut self, amount: u64, height: u64) {
        let parts = split(amount, self.take_at(height), self.stake, &self.nominations);
        for (n, p) in self.nominations.iter_mut().zip(parts) {
            n.stake = n.stake.saturating_add(p);
        }
        self.stake = self.stake.saturating_add(amount);
    }
}

/// Each nominator's part of `amount` paid to a hotkey with total stake `stake` and take `take`
/// (the owner's part is `amount - sum`): see the module doc. Exact integer arithmetic.
pub fn split(amount: u64, take: u16, stake: u64, nominations: &[Nomination]) -> Vec<u64> {
    if stake == 0 {
        return vec![0; nominations.len()];
    }
    let owner_take = u128::from(amount) * u128::from(take) / u128::from(TAKE_SCALE);
    let rest = u128::from(amount) - owner_take;
    // sum(n_k) <= stake, so the parts add up to at most `rest` and each fits in a u64.
    nominations.iter().map(|n| (rest * u128::from(n.stake) / u128::from(stake)) as u64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nom(k: u8, stake: u64) -> Nomination {
        Nomination { coldkey: PublicKey([k; 32]), stake }
    }

    #[test]
    fn the_owner_takes_first_and_everyone_shares_the_rest() {
        // 100 staked: owner 50, nominators 30 and 20; take 10%: 6553/65535 of 1000 = 99.
        let parts = split(1000, 6_553, 100, &[nom(1, 30), nom(2, 20)]);
        // rest = 901: 270.3 and 180.2, floored.
        assert_eq!(parts, vec![270, 180]);
        // No take: exact pro rata. All take: nothing to nominators.
        assert_eq!(split(1000, 0, 100, &[nom(1, 30), nom(2, 20)]), vec![300, 200]);
        assert_eq!(split(1000, TAKE_SCALE, 100, &[nom(1, 30)]), vec![0]);
        assert_eq!(split(1000, 0, 0, &[]), Vec::<u64>::new());
        assert_eq!(take_from_fraction(0.18), Some(11_796));
        assert_eq!(take_from_fraction(1.5), None);
        assert_eq!(take_from_fraction(f64::NAN), None);
    }

    proptest! {
        /// Parts never exceed the amount, the owner keeps at least its take and its own
        /// pro-rata part, and each nominator is within one unit of its exact share.
        #[test]
        fn split_is_exact_and_fair(
            amount in 0u64..=u64::MAX / 2,
            take in any::<u16>(),
            own in 0u64..1_000_000_000_000,
            noms in proptest::collection::vec(1u64..1_000_000_000_000, 0..8),
        ) {
            let nominations: Vec<Nomination> = noms.iter().enumerate().map(|(k, &s)| nom(k as u8, s)).collect();
            let stake = own + noms.iter().sum::<u64>();
            let parts = split(amount, take, stake, &nominations);
            let paid: u128 = parts.iter().map(|&p| u128::from(p)).sum();
            prop_assert!(paid <= u128::from(amount));
            let owner = u128::from(amount) - paid;
            let t = u128::from(amount) * u128::from(take) / u128::from(TAKE_SCALE);
            if stake > 0 {
                let rest = u128::from(amount) - t;
                prop_assert!(owner >= t + rest * u128::from(own) / u128::from(stake));
                for (p, n) in parts.iter().zip(&noms) {
                    let exact = rest as f64 * *n as f64 / stake as f64;
                    prop_assert!((*p as f64 - exact).abs() <= 1.0 + exact * 1e-12, "{p} vs {exact}");
                }
            }
        }
    }
}
