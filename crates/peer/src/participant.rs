//! A hotkey's transactions on the chain.

use crate::chain::{Chain, ChainError};
use crate::metagraph::MetagraphView;
use client::{AccountInfo, MetagraphInfo};
use ledger::{
    Call, CallKind, ChainHead, Endpoint, GenesisConfig, Hash, PublicKey, Receipt, SignedTx, SigningKey,
    TxBody, TxStatus,
};
use std::sync::Arc;

/// `call` signed by `key` at the sender's next nonce (read from the chain) with the chain's
/// minimum fee for its kind.
pub async fn sign(
    chain: &impl Chain,
    genesis: &GenesisConfig,
    key: &SigningKey,
    call: Call,
) -> Result<SignedTx, ChainError> {
    let sender = ledger::public_key(key);
    let nonce = chain.account(&sender).await?.nonce;
    let fee = genesis.fees.min_fee(call.kind());
    Ok(TxBody { sender, nonce, fee, call }.sign(key, &genesis.chain_id))
}

/// Waits for `id` and turns a receipt that is not `Applied` into [`ChainError::NotApplied`].
pub async fn applied(chain: &impl Chain, kind: CallKind, id: Hash) -> Result<u64, ChainError> {
    let (height, receipt) = chain.wait_for(id).await?;
    match receipt.status {
        TxStatus::Applied => Ok(height),
        TxStatus::Failed(reason) | TxStatus::Rejected(reason) => {
            Err(ChainError::NotApplied { kind, height, reason })
        }
    }
}

/// Signs `call` with `key` (see [`sign`]), submits it and waits for its block. `Ok(height)`
/// only if the call was applied.
///
/// One transaction at a time per key: the nonce is read from the chain, so two concurrent calls
/// with the same key would collide (the second is refused with the ledger's nonce error).
pub async fn transact(
    chain: &impl Chain,
    genesis: &GenesisConfig,
    key: &SigningKey,
    call: Call,
) -> Result<u64, ChainError> {
    let kind = call.kind();
    let tx = sign(chain, genesis, key, call).await?;
    let id = chain.submit(&tx).await?;
    applied(chain, kind, id).await
}

/// What to do when the chain's rate limit forbids a `set_weights` in the next block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimitPolicy {
    /// Return [`WeightsOutcome::RateLimited`] without submitting.
    Skip,
    /// Wait for the first block where it is allowed, then submit.
    Wait,
}

/// What [`Participant::set_weights`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsOutcome {
    /// Applied in block `height`.
    Applied {
        /// The block that included the weights.
        height: u64,
    },
    /// Not submitted: the earliest block that accepts it is `next_allowed`.
    RateLimited {
        /// The first block at which the chain's rate limit lets it set weights again.
        next_allowed: u64,
    },
}

/// One neuron's hotkey on one chain: registers, serves, sets weights, reads its balance.
/// The coldkey is only named (as the owner a registration records); it never signs here.
pub struct Participant<C: Chain> {
    chain: C,
    hotkey: SigningKey,
    coldkey: PublicKey,
    /// The rules its calls follow: the chain's genesis, or a subnet's configuration.
    genesis: GenesisConfig,
    /// The subnet its calls go to (0: the genesis network).
    netuid: u16,
}

impl<C: Chain> Participant<C> {
    /// Reads the chain's genesis (its fees and weight rules) once.
    pub async fn new(chain: C, hotkey: SigningKey, coldkey: PublicKey) -> Result<Self, ChainError> {
        let genesis = chain.genesis().await?;
        Ok(Participant { chain, hotkey, coldkey, genesis, netuid: ledger::ROOT_NETUID })
    }

    /// This participant on subnet `netuid`, whose parameters are `params` (as `agora_subnet`
    /// gives them): its calls go to that subnet and follow its rules (weights rate limit,
    /// commit-reveal), as the ledger derives them from the genesis. The chain link must read
    /// that subnet's metagraph and difficulty too ([`crate::RpcChain::netuid`]).
    pub fn on_subnet(mut self, netuid: u16, params: &ledger::SubnetParams) -> Result<Self, ChainError> {
        if netuid != ledger::ROOT_NETUID {
            self.genesis =
                params.config(&self.genesis).map_err(|reason| ChainError::BadSubnet { netuid, reason })?;
        }
        self.netuid = netuid;
        Ok(self)
    }

    /// The subnet its calls go to.
    pub fn netuid(&self) -> u16 {
        self.netuid
    }

    /// The chain it speaks to.
    pub fn chain(&self) -> &C {
        &self.chain
    }

    /// The chain's genesis (fees and weight rules), as read at construction.
    pub fn genesis(&self) -> &GenesisConfig {
        &self.genesis
    }

    /// Its hotkey's public key: its identity on the metagraph.
    pub fn hotkey(&self) -> PublicKey {
        ledger::public_key(&self.hotkey)
    }

    /// The hotkey that signs this participant's transactions.
    pub fn signing_key(&self) -> &SigningKey {
        &self.hotkey
    }

    /// The coldkey that owns its hotkey.
    pub fn coldkey(&self) -> PublicKey {
        self.coldkey
    }

    /// The metagraph at the head.
    pub async fn sync(&self) -> Result<MetagraphView, ChainError> {
        MetagraphView::sync(&self.chain).await
    }

    /// This hotkey's uid, `None` if it is not registered.
    pub async fn uid(&self) -> Result<Option<u16>, ChainError> {
        Ok(self.sync().await?.uid_of(&self.hotkey()))
    }

