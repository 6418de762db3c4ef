//! The transaction rules: authentication, validation, application.
//!
//! Every transaction goes through three steps, and only the last one mutates the state:
//! 1. [`authenticate`]: size, signature, nonce, fee (and the proof of work of a `register`,
//!    which is its payment). Failing here = `Rejected` (no change).
//! 2. [`plan`]: every rule of the call, read-only, producing a [`Plan`] that already holds the
//!    expensive results (the quantised weight row, the chosen uid slot). Failing here = `Failed`
//!    (fee charged, nonce used, nothing else).
//! 3. [`apply`]: carry out the plan. It cannot fail: every amount was checked in step 2, so a
//!    transaction is applied entirely or (beyond its fee) not at all.

use crate::apportion::apportion;
use crate::block::{Receipt, TxStatus};
use crate::commit_reveal::{self, WeightsCommit};
use crate::epoch;
use crate::error::TxError;
use crate::genesis::{EmissionMode, GenesisConfig};
use crate::pow;
use crate::state::State;
use crate::state::SubnetState;
use crate::subnet::{SubnetInfo, SubnetParams};
use crate::tx::{Call, PreparedTx, SignedTx, TxBody};
use crate::types::{
    Account, Endpoint, Float, Hash, Neuron, PendingTake, PublicKey, PublishedModel, WeightRow, WEIGHT_SCALE,
};
use std::sync::Arc;

/// Context of the block being executed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockCtx {
    /// Height of the block whose transactions are being applied.
    pub height: u64,
    /// Registrations accepted so far in this block.
    pub registrations: u32,
    /// The hash of block `height - 1` when it is not yet in the state's recent hashes (checking a
    /// transaction for the next block, before that block has begun).
    pub parent: Option<(u64, Hash)>,
}

/// Where a registration puts its neuron.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Append(u16),
    Replace(u16),
}

impl Slot {
    fn uid(self) -> u16 {
        match self {
            Slot::Append(u) | Slot::Replace(u) => u,
        }
    }
}

/// A validated call, ready to apply.
#[derive(Clone, Debug)]
pub(crate) enum Plan {
    Transfer {
        to: PublicKey,
        amount: u64,
    },
    Register {
        hotkey: PublicKey,
        coldkey: PublicKey,
        slot: Slot,
        stake: u64,
        burn: u64,
    },
    Serve {
        uid: u16,
        endpoint: Endpoint,
    },
    /// `nominator`: `None` when the owner stakes, else the nominating coldkey.
    AddStake {
        uid: u16,
        amount: u64,
        nominator: Option<PublicKey>,
    },
    RemoveStake {
        uid: u16,
        amount: u64,
        nominator: Option<PublicKey>,
    },
    SetTake {
        uid: u16,
        take: u16,
    },
    SetWeights {
        uid: u16,
        row: WeightRow,
    },
    CommitWeights {
        uid: u16,
        commitment: Hash,
    },
    /// A matching reveal: the row replaces the neuron's and the commitment is spent.
    RevealWeights {
        uid: u16,
        row: WeightRow,
    },
    PublishVersion {
        uid: u16,
        version: Hash,
        step: u64,
    },
    /// Opens subnet `info.netuid` under `cfg`, burning `cost` from the sender.
    CreateSubnet {
        info: SubnetInfo,
        cfg: Arc<GenesisConfig>,
        cost: u64,
    },
}

/// The signature verdict for a transaction, computed before (in a batch, or singly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SigVerdict {
    Valid,
    BadKey,
    BadSignature,
}

