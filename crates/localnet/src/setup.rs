//! Wallets, funding and registration of a run's peers.

use crate::error::LocalnetError;
use crate::genesis::{faucet_key, FEE_BUDGET};
use crate::process::HOTKEY;
use crate::scenario::Scenario;
use ledger::{Call, CallKind, GenesisConfig, PublicKey, SigningKey};
use peer::{applied, sign, Chain, Participant};
use std::path::Path;
use wallet::{KdfParams, Wallet, WordCount};

/// The password of every localnet coldkey. Localnet wallets are throwaway: sealed with this
/// public password and the wallet crate's cheap test KDF parameters
/// ([`KdfParams::INSECURE_FOR_TESTS`]), so they protect nothing. Never reuse them elsewhere.
pub const PASSWORD: &[u8] = b"localnet";

/// A peer's keys.
pub struct PeerKeys {
    /// Its name (also its wallet's).
    pub name: String,
    /// The coldkey that owns the hotkey and holds its stake.
    pub coldkey: SigningKey,
    /// The hotkey it registers and signs with.
    pub hotkey: SigningKey,
}

impl PeerKeys {
    /// The coldkey's public key.
    pub fn coldkey_public(&self) -> PublicKey {
        ledger::public_key(&self.coldkey)
    }
    /// The hotkey's public key: the peer's identity on the metagraph.
    pub fn hotkey_public(&self) -> PublicKey {
        ledger::public_key(&self.hotkey)
    }
}

/// Creates (or replaces) one wallet per peer under `root`, each with hotkey [`HOTKEY`].
pub fn create_wallets(root: &Path, scenario: &Scenario) -> Result<Vec<PeerKeys>, LocalnetError> {
    std::fs::create_dir_all(root).map_err(|e| LocalnetError::io(root, e))?;
    let mut out = Vec::with_capacity(scenario.peers.len());
    for p in &scenario.peers {
        let (w, _mnemonic) =
            Wallet::create(root, &p.name, PASSWORD, WordCount::Twelve, &KdfParams::INSECURE_FOR_TESTS, true)?;
        w.create_hotkey(HOTKEY, WordCount::Twelve, true)?;
        out.push(PeerKeys {
            name: p.name.clone(),
            coldkey: w.unlock_coldkey(PASSWORD)?,
            hotkey: w.hotkey(HOTKEY)?,
        });
    }
    Ok(out)
}

/// A registered peer: its uid and the stake it was given.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
    /// Its name in the scenario.
    pub name: String,
    /// The uid it registered at.
    pub uid: u16,
    /// Its hotkey.
    pub hotkey: PublicKey,
    /// The stake put on its hotkey, in base units.
    pub stake: u64,
}

/// Funds every coldkey (its stake plus a fee budget) and hotkey (a fee budget) from the faucet,
/// registers every hotkey by proof of work (the `peer` crate's
/// [`Participant::registration`], so a peer process that starts later finds itself registered
/// and skips it), and stakes each neuron from its coldkey with the stake its role gives it
/// ([`Scenario::stakes`]).
pub async fn fund_register_stake<C: Chain + Clone>(
    chain: &C,
    genesis: &GenesisConfig,
    scenario: &Scenario,
    keys: &[PeerKeys],
    mut progress: impl FnMut(&str),
) -> Result<Vec<Registered>, LocalnetError> {
    let stakes = scenario.stakes();
    let faucet = faucet_key();
    // Transfers queue behind each other (consecutive nonces) and land in one or two blocks.
    let sender = ledger::public_key(&faucet);
    let mut nonce = chain.account(&sender).await?.nonce;
    let mut ids = Vec::new();
    for (k, stake) in keys.iter().zip(&stakes) {
        for (to, amount) in [(k.coldkey_public(), stake + FEE_BUDGET), (k.hotkey_public(), FEE_BUDGET)] {
            let body = ledger::TxBody {
                sender,
                nonce,
                fee: genesis.fees.transfer,
                call: Call::Transfer { to, amount },
            };
            ids.push(chain.submit(&body.sign(&faucet, &genesis.chain_id)).await?);
            nonce += 1;
        }
    }
    for id in ids {
        let (height, receipt) = chain.wait_for(id).await?;
        if let Some(reason) = receipt.error() {
            return Err(peer::ChainError::NotApplied {
                kind: ledger::CallKind::Transfer,
                height,
                reason: reason.clone(),
            }
            .into());
        }
    }
    progress("funded");
    // Every registration, then every stake, submitted at once (distinct senders): the run's
    // setup takes a few blocks instead of two per peer. Uids follow the order of submission.
    let mut ids = Vec::new();
    for k in keys {
        let p = Participant::new(chain.clone(), k.hotkey.clone(), k.coldkey_public()).await?;
        if let Some(call) = p.registration().await? {
            ids.push(chain.submit(&sign(chain, genesis, &k.hotkey, call).await?).await?);
        }
    }
    for id in ids {
        applied(chain, CallKind::Register, id).await?;
    }
    let mut ids = Vec::new();
    for (k, stake) in keys.iter().zip(&stakes) {
        if *stake > 0 {
            let call = Call::AddStake { hotkey: k.hotkey_public(), amount: *stake };
            ids.push(chain.submit(&sign(chain, genesis, &k.coldkey, call).await?).await?);
        }
    }
    for id in ids {
        applied(chain, CallKind::AddStake, id).await?;
    }
    let view = peer::MetagraphView::sync(chain).await?;
    let mut out = Vec::with_capacity(keys.len());
    for (k, stake) in keys.iter().zip(&stakes) {
        let uid =
            view.uid_of(&k.hotkey_public()).ok_or(peer::ChainError::NotRegistered(k.hotkey_public()))?;
        progress(&format!(
            "registered {} as uid {uid} with stake {}",
            k.name,
            *stake as f64 / ledger::UNITS_PER_TOKEN as f64
        ));
        out.push(Registered { name: k.name.clone(), uid, hotkey: k.hotkey_public(), stake: view.stake(uid) });
    }
    Ok(out)
}
