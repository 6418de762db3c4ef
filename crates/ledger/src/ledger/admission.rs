//! Mempool admission: may a transaction wait behind its sender's pending ones?
//!
//! Only a sender's first pending transaction can be checked in full ([`Ledger::check_tx`]): the
//! state the later ones will meet depends on the earlier ones. Checking those for signature and
//! fee floor alone let an account holding two fees queue a thousand transactions that blocks then
//! recorded as rejected, for free. So a later transaction is checked against the balance its
//! predecessors would leave in the worst case: each of them may spend its fee plus what its call
//! moves out of the free balance ([`Ledger::max_spend`]). A sender's balance only falls through
//! its own transactions (everything else credits it), so a queue admitted this way can still pay
//! every fee when its block comes, whatever else the block holds.

use super::Ledger;
use crate::error::TxError;
use crate::exec::{pow_block_hash, BlockCtx};
use crate::pow;
use crate::store::Store;
use crate::tx::{Call, PreparedTx, SignedTx, TxBody};

impl<S: Store> Ledger<S> {
    /// The most `body` can take from its sender's free balance if a block applies it: the fee
    /// plus the transfer amount, the stake added, or the registration burn and stake.
    pub fn max_spend(&self, body: &TxBody) -> u64 {
        // The burn of the subnet the call names (0 for an unknown one: its check refuses it).
        let burn = self.state.subnet(body.call.netuid()).map_or(0, |n| n.net_globals.burn);
        let moved = match body.call.inner() {
            Call::Transfer { amount, .. } | Call::AddStake { amount, .. } => *amount,
            Call::RegisterBy { stake, .. } => burn.saturating_add(*stake),
            Call::BurnedRegister { .. } => burn,
            Call::CreateSubnet { .. } => self.genesis().subnets.creation_cost,
            Call::Register { .. }
            | Call::SetTake { .. }
            | Call::Serve { .. }
            | Call::PublishVersion { .. }
            | Call::RemoveStake { .. }
            | Call::SetWeights { .. }
            | Call::CommitWeights { .. }
            | Call::RevealWeights { .. }
            | Call::Subnet { .. } => 0,
        };
        body.fee.saturating_add(moved)
    }

    /// Checks `tx` for a mempool in which `pending` (the sender's transactions already waiting,
    /// in nonce order from its account nonce) will run before it. With nothing pending this is
    /// [`Ledger::check_tx`]. Otherwise `tx` must carry the nonce after the last pending one, be
    /// within the size limit, be signed by its sender, pay at least the minimum fee, carry valid
    /// work if it is a `register`, and its [`Ledger::max_spend`] must fit in what the pending
    /// transactions' worst case leaves of the balance. Reads the current state, changes nothing.
    pub fn check_admission(&self, tx: &SignedTx, pending: &[&TxBody]) -> Result<PreparedTx, TxError> {
        if pending.is_empty() {
            return self.check_tx(tx);
        }
        let body = &tx.body;
        let sender = body.sender;
        let p = tx.prepare();
        let cfg = self.genesis();
        let max = cfg.limits.max_tx_bytes as usize;
        if p.size > max {
            return Err(TxError::Oversized { size: p.size as u64, max: max as u64 });
        }
        let account = self.account(&sender);
        let expected = account.nonce.saturating_add(pending.len() as u64);
        if body.nonce < expected {
            return Err(TxError::NonceReused { sender, expected, got: body.nonce });
        }
        if body.nonce > expected {
            return Err(TxError::NonceTooHigh { sender, expected, got: body.nonce });
        }
        let kind = body.call.kind();
        let netuid = body.call.netuid();
        let net = self
            .state
            .subnet(netuid)
            .ok_or(TxError::UnknownSubnet { netuid, count: self.state.globals().subnet_count })?;
        if matches!(&body.call, Call::Subnet { call, .. } if !call.0.names_a_network()) {
            return Err(TxError::NotASubnetCall { kind });
        }
        let min = cfg.fees.min_fee(kind);
        if body.fee < min {
            return Err(TxError::FeeTooLow { kind, min, got: body.fee });
        }
        // A free transaction behind others could only be checked for its signature here, and a
        // block would then record it as failed at no cost to its sender (a queue of them is free
        // spam). As the sender's next transaction it is checked in full, rate limit included.
        // A `register` is exempt: its proof of work, checked below, is its payment.
        if body.fee == 0 && !matches!(body.call.inner(), Call::Register { .. }) {
            return Err(TxError::FreeBehindPending { sender, pending: pending.len() as u64 });
        }
        tx.verify(self.chain_id())?;
        let pending_spend = pending.iter().fold(0u64, |sum, b| sum.saturating_add(self.max_spend(b)));
        let needed = self.max_spend(body);
        if pending_spend.saturating_add(needed) > account.balance {
            return Err(TxError::PendingSpendExceedsBalance {
                sender,
                pending: pending.len() as u64,
                pending_spend,
                needed,
                balance: account.balance,
            });
        }
        if let Call::Register { pow_block, pow_nonce, .. } = body.call.inner() {
            // The work is a register's payment: without it the block would record it as
            // rejected, free of charge. Checked against the window of the next block.
            let ctx = self.next_block_ctx();
            let block_hash = pow_block_hash(&self.state, &ctx, *pow_block)?;
            let seal = pow::seal(&block_hash, &sender, *pow_nonce);
            let difficulty = net.net_globals.difficulty;
            if !pow::meets(&seal, difficulty) {
                return Err(TxError::PowTooWeak { difficulty, seal });
            }
        }
        Ok(p)
    }