pub(crate) fn authenticate(
    state: &State,
    ctx: &BlockCtx,
    body: &TxBody,
    size: usize,
    sig: SigVerdict,
) -> Result<(), TxError> {
    let cfg = state.config();
    let max = cfg.limits.max_tx_bytes as usize;
    if size > max {
        return Err(TxError::Oversized { size: size as u64, max: max as u64 });
    }
    match sig {
        SigVerdict::Valid => {}
        SigVerdict::BadKey => return Err(TxError::BadPublicKey(body.sender)),
        SigVerdict::BadSignature => {
            return Err(TxError::BadSignature { sender: body.sender, chain_id: cfg.chain_id.clone() })
        }
    }
    let acct = state.account(&body.sender);
    if body.nonce < acct.nonce {
        return Err(TxError::NonceReused { sender: body.sender, expected: acct.nonce, got: body.nonce });
    }
    if body.nonce > acct.nonce {
        return Err(TxError::NonceTooHigh { sender: body.sender, expected: acct.nonce, got: body.nonce });
    }
    let kind = body.call.kind();
    if let Call::Subnet { call, .. } = &body.call {
        if !call.0.names_a_network() {
            return Err(TxError::NotASubnetCall { kind });
        }
    }
    let min = cfg.fees.min_fee(kind);
    if body.fee < min {
        return Err(TxError::FeeTooLow { kind, min, got: body.fee });
    }
    if acct.balance < body.fee {
        return Err(TxError::CannotPayFee { sender: body.sender, fee: body.fee, balance: acct.balance });
    }
    // For `register` the proof of work is the payment (its fee is usually zero, since a new
    // hotkey has no balance): without valid work nothing may change, not even a nonce, or
    // anyone could create accounts for free.
    if let Call::Register { pow_block, pow_nonce, .. } = body.call.inner() {
        let block_hash = pow_block_hash(state, ctx, *pow_block)?;
        let seal = pow::seal(&block_hash, &body.sender, *pow_nonce);
        let difficulty = state.net_globals.difficulty;
        if !pow::meets(&seal, difficulty) {
            return Err(TxError::PowTooWeak { difficulty, seal });
        }
    }
    Ok(())
}

/// Balance left after the fee (authentication guarantees it is payable).
fn spendable(state: &State, body: &TxBody) -> u64 {
    state.account(&body.sender).balance.saturating_sub(body.fee)
}

fn need_balance(state: &State, body: &TxBody, what: &str, needed: u64) -> Result<(), TxError> {
    let available = spendable(state, body);
    if needed > available {
        return Err(TxError::InsufficientBalance { what: what.into(), needed, available });
    }
    Ok(())
}

fn registered(state: &State, hotkey: &PublicKey) -> Result<u16, TxError> {
    state.uid_of(hotkey).ok_or(TxError::NotRegistered(*hotkey))
}

fn owned(state: &State, sender: &PublicKey, hotkey: &PublicKey) -> Result<u16, TxError> {
    let uid = registered(state, hotkey)?;
    let coldkey = state.neuron(uid).map(|n| n.coldkey).ok_or(TxError::NotRegistered(*hotkey))?;
    if coldkey != *sender {
        return Err(TxError::NotOwner { sender: *sender, hotkey: *hotkey, coldkey });
    }
    Ok(uid)
}

