//! The proof-of-work search of a `register` call: the one search `agora peer run`, the
//! localnet's setup and `agora tx register` all use, so its window, budget and chunking cannot
//! drift apart again.
//!
//! The seal names the head block, and the ledger accepts it only while that block is one of the
//! last `pow_window`: a search that outlives half the window starts over on the new head, so the
//! seal is still valid when the transaction lands. Past 64 times the expected work on one head
//! the search is astronomically unlucky or the difficulty moved under it: it gives up
//! ([`ChainError::PowExhausted`]) instead of spinning forever.

use crate::chain::{Chain, ChainError};
use ledger::{Call, Hash, PublicKey};
use std::time::{Duration, Instant};

/// Hashes between yields to the runtime (a few milliseconds in a release build).
const CHUNK: u64 = 10_000;
/// How often the search looks at the head (an RPC call) and reports progress.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// Expected amounts of work on one head before the search gives up.
const BUDGET_FACTOR: u64 = 64;

/// What the search tells its caller as it goes (the CLI prints it; a peer ignores it).
#[derive(Debug, Clone, PartialEq)]
pub enum PowEvent {
    /// A search over `block` began, `difficulty` hashes expected.
    Started {
        /// Expected hashes to a solution.
        difficulty: u64,
        /// The head block the proof is bound to.
        block: u64,
        /// That block's hash.
        hash: Hash,
    },
    /// `tried` hashes so far over every head, at `rate` hashes a second.
    Progress {
        /// Hashes tried so far.
        tried: u64,
        /// Hashes a second.
        rate: f64,
        /// Expected hashes to a solution.
        difficulty: u64,
    },
    /// `block` is half the window behind the head `head`: starting over.
    Stale {
        /// The block the search was bound to.
        block: u64,
        /// The chain's head now.
        head: u64,
    },
    /// Found: `nonce` after `tried` hashes in `elapsed`.
    Solved {
        /// The nonce that solves it.
        nonce: u64,
        /// Hashes tried.
        tried: u64,
        /// Time the search took.
        elapsed: Duration,
    },
}

/// Solves the proof of work of `register` for `hotkey` (owned by `coldkey`) over the chain's
/// head, calling `on_event` as it goes. `pow_window` is the genesis's `registration.pow_window`.
pub async fn solve_registration(
    chain: &impl Chain,
    hotkey: PublicKey,
    coldkey: PublicKey,
    pow_window: u64,
    mut on_event: impl FnMut(&PowEvent),
) -> Result<Call, ChainError> {
    let window = pow_window.max(1);
    let started = Instant::now();
    let mut tried = 0u64;
    loop {
        let head = chain.head().await?;
        let difficulty = chain.difficulty().await?;
        on_event(&PowEvent::Started { difficulty, block: head.height, hash: head.hash });
        let budget = difficulty.saturating_mul(BUDGET_FACTOR).max(CHUNK);
        let mut start = 0u64;
        let mut last_look = Instant::now();
        let mut stale = false;
        while start < budget && !stale {
            if let Some(nonce) = ledger::pow::solve(&head.hash, &hotkey, difficulty, start, CHUNK) {
                tried += nonce - start + 1;
                on_event(&PowEvent::Solved { nonce, tried, elapsed: started.elapsed() });
                return Ok(Call::Register { coldkey, pow_block: head.height, pow_nonce: nonce });
            }
            start += CHUNK;
            tried += CHUNK;
            tokio::task::yield_now().await;
            if last_look.elapsed() >= LOOK_EVERY {
                last_look = Instant::now();
                let rate = tried as f64 / started.elapsed().as_secs_f64().max(1e-9);
                on_event(&PowEvent::Progress { tried, rate, difficulty });
                let now = chain.head().await?.height;
                stale = now.saturating_sub(head.height) >= window / 2;
                if stale {
                    on_event(&PowEvent::Stale { block: head.height, head: now });
                }
            }
        }
        if !stale {
            return Err(ChainError::PowExhausted { tries: tried });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalChain;
    use ledger::GenesisConfig;

    #[tokio::test]
    async fn the_search_finds_a_seal_the_ledger_accepts_and_reports_it() {
        let genesis = GenesisConfig::default();
        let window = genesis.registration.pow_window;
        let chain = LocalChain::new(genesis).unwrap();
        let hotkey = ledger::public_key(&ledger::dev_key("pow-search"));
        let mut events = Vec::new();
        let call =
            solve_registration(&chain, hotkey, hotkey, window, |e| events.push(e.clone())).await.unwrap();
        let Call::Register { pow_block, pow_nonce, .. } = call else { panic!("{call:?}") };
        let head = chain.head().await.unwrap();
        assert_eq!(pow_block, head.height);
        let difficulty = chain.difficulty().await.unwrap();
        assert!(ledger::pow::meets(&ledger::pow::seal(&head.hash, &hotkey, pow_nonce), difficulty));
        assert!(matches!(events.first(), Some(PowEvent::Started { .. })), "{events:?}");
        assert!(
            matches!(events.last(), Some(PowEvent::Solved { nonce, .. }) if *nonce == pow_nonce),
            "{events:?}"
        );
    }
}