    /// The context a transaction checked now would run in: the block after the pending one if
    /// a block is pending, else the block after the head.
    fn next_block_ctx(&self) -> BlockCtx {
        let (height, parent) = match &self.pending {
            Some(pd) => (pd.outcome.header.height + 1, (pd.outcome.header.height, pd.outcome.hash)),
            None => (self.head.height + 1, (self.head.height, self.head.hash)),
        };
        BlockCtx { height, registrations: 0, parent: Some(parent) }
    }
}

#[cfg(test)]
mod tests {
    use crate::genesis::{dev_key, public_key, GenesisConfig};
    use crate::store::MemStore;
    use crate::tx::{Call, SignedTx, TxBody};
    use crate::{Ledger, TxError, TxStatus};
    use proptest::prelude::*;

    const FEE: u64 = 10_000;

    fn tx(from: &str, nonce: u64, fee: u64, call: Call) -> SignedTx {
        let k = dev_key(from);
        TxBody { sender: public_key(&k), nonce, fee, call }.sign(&k, "agora-dev")
    }

    fn transfer(from: &str, nonce: u64, amount: u64) -> SignedTx {
        tx(from, nonce, FEE, Call::Transfer { to: public_key(&dev_key("sink")), amount })
    }

    /// A chain where `poor` holds `balance` and `rich` a lot.
    fn ledger(balance: u64) -> Ledger<MemStore> {
        let mut g = GenesisConfig::dev(&["rich"], 1_000_000 * FEE);
        g.accounts.push(crate::GenesisAccount { key: public_key(&dev_key("poor")), balance });
        Ledger::init(MemStore::new(), g).unwrap()
    }

    /// Admits `txs` one after the other as a mempool does; returns the admitted ones.
    fn admit(l: &Ledger<MemStore>, txs: &[SignedTx]) -> (Vec<SignedTx>, Vec<TxError>) {
        let (mut ok, mut refused) = (Vec::new(), Vec::new());
        for t in txs {
            let pending: Vec<&TxBody> = ok.iter().map(|t: &SignedTx| &t.body).collect();
            match l.check_admission(t, &pending) {
                Ok(_) => ok.push(t.clone()),
                Err(e) => refused.push(e),
            }
        }
        (ok, refused)
    }

    /// The attack of issue 13: an account holding two fees queues a thousand transactions.
    /// Only what it can pay for is admitted, and a block holding all of it rejects none.
    #[test]
    fn an_account_holding_two_fees_queues_two_transactions() {
        let mut l = ledger(2 * FEE + 2);
        let flood: Vec<SignedTx> = (0..1_000).map(|n| transfer("poor", n, 1)).collect();
        let (ok, refused) = admit(&l, &flood);
        assert_eq!(ok.len(), 2);
        assert!(matches!(
            refused[0],
            TxError::PendingSpendExceedsBalance { pending: 2, pending_spend: 20_002, needed: 10_001, .. }
        ));
        l.propose(ok, 1, public_key(&dev_key("v"))).unwrap();
        let out = l.commit().unwrap();
        assert!(out.receipts.iter().all(|r| r.status == TxStatus::Applied), "{:?}", out.receipts);
        // Negative control: what the mempool admitted before, signature and fee floor alone,
        // puts transactions in blocks that pay nothing.
        let mut l = ledger(2 * FEE + 2);
        let unchecked: Vec<SignedTx> = flood[..10].to_vec();
        l.propose(unchecked, 1, public_key(&dev_key("v"))).unwrap();
        let out = l.commit().unwrap();
        let free = out.receipts.iter().filter(|r| matches!(r.status, TxStatus::Rejected(_))).count();
        assert_eq!(free, 8);
    }