/// Read-only validation of the call (authentication already passed).
pub(crate) fn plan(state: &State, ctx: &BlockCtx, body: &TxBody) -> Result<Plan, TxError> {
    let sender = body.sender;
    match body.call.inner() {
        Call::Transfer { to, amount } => {
            if *amount == 0 {
                return Err(TxError::ZeroAmount { what: "transfer amount".into() });
            }
            need_balance(state, body, "the transfer", *amount)?;
            Ok(Plan::Transfer { to: *to, amount: *amount })
        }
        Call::Register { coldkey, .. } => {
            // The proof of work was checked with the authentication.
            not_registered(state, &sender)?;
            registration_room(state, ctx)?;
            let slot = choose_slot(state, ctx.height, None)?;
            Ok(Plan::Register { hotkey: sender, coldkey: *coldkey, slot, stake: 0, burn: 0 })
        }
        Call::RegisterBy { hotkey, coldkey, stake } => {
            let sponsor = registered(state, &sender)?;
            not_registered(state, hotkey)?;
            registration_room(state, ctx)?;
            let burn = state.net_globals.burn;
            let cost = burn.checked_add(*stake).ok_or(TxError::Overflow("registration cost".into()))?;
            need_balance(state, body, "the registration burn and stake", cost)?;
            let slot = choose_slot(state, ctx.height, Some(sponsor))?;
            Ok(Plan::Register { hotkey: *hotkey, coldkey: *coldkey, slot, stake: *stake, burn })
        }
        Call::BurnedRegister { hotkey } => {
            not_registered(state, hotkey)?;
            registration_room(state, ctx)?;
            let burn = state.net_globals.burn;
            need_balance(state, body, "the registration burn", burn)?;
            let slot = choose_slot(state, ctx.height, None)?;
            Ok(Plan::Register { hotkey: *hotkey, coldkey: sender, slot, stake: 0, burn })
        }
        Call::Serve { endpoint } => {
            let uid = registered(state, &sender)?;
            let ip = std::net::IpAddr::from(endpoint.ip);
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(TxError::BadEndpoint(format!("{ip} is not a unicast address peers can reach")));
            }
            if endpoint.port == 0 {
                return Err(TxError::BadEndpoint("port 0".into()));
            }
            Ok(Plan::Serve { uid, endpoint: *endpoint })
        }
        Call::AddStake { hotkey, amount } => {
            let uid = registered(state, hotkey)?;
            if *amount == 0 {
                return Err(TxError::ZeroAmount { what: "stake amount".into() });
            }
            need_balance(state, body, "the stake", *amount)?;
            let neuron = state.neuron(uid).ok_or(TxError::NotRegistered(*hotkey))?;
            if neuron.coldkey == sender {
                return Ok(Plan::AddStake { uid, amount: *amount, nominator: None });
            }
            // Anyone else nominates (delegation.rs).
            let d = &state.config().delegation;
            let held = neuron.nomination(&sender);
            if held == 0 && neuron.nominations.len() >= d.max_nominators as usize {
                return Err(TxError::TooManyNominators { hotkey: *hotkey, max: u64::from(d.max_nominators) });
            }
            let after = held.saturating_add(*amount);
            if after < d.min_nomination {
                return Err(TxError::NominationTooSmall {
                    hotkey: *hotkey,
                    stake: after,
                    min: d.min_nomination,
                });
            }
            Ok(Plan::AddStake { uid, amount: *amount, nominator: Some(sender) })
        }
        Call::RemoveStake { hotkey, amount } => {
            let uid = registered(state, hotkey)?;
            if *amount == 0 {
                return Err(TxError::ZeroAmount { what: "unstake amount".into() });
            }
            let neuron = state.neuron(uid).ok_or(TxError::NotRegistered(*hotkey))?;
            if neuron.coldkey == sender {
                // The owner removes its own stake only, never its nominators'.
                let available = neuron.own_stake();
                if *amount > available {
                    return Err(TxError::InsufficientStake { hotkey: *hotkey, needed: *amount, available });
                }
                return Ok(Plan::RemoveStake { uid, amount: *amount, nominator: None });
            }
            let available = neuron.nomination(&sender);
            if *amount > available {
                return Err(TxError::InsufficientNomination {
                    hotkey: *hotkey,
                    coldkey: sender,
                    needed: *amount,
                    available,
                });
            }
            let left = available - *amount;
            let min = state.config().delegation.min_nomination;
            if left > 0 && left < min {
                return Err(TxError::NominationTooSmall { hotkey: *hotkey, stake: left, min });
            }
            Ok(Plan::RemoveStake { uid, amount: *amount, nominator: Some(sender) })
        }
        Call::SetTake { hotkey, take } => {
            let uid = owned(state, &sender, hotkey)?;
            let max = state.config().delegation.max_take;
            if *take > max {
                return Err(TxError::TakeOutOfBounds { take: *take, max });
            }
            Ok(Plan::SetTake { uid, take: *take })
        }
        Call::PublishVersion { version, step } => {
            let uid = registered(state, &sender)?;
            if *version == Hash::ZERO {
                return Err(TxError::UnversionedModel);
            }
            // The same model again says nothing new: refused, so a peer's retries cost it a fee
            // and the chain no record.
            if let Some(m) = state.neuron(uid).and_then(|n| n.model).filter(|m| m.version == *version) {
                return Err(TxError::ModelVersionUnchanged {
                    version: m.version,
                    step: m.step,
                    published_at: m.published_at,
                });
            }
            Ok(Plan::PublishVersion { uid, version: *version, step: *step })
        }
        Call::SetWeights { uids, values } => {
            let uid = registered(state, &sender)?;
            let neuron = state.neuron(uid).ok_or(TxError::NotRegistered(sender))?;
            if state.config().weights.commit_reveal.is_some() {
                return Err(TxError::CommitRevealRequired);
            }
            rate_limit(state, ctx, neuron)?;
            let row = validate_weights(state, neuron, uids, values)?;
            Ok(Plan::SetWeights { uid, row })
        }
        Call::CommitWeights { commitment } => {
            let uid = registered(state, &sender)?;
            let neuron = state.neuron(uid).ok_or(TxError::NotRegistered(sender))?;
            let cfg = &state.config().weights;
            commit_reveal::enabled(&cfg.commit_reveal)?;
            commit_reveal::check_commit(cfg.rate_limit, neuron, ctx.height)?;
            Ok(Plan::CommitWeights { uid, commitment: *commitment })
        }
        Call::RevealWeights { uids, values, salt } => {
            let uid = registered(state, &sender)?;
            let neuron = state.neuron(uid).ok_or(TxError::NotRegistered(sender))?;
            let cr = commit_reveal::enabled(&state.config().weights.commit_reveal)?;
            // The commitment was rate-limited; its reveal is bound to it, so it is not.
            commit_reveal::check_reveal(cr, neuron, ctx.height, uids, values, salt)?;
            let row = validate_weights(state, neuron, uids, values)?;
            Ok(Plan::RevealWeights { uid, row })
        }
        Call::CreateSubnet { params } => plan_subnet(state, ctx, body, params),
        // `inner` unwraps one level and decoding refuses a second.
        Call::Subnet { .. } => Err(TxError::NotASubnetCall { kind: body.call.kind() }),
    }
}