    /// The hotkey's free balance in base units (it pays the fees of serve and set_weights).
    pub async fn balance(&self) -> Result<u64, ChainError> {
        Ok(self.chain.account(&self.hotkey()).await?.balance)
    }

    /// Signs and submits `call` with the hotkey (see [`transact`]), on its subnet.
    pub async fn transact(&self, call: Call) -> Result<u64, ChainError> {
        transact(&self.chain, &self.genesis, &self.hotkey, call.on_subnet(self.netuid)).await
    }

    /// Registers the hotkey (owned by the coldkey) by proof of work, or returns its uid if it
    /// is registered already.
    pub async fn register(&self) -> Result<u16, ChainError> {
        let me = self.hotkey();
        let Some(call) = self.registration().await? else {
            return self.uid().await?.ok_or(ChainError::NotRegistered(me));
        };
        match self.transact(call).await {
            Ok(_) => {}
            // Registered meanwhile by someone else's sponsorship (register_by): that is the goal.
            Err(ChainError::NotApplied {
                reason: ledger::TxError::AlreadyRegistered { uid, .. }, ..
            })
            | Err(ChainError::Rejected(ledger::TxError::AlreadyRegistered { uid, .. })) => return Ok(uid),
            Err(e) => return Err(e),
        }
        self.uid().await?.ok_or(ChainError::NotRegistered(me))
    }

    /// The `register` call with a solved proof of work, or `None` if the hotkey is registered.
    /// The seal names the head block; a search that outlives half the proof-of-work window
    /// starts over on the new head so the seal is still valid when the transaction lands.
    /// (Separate from [`Participant::register`] so an orchestrator can submit many at once.)
    pub async fn registration(&self) -> Result<Option<Call>, ChainError> {
        let me = self.hotkey();
        if self.uid().await?.is_some() {
            return Ok(None);
        }
        let window = self.genesis.registration.pow_window;
        crate::pow::solve_registration(&self.chain, me, self.coldkey, window, |_| {}).await.map(Some)
    }

    /// Publishes the axon endpoint; does nothing (returns `None`) if the chain already has it.
    pub async fn serve(&self, endpoint: Endpoint) -> Result<Option<u64>, ChainError> {
        let view = self.sync().await?;
        let uid = view.uid_of(&self.hotkey()).ok_or(ChainError::NotRegistered(self.hotkey()))?;
        if view.info().endpoints.get(usize::from(uid)).copied().flatten() == Some(endpoint) {
            return Ok(None);
        }
        self.transact(Call::Serve { endpoint }).await.map(Some)
    }

    /// The earliest block a `set_weights` of this neuron is accepted in, by the chain's rate
    /// limit (`weights.rate_limit` blocks after the last accepted one).
    pub fn next_weights_block(&self, view: &MetagraphView, uid: u16) -> u64 {
        view.last_update(uid).map_or(0, |last| last.saturating_add(self.genesis.weights.rate_limit))
    }

    /// Submits a row of W (`values` already normalised: see [`crate::WeightSetter`]). The rate
    /// limit is checked first, so the chain is never asked for what it would refuse: with
    /// [`RateLimitPolicy::Skip`] nothing is sent, with `Wait` it waits for the allowed block.
    pub async fn set_weights(
        &self,
        uids: Vec<u16>,
        values: &[f64],
        policy: RateLimitPolicy,
    ) -> Result<WeightsOutcome, ChainError> {
        let view = self.sync().await?;
        let uid = view.uid_of(&self.hotkey()).ok_or(ChainError::NotRegistered(self.hotkey()))?;
        let next_allowed = self.next_weights_block(&view, uid);
        let mut head = self.chain.head().await?;
        // A transaction submitted now lands in block head + 1 at the earliest.
        while head.height + 1 < next_allowed {
            match policy {
                RateLimitPolicy::Skip => return Ok(WeightsOutcome::RateLimited { next_allowed }),
                RateLimitPolicy::Wait => head = self.chain.next_block(head.height).await?,
            }
        }
        let height = self.transact(Call::set_weights(uids, values)).await?;
        Ok(WeightsOutcome::Applied { height })
    }
}

/// Several tasks of one process (the training loop, the weight setter, the axon's metagraph
/// refresher) share one connection.
impl<T: Chain> Chain for Arc<T> {
    fn head(&self) -> impl std::future::Future<Output = Result<ChainHead, ChainError>> + Send {
        (**self).head()
    }
    fn next_block(
        &self,
        after: u64,
    ) -> impl std::future::Future<Output = Result<ChainHead, ChainError>> + Send {
        (**self).next_block(after)
    }
    fn genesis(&self) -> impl std::future::Future<Output = Result<GenesisConfig, ChainError>> + Send {
        (**self).genesis()
    }
    fn metagraph(&self) -> impl std::future::Future<Output = Result<MetagraphInfo, ChainError>> + Send {
        (**self).metagraph()
    }
    fn difficulty(&self) -> impl std::future::Future<Output = Result<u64, ChainError>> + Send {
        (**self).difficulty()
    }
    fn account(
        &self,
        key: &PublicKey,
    ) -> impl std::future::Future<Output = Result<AccountInfo, ChainError>> + Send {
        (**self).account(key)
    }
    fn submit(&self, tx: &SignedTx) -> impl std::future::Future<Output = Result<Hash, ChainError>> + Send {
        (**self).submit(tx)
    }
    fn wait_for(
        &self,
        id: Hash,
    ) -> impl std::future::Future<Output = Result<(u64, Receipt), ChainError>> + Send {
        (**self).wait_for(id)
    }
}