    #[test]
    fn later_transactions_get_the_checks_that_do_not_depend_on_state() {
        let l = ledger(100 * FEE);
        let first = transfer("poor", 0, 1);
        let pending = [&first.body];
        let mut bad_sig = transfer("poor", 1, 1);
        bad_sig.body.fee += 1;
        assert!(matches!(l.check_admission(&bad_sig, &pending), Err(TxError::BadSignature { .. })));
        assert!(matches!(
            l.check_admission(&transfer("poor", 2, 1), &pending),
            Err(TxError::NonceTooHigh { expected: 1, got: 2, .. })
        ));
        assert!(matches!(
            l.check_admission(&transfer("poor", 0, 1), &pending),
            Err(TxError::NonceReused { expected: 1, got: 0, .. })
        ));
        let cheap = tx("poor", 1, 1, Call::Transfer { to: public_key(&dev_key("sink")), amount: 1 });
        assert!(matches!(l.check_admission(&cheap, &pending), Err(TxError::FeeTooLow { .. })));
        // A register without work behind a pending transaction: refused, not left to a block.
        let weak = tx(
            "poor",
            1,
            FEE,
            Call::Register { coldkey: public_key(&dev_key("rich")), pow_block: 0, pow_nonce: 0 },
        );
        assert!(matches!(l.check_admission(&weak, &pending), Err(TxError::PowTooWeak { .. })));
        assert!(l.check_admission(&transfer("poor", 1, 1), &pending).is_ok());
        // Nothing pending: the ledger's full check.
        assert!(matches!(
            l.check_admission(&transfer("poor", 0, 1_000 * FEE), &[]),
            Err(TxError::InsufficientBalance { .. })
        ));
    }

    /// One of each call a sender may queue, with amounts that may or may not fit.
    fn call() -> impl Strategy<Value = Call> {
        let to = public_key(&dev_key("sink"));
        prop_oneof![
            (0u64..5 * FEE).prop_map(move |amount| Call::Transfer { to, amount }),
            (1u64..5 * FEE).prop_map(move |amount| Call::AddStake { hotkey: to, amount }),
            (0u64..5 * FEE).prop_map(move |stake| Call::RegisterBy { hotkey: to, coldkey: to, stake }),
            Just(Call::set_weights(vec![0], &[1.0])),
        ]
    }

    proptest! {
        /// Whatever a sender queues, the admitted queue's worst case fits in its balance, and a
        /// block holding the whole queue rejects none of it (each pays its fee at least).
        #[test]
        fn an_admitted_queue_always_pays_its_fees(
            balance in 0u64..20 * FEE,
            calls in proptest::collection::vec((call(), FEE..3 * FEE), 1..12),
        ) {
            let mut l = ledger(balance);
            let txs: Vec<SignedTx> = calls.into_iter().zip(0u64..).map(|((c, fee), n)| tx("poor", n, fee, c)).collect();
            // Admission stops at the first refusal (a nonce gap follows it).
            let mut ok: Vec<SignedTx> = Vec::new();
            for t in &txs {
                let pending: Vec<&TxBody> = ok.iter().map(|t| &t.body).collect();
                if l.check_admission(t, &pending).is_err() {
                    break;
                }
                ok.push(t.clone());
            }
            let worst: u64 = ok.iter().skip(1).map(|t| l.max_spend(&t.body)).sum();
            prop_assert!(ok.len() <= 1 || worst + l.max_spend(&ok[0].body) <= balance);
            let n = ok.len();
            l.propose(ok, 1, public_key(&dev_key("v"))).unwrap();
            let out = l.commit().unwrap();
            prop_assert_eq!(out.receipts.len(), n);
            for r in &out.receipts {
                prop_assert!(!matches!(r.status, TxStatus::Rejected(_)), "{:?}", r);
            }
        }
    }
}