/// The checks of a `create_subnet`: per-epoch emission, room for another subnet, parameters
/// the genesis rules accept, the cost payable after the fee.
fn plan_subnet(state: &State, ctx: &BlockCtx, body: &TxBody, params: &SubnetParams) -> Result<Plan, TxError> {
    let chain = state.chain_config();
    if chain.emission_mode != EmissionMode::PerEpoch {
        return Err(TxError::SubnetsNeedPerEpochEmission);
    }
    let count = state.globals.subnet_count;
    if count >= chain.subnets.max_subnets {
        return Err(TxError::SubnetLimit { max: chain.subnets.max_subnets });
    }
    let cfg = params.config(chain).map_err(TxError::BadSubnetParams)?;
    let cost = chain.subnets.creation_cost;
    let available = spendable(state, body);
    if cost > available {
        return Err(TxError::SubnetCostNotCovered { cost, available });
    }
    let info =
        SubnetInfo { netuid: count + 1, owner: body.sender, created_at: ctx.height, params: params.clone() };
    Ok(Plan::CreateSubnet { info, cfg: Arc::new(cfg), cost })
}

fn not_registered(state: &State, hotkey: &PublicKey) -> Result<(), TxError> {
    match state.uid_of(hotkey) {
        Some(uid) => Err(TxError::AlreadyRegistered { hotkey: *hotkey, uid }),
        None => Ok(()),
    }
}

/// The hash of block `block` if a proof of work in block `ctx.height` may name it: one of the
/// `pow_window` blocks before it.
pub(crate) fn pow_block_hash(state: &State, ctx: &BlockCtx, block: u64) -> Result<Hash, TxError> {
    let newest = ctx.height.saturating_sub(1);
    let oldest = ctx.height.saturating_sub(state.config().registration.pow_window);
    let found = if (oldest..=newest).contains(&block) && ctx.height > 0 {
        match ctx.parent {
            Some((h, hash)) if h == block => Some(hash),
            _ => state.globals.recent_hash(block),
        }
    } else {
        None
    };
    found.ok_or(TxError::PowBlockOutOfWindow { block, oldest, newest })
}

fn registration_room(state: &State, ctx: &BlockCtx) -> Result<(), TxError> {
    let limit = state.config().registration.max_per_block;
    if ctx.registrations >= limit {
        return Err(TxError::RegistrationLimit { limit: u64::from(limit) });
    }
    Ok(())
}

/// Where a new neuron goes: the next uid while the table has room; otherwise the slot of the
/// lowest-scoring neuron past its immunity period. Score = emission at the last epoch; ties go to
/// the earlier registration, then the lower uid. `exclude` keeps a sponsor from replacing itself.
pub(crate) fn choose_slot(state: &State, height: u64, exclude: Option<u16>) -> Result<Slot, TxError> {
    let cfg = state.config();
    let n = state.n();
    if n < cfg.max_neurons as usize {
        return Ok(Slot::Append(n as u16));
    }
    state
        .neurons
        .iter()
        .filter(|x| Some(x.uid) != exclude)
        .filter(|x| height.saturating_sub(x.registered_at) >= cfg.immunity_period)
        .min_by_key(|x| (x.scores.emission, x.registered_at, x.uid))
        .map(|x| Slot::Replace(x.uid))
        .ok_or(TxError::TableFullAllImmune {
            max_neurons: u64::from(cfg.max_neurons),
            immunity_period: cfg.immunity_period,
        })
}

/// Tolerance on the sum of a submitted weight row.
pub const WEIGHT_SUM_TOLERANCE: f64 = 1e-6;

/// The per-neuron weights rate limit: `weights.rate_limit` blocks after its last row.
fn rate_limit(state: &State, ctx: &BlockCtx, neuron: &Neuron) -> Result<(), TxError> {
    if let Some(last) = neuron.last_weights_block {
        let next_allowed = last.saturating_add(state.config().weights.rate_limit);
        if ctx.height < next_allowed {
            return Err(TxError::WeightsRateLimited { last, next_allowed });
        }
    }
    Ok(())
}

/// The checks of a weight row short of its sum: one value per uid, at least one entry and at
/// most `max_len`, every uid below `n`, every value finite and >= 0, no uid twice (in that
/// order). Returns the row's positions in uid order, packed as `uid << 32 | position` (sorting
/// plain u64s is several times faster than sorting pairs by key), which the ledger quantises the
/// row in. A client runs the same checks before it signs (`agora tx weights`), so it refuses
/// what the ledger would, in the ledger's words.
pub fn check_weight_row(
    uids: &[u16],
    values: &[Float],
    max_len: usize,
    n: usize,
) -> Result<Vec<u64>, TxError> {
    if uids.len() != values.len() {
        return Err(TxError::WeightLengthMismatch { uids: uids.len() as u64, values: values.len() as u64 });
    }
    if uids.is_empty() {
        return Err(TxError::EmptyWeights);
    }
    if uids.len() > max_len {
        return Err(TxError::TooManyWeights { len: uids.len() as u64, max: max_len as u64 });
    }
    for (&u, &v) in uids.iter().zip(values) {
        if usize::from(u) >= n {
            return Err(TxError::UnknownUid { uid: u, n: n as u64 });
        }
        if !v.0.is_finite() || v.0 < 0.0 {
            return Err(TxError::BadWeight { uid: u, value: v });
        }
    }
    let mut order: Vec<u64> =
        uids.iter().enumerate().map(|(k, &u)| (u64::from(u) << 32) | k as u64).collect();
    order.sort_unstable();
    if let Some(w) = order.windows(2).find(|w| w[0] >> 32 == w[1] >> 32) {
        return Err(TxError::DuplicateUid { uid: (w[0] >> 32) as u16 });
    }
    Ok(order)
}

/// Checks a weight row (of a `set_weights` or a reveal) and quantises it into the stored row.
fn validate_weights(
    state: &State,
    neuron: &Neuron,
    uids: &[u16],
    values: &[Float],
) -> Result<WeightRow, TxError> {
    let cfg = &state.config().weights;
    let order = check_weight_row(uids, values, cfg.max_len as usize, state.n())?;
    let sum: f64 = values.iter().map(|v| v.0).sum();
    if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
        return Err(TxError::NotNormalized { sum: Float(sum) });
    }
    let shares: Vec<f64> = order.iter().map(|&o| values[(o & 0xffff_ffff) as usize].0).collect();
    // sum is within 1e-6 of 1, so some share is positive and apportion returns Some.
    let units =
        apportion(u64::from(WEIGHT_SCALE), &shares).ok_or(TxError::NotNormalized { sum: Float(sum) })?;
    let mut entries = Vec::with_capacity(order.len());
    for (&o, q) in order.iter().zip(units) {
        // Parts of 65,535 split by shares summing to ~1 are at most 65,535: they fit in u16.
        if q > 0 {
            entries.push(((o >> 32) as u16, q as u16));
        }
    }
    let row = WeightRow(entries);
    if let Some(eps) = cfg.max_change {
        let old = state.rows.get(usize::from(neuron.uid));
        if let Some(old) = old.filter(|r| !r.is_empty()) {
            let d2 = old.distance_sq(&row) as f64;
            let scale = f64::from(WEIGHT_SCALE);
            let max = eps * scale;
            if d2 > max * max {
                return Err(TxError::WeightChangeTooLarge {
                    distance: Float(d2.sqrt() / scale),
                    max: Float(eps),
                });
            }
        }
    }
    Ok(row)
}

/// Carries out a validated plan. Infallible by construction; arithmetic saturates only in cases
/// validation excluded, so it never panics.
pub(crate) fn apply(state: &mut State, ctx: &mut BlockCtx, sender: PublicKey, plan: Plan) {
    match plan {
        Plan::Transfer { to, amount } => {
            debit(state, sender, amount);
            credit(state, to, amount);
        }
        Plan::Register { hotkey, coldkey, slot, stake, burn } => {
            debit(state, sender, burn.saturating_add(stake));
            burn_amount(state, burn);
            let take = state.config().delegation.default_take;
            let neuron = Neuron::new(slot.uid(), hotkey, coldkey, stake, ctx.height, take);
            match slot {
                Slot::Append(_) => state.push_neuron(neuron),
                Slot::Replace(uid) => {
                    // The replaced neuron's stake goes back to its owner and its nominators;
                    // its unpaid lazy emission was never minted and lapses.
                    if let Some(old) = state.neuron(uid).cloned() {
                        for n in &old.nominations {
                            credit(state, n.coldkey, n.stake);
                        }
                        credit(state, old.coldkey, old.own_stake());
                    }
                    state.net_globals.replaced_since_epoch.insert(uid);
                    state.replace_neuron(neuron);
                }
            }
            state.net_globals.registrations_this_interval += 1;
            ctx.registrations += 1;
        }
        Plan::Serve { uid, endpoint } => {
            if let Some(n) = state.neuron_mut(uid) {
                n.endpoint = Some(endpoint);
            }
        }
        Plan::PublishVersion { uid, version, step } => {
            let published_at = ctx.height;
            if let Some(n) = state.neuron_mut(uid) {
                n.model = Some(PublishedModel { version, step, published_at });
            }
        }
        Plan::AddStake { uid, amount, nominator } => {
            debit(state, sender, amount);
            if let Some(n) = state.neuron_mut(uid) {
                match nominator {
                    None => n.stake = n.stake.saturating_add(amount),
                    Some(c) => n.nominate(c, amount),
                }
            }
        }
        Plan::RemoveStake { uid, amount, nominator } => {
            if let Some(n) = state.neuron_mut(uid) {
                match nominator {
                    None => n.stake = n.stake.saturating_sub(amount),
                    Some(c) => n.unnominate(&c, amount),
                }
            }
            credit(state, sender, amount);
        }
        Plan::SetTake { uid, take } => {
            let notice = state.config().delegation.take_notice;
            let h = ctx.height;
            if let Some(n) = state.neuron_mut(uid) {
                // The take in force now; a pending increase that matured becomes the take.
                let current = n.take_at(h);
                n.take = current;
                n.pending_take = None;
                if take <= current || notice == 0 {
                    n.take = take;
                } else {
                    n.pending_take = Some(PendingTake { take, effective_at: h.saturating_add(notice) });
                }
            }
        }
        Plan::SetWeights { uid, row } => {
            state.set_row(uid, row);
            if let Some(n) = state.neuron_mut(uid) {
                n.last_weights_block = Some(ctx.height);
            }
        }
        Plan::CommitWeights { uid, commitment } => {
            if let Some(n) = state.neuron_mut(uid) {
                n.weights_commit = Some(WeightsCommit { commitment, block: ctx.height });
            }
        }
        Plan::RevealWeights { uid, row } => {
            state.set_row(uid, row);
            if let Some(n) = state.neuron_mut(uid) {
                n.last_weights_block = Some(ctx.height);
                n.weights_commit = None;
            }
        }
        Plan::CreateSubnet { info, cfg, cost } => {
            debit(state, sender, cost);
            burn_amount(state, cost);
            state.add_subnet(SubnetState::created(cfg, info));
        }
    }
}

fn debit(state: &mut State, who: PublicKey, amount: u64) {
    if amount == 0 {
        return;
    }
    let mut a = state.account(&who);
    a.balance = a.balance.saturating_sub(amount);
    state.set_account(who, a);
}

/// Adds to a balance. Cannot overflow: all balances and stakes together are the total issuance,
/// which never exceeds `max_issuance <= u64::MAX`.
pub(crate) fn credit(state: &mut State, who: PublicKey, amount: u64) {
    if amount == 0 {
        return;
    }
    let mut a = state.account(&who);
    a.balance = a.balance.saturating_add(amount);
    state.set_account(who, a);
}

fn burn_amount(state: &mut State, amount: u64) {
    state.globals.issuance.burned += u128::from(amount);
}

/// Authenticates, validates and applies one transaction whose signature verdict is known.
pub(crate) fn execute_tx(
    state: &mut State,
    ctx: &mut BlockCtx,
    tx: &SignedTx,
    prepared: &PreparedTx,
    sig: SigVerdict,
) -> Receipt {
    let netuid = tx.body.call.netuid();
    if !state.select(netuid) {
        let e = TxError::UnknownSubnet { netuid, count: state.globals.subnet_count };
        return Receipt { tx_id: prepared.id, status: TxStatus::Rejected(e), fee_paid: 0, emission_paid: 0 };
    }
    let receipt = execute_selected(state, ctx, tx, prepared, sig);
    state.select(crate::subnet::ROOT_NETUID);
    receipt
}

/// [`execute_tx`] once the transaction's subnet is selected.
fn execute_selected(
    state: &mut State,
    ctx: &mut BlockCtx,
    tx: &SignedTx,
    prepared: &PreparedTx,
    sig: SigVerdict,
) -> Receipt {
    let body = &tx.body;
    let rejected =
        |e| Receipt { tx_id: prepared.id, status: TxStatus::Rejected(e), fee_paid: 0, emission_paid: 0 };
    if let Err(e) = authenticate(state, ctx, body, prepared.size, sig) {
        return rejected(e);
    }
    let planned = plan(state, ctx, body);
    // Authentication passed: the fee is due and the nonce is used, whatever the call does.
    let mut acct: Account = state.account(&body.sender);
    acct.balance = acct.balance.saturating_sub(body.fee);
    acct.nonce = acct.nonce.saturating_add(1);
    state.set_account(body.sender, acct);
    burn_amount(state, body.fee);
    match planned {
        Err(e) => {
            Receipt { tx_id: prepared.id, status: TxStatus::Failed(e), fee_paid: body.fee, emission_paid: 0 }
        }
        Ok(p) => {
            // Lazy emission: a registered hotkey that transacts is paid what it accrued, along
            // the weights that were in force while it accrued (before this call changes them).
            let mut emission_paid = 0;
            if state.config().emission_mode == EmissionMode::Lazy {
                if let Some(uid) = state.uid_of(&body.sender) {
                    emission_paid = epoch::settle(state, uid, ctx.height);
                }
            }
            apply(state, ctx, body.sender, p);
            Receipt { tx_id: prepared.id, status: TxStatus::Applied, fee_paid: body.fee, emission_paid }
        }
    }
}
