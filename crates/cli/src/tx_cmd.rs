//! `agora tx ...`: build a ledger transaction from flags, sign it with the right wallet key,
//! submit it to a node and wait for the block that includes it.
//!
//! Who signs what is the ledger's rule (`ledger::Call`): the coldkey sends `transfer`,
//! `add_stake`, `remove_stake`, `set_take` and `burned_register` (it owns funds and stake); the
//! hotkey sends `register`, `register_by`, `serve` and `set_weights` (it is the neuron). Only
//! the coldkey needs the password.
//!
//! Amounts are token strings with up to nine decimals (`1.5`, `0.000000001`), converted to the
//! ledger's integer base units ([`ledger::UNITS_PER_TOKEN`]) by exact decimal parsing, never
//! through a float.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use client::types::codes;
use client::{Client, ClientError, GenesisInfo};
use ledger::{Call, CallKind, Endpoint, Modality, Neuron, Protocol, PublicKey, SigningKey, TxBody, TxStatus};
use peer::pow::PowEvent;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wallet::Wallet;

use crate::wallet_cmd::{unlock_password, wallet_root, PasswordArgs};
use crate::weights_commit::{self, PendingCommit};

/// Where `agora node --dev` listens by default.
pub const DEFAULT_CHAIN: &str = "http://127.0.0.1:9960";

/// Where transactions go and what signs them: shared by `agora tx` and `agora stake`.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Directory holding the wallets [default: ~/.agora/wallets]
    #[arg(long, global = true, value_name = "DIR", env = "AGORA_WALLET_DIR")]
    pub wallet_dir: Option<PathBuf>,
    /// Fee in tokens [default: the chain's minimum for the transaction kind]
    #[arg(long, global = true, value_name = "TOKENS")]
    pub fee: Option<String>,
    #[command(flatten)]
    pub password: PasswordArgs,
    /// The subnet the transaction acts on (`agora subnet list`); 0 is the genesis network
    #[arg(long, global = true, value_name = "NETUID", default_value_t = 0)]
    pub netuid: u16,
}

#[derive(Debug, Args)]
pub struct TxArgs {
    #[command(flatten)]
    send: SendArgs,
    #[command(subcommand)]
    command: TxCommand,
}

/// The key a transaction is signed with: a wallet, or on a development chain a dev account.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct KeyFrom {
    /// Wallet name (its coldkey or its --hotkey signs, as the transaction requires)
    #[arg(long)]
    pub wallet: Option<String>,
    /// Sign with a funded dev account of `agora node --dev` (alice, bob, ...) as both coldkey
    /// and hotkey. Its secret derives from its name, so the node's dev chain id is required
    #[arg(long, value_name = "NAME")]
    pub dev_account: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct HotkeyArg {
    /// Hotkey name in the wallet (required with --wallet)
    #[arg(long)]
    hotkey: Option<String>,
}

#[derive(Debug, Subcommand)]
enum TxCommand {
    /// Send tokens from the coldkey to a public key
    Transfer {
        #[command(flatten)]
        from: KeyFrom,
        /// Recipient public key: 64 hex digits or an SS58 address ("5..."), as `agora wallet
        /// show` prints them
        #[arg(long, value_name = "PUBKEY")]
        to: String,
        /// Amount in tokens (up to 9 decimals)
        #[arg(long, value_name = "TOKENS", allow_hyphen_values = true)]
        amount: String,
    },
    /// Register the hotkey as a neuron owned by the coldkey, paying with proof of work over a
    /// recent block (difficulty and head read from the node), or with --burn by burning the
    /// chain's current registration burn from the coldkey's balance
    Register {
        #[command(flatten)]
        from: KeyFrom,
        #[command(flatten)]
        hotkey: HotkeyArg,
        /// Pay the registration burn (`agora_burn`, adjusted with demand) from the coldkey
        /// instead of doing proof of work; the coldkey signs
        #[arg(long)]
        burn: bool,
    },
    /// Sent by a registered neuron's hotkey: register another hotkey (owned by another
    /// coldkey) without proof of work, burning the registration burn and giving it stake from
    /// the sponsor hotkey's balance (the market paper's subscription by a peer)
    RegisterFor {
        #[command(flatten)]
        from: KeyFrom,
        /// The sponsor: a registered hotkey of the wallet, which signs and pays
        #[command(flatten)]
        hotkey: HotkeyArg,
        /// The hotkey to register: 64 hex digits or an SS58 address
        #[arg(long, value_name = "PUBKEY")]
        new_hotkey: String,
        /// The coldkey that will own it [default: the wallet's coldkey]
        #[arg(long, value_name = "PUBKEY")]
        new_coldkey: Option<String>,
        /// Stake given to it, in tokens
        #[arg(long, value_name = "TOKENS", default_value = "0")]
        stake: String,
    },
    /// Publish the hotkey's axon endpoint
    Serve {
        #[command(flatten)]
        from: KeyFrom,
        #[command(flatten)]
        hotkey: HotkeyArg,
        /// Public IP address peers reach the axon at
        #[arg(long)]
        ip: IpAddr,
        #[arg(long)]
        port: u16,
        #[arg(long, value_enum, default_value_t = ProtocolArg::Grpc)]
        protocol: ProtocolArg,
        #[arg(long, value_enum, default_value_t = ModalityArg::Text)]
        modality: ModalityArg,
    },
    /// Move free balance of the coldkey into the stake of one of its wallet's hotkeys (to
    /// stake on any hotkey by public key, as a nominator too, use `agora stake add`)
    Stake {
        #[command(flatten)]
        from: KeyFrom,
        #[command(flatten)]
        hotkey: HotkeyArg,
        /// Amount in tokens (up to 9 decimals)
        #[arg(long, value_name = "TOKENS", allow_hyphen_values = true)]
        amount: String,
    },
    /// Move stake of the hotkey back to the coldkey's free balance
    Unstake {
        #[command(flatten)]
        from: KeyFrom,
        #[command(flatten)]
        hotkey: HotkeyArg,
        /// Amount in tokens (up to 9 decimals)
        #[arg(long, value_name = "TOKENS", allow_hyphen_values = true)]
        amount: String,
    },
    /// Set the hotkey's row of the weight matrix W (values are normalised to sum to 1 here)
    Weights {
        #[command(flatten)]
        from: KeyFrom,
        #[command(flatten)]
        hotkey: HotkeyArg,
        #[command(flatten)]
        row: RowArgs,
    },
    /// Commit to a row of W without showing it (chains with commit-reveal on): sends a hash of
    /// the row and a random salt, and saves both locally until `reveal-weights`
    CommitWeights {
        #[command(flatten)]
        from: KeyFrom,
        #[command(flatten)]
        hotkey: HotkeyArg,
        #[command(flatten)]
        row: RowArgs,
        /// Where the row and salt are saved [default: WALLET/commits/HOTKEY.json in the wallet
        /// dir, or dev-commits/NAME.json there for a dev account]
        #[arg(long, value_name = "FILE")]
        commit_file: Option<PathBuf>,
    },
    /// Reveal the row saved by `commit-weights`, within the chain's reveal window; the row then
    /// replaces the hotkey's row of W
    RevealWeights {
        #[command(flatten)]
        from: KeyFrom,
        #[command(flatten)]
        hotkey: HotkeyArg,
        /// The file `commit-weights` saved [default: as for commit-weights]
        #[arg(long, value_name = "FILE")]
        commit_file: Option<PathBuf>,
    },
}

/// A row of W as `weights` and `commit-weights` take it.
#[derive(Debug, Args)]
struct RowArgs {
    /// Uids, comma-separated
    #[arg(long, value_delimiter = ',', required = true)]
    uids: Vec<u16>,
    /// One value per uid, comma-separated, finite and >= 0 (any scale: normalised)
    #[arg(long, value_delimiter = ',', required = true, allow_negative_numbers = true)]
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProtocolArg {
    Grpc,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModalityArg {
    Text,
    Image,
    Tensor,
}

/// Runs `future` on a single-threaded runtime: the CLI makes a few sequential calls.
pub(crate) fn block_on<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// Which node to ask, and which chain it must be running.
#[derive(Debug, Clone, Args)]
pub(crate) struct ChainArgs {
    /// The node's JSON-RPC URL (http:// or ws://)
    #[arg(long = "chain", global = true, value_name = "URL", env = "AGORA_CHAIN", default_value = DEFAULT_CHAIN)]
    pub url: String,
    /// Refuse a node that runs another chain than this one (its genesis chain id): without it,
    /// a URL that reaches another chain is used silently
    #[arg(long, global = true, value_name = "ID", env = "AGORA_CHAIN_ID")]
    pub chain_id: Option<String>,
}

/// A connected node and its genesis (chain id, fees, mechanism).
pub(crate) struct Chain {
    /// Shared with the proof-of-work search (`peer::RpcChain`), so a `register` uses one
    /// connection.
    pub client: Arc<Client>,
    pub genesis: GenesisInfo,
}

impl Chain {
    /// Connects and reads the genesis; an unreachable node gets an error that says what to
    /// start, a node on another chain than `--chain-id` names is refused.
    pub async fn connect(target: &ChainArgs) -> Result<Chain> {
        let url = target.url.as_str();
        let client = Client::connect(url).await.map_err(|e| unreachable(url, e))?;
        let genesis = client.genesis().await.map_err(|e| unreachable(url, e))?;
        let chain = Chain { client: Arc::new(client), genesis };
        if let Some(want) = target.chain_id.as_deref().filter(|&want| want != chain.id()) {
            bail!("the node at {url} runs chain {:?}, not {want:?} (--chain-id, AGORA_CHAIN_ID)", chain.id());
        }
        Ok(chain)
    }

    pub fn id(&self) -> &str {
        &self.genesis.config.chain_id
    }

    /// The neuron of `hotkey` in subnet `netuid`, `None` if it is not registered there.
    pub async fn neuron_by_hotkey(&self, netuid: u16, hotkey: &PublicKey) -> Result<Option<Neuron>> {
        let found = match netuid {
            0 => self.client.neuron_by_hotkey(hotkey).await,
            k => self.client.neuron_by_hotkey_in(k, hotkey).await,
        };
        match found {
            Ok(n) => Ok(Some(n)),
            Err(ClientError::Rpc { code, .. }) if code == codes::NOT_FOUND => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl Chain {
    /// Subnet `netuid` as the node describes it; a clear error naming `agora subnet list` when
    /// there is no such subnet.
    pub async fn subnet(&self, netuid: u16) -> Result<client::types::SubnetSummary> {
        match self.client.subnet(netuid).await {
            Ok(s) => Ok(s),
            Err(ClientError::Rpc { code, message, .. }) if code == codes::NOT_FOUND => {
                bail!("--netuid {netuid}: {message} (`agora subnet list` shows them)")
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The commit-reveal parameters of subnet `netuid` (the genesis' for netuid 0).
    async fn commit_reveal(&self, netuid: u16) -> Result<Option<ledger::CommitRevealConfig>> {
        if netuid == 0 {
            return Ok(self.genesis.config.weights.commit_reveal.clone());
        }
        Ok(self.subnet(netuid).await?.params.commit_reveal)
    }
}

fn unreachable(url: &str, e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Transport(_) => {
            anyhow!("cannot reach a node at {url} ({e}); is `agora node --dev` running at {url}?")
        }
        other => anyhow::Error::from(other).context(format!("node at {url}")),
    }
}

/// Parses a token amount (`12`, `0.5`, `1.000000001`) into base units, exactly.
pub(crate) fn parse_tokens(s: &str) -> Result<u64> {
    Ok(ledger::Tokens::parse_units(s)?)
}

/// Base units as tokens, without trailing zeros: 1500000000 -> "1.5".
pub(crate) fn format_tokens(units: u64) -> String {
    ledger::Tokens::from(units).to_string()
}

pub(crate) fn format_tokens_u128(units: u128) -> String {
    ledger::Tokens(units).to_string()
}

/// A take in parts of 65,535 as a percentage: 11796 -> "18%" (two decimals at most).
pub(crate) fn format_take(take: u16) -> String {
    let pct = ledger::delegation::take_fraction(take) * 100.0;
    let s = format!("{pct:.2}");
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

/// Parses `--values` and normalises them to sum to 1, as the ledger requires (within 1e-6).
/// Refuses what the ledger would refuse anyway, with the offending entry named.
fn weight_values(uids: &[u16], values: &[String]) -> Result<Vec<f64>> {
    let mut parsed = Vec::with_capacity(values.len());
    for (k, v) in values.iter().enumerate() {
        let x: f64 = v.trim().parse().map_err(|_| match uids.get(k) {
            Some(u) => anyhow!("weight {v:?} for uid {u} is not a number"),
            None => anyhow!("weight {v:?} (value {} of {}) is not a number", k + 1, values.len()),
        })?;
        parsed.push(ledger::Float(x));
    }
    // The ledger's own checks of a row (lengths, values, duplicates), before anything is signed;
    // the uid range and the row limit need the chain, whose node checks them on submission.
    ledger::check_weight_row(uids, &parsed, usize::MAX, usize::MAX)?;
    let sum: f64 = parsed.iter().map(|x| x.0).sum();
    if !(sum > 0.0 && sum.is_finite()) {
        bail!("weights sum to {sum}: at least one must be positive (and their sum finite)");
    }
    Ok(parsed.into_iter().map(|x| x.0 / sum).collect())
}

/// The keys of one transaction: who signs, and the wallet's coldkey and hotkey public keys.
pub(crate) struct Keys {
    pub coldkey: PublicKey,
    hotkey: Option<PublicKey>,
    source: KeySource,
}

enum KeySource {
    Wallet { wallet: Wallet, hotkey: Option<String> },
    Dev(SigningKey),
}

impl Keys {
    pub(crate) fn new(root: &Option<PathBuf>, from: &KeyFrom, hotkey: Option<&HotkeyArg>) -> Result<Keys> {
        if let Some(name) = &from.dev_account {
            let key = ledger::dev_key(name);
            let pk = ledger::public_key(&key);
            return Ok(Keys { coldkey: pk, hotkey: Some(pk), source: KeySource::Dev(key) });
        }
        let name = from.wallet.as_deref().context("pass --wallet NAME or --dev-account NAME")?;
        let w = Wallet::open(&wallet_root(root.clone())?, name)?;
        let hk = match hotkey {
            None => None,
            Some(HotkeyArg { hotkey: None }) => bail!("pass --hotkey NAME: this transaction is the neuron's"),
            Some(HotkeyArg { hotkey: Some(h) }) => Some(h.clone()),
        };
        let hotkey = hk.as_deref().map(|h| w.hotkey_public(h)).transpose()?;
        Ok(Keys { coldkey: w.coldkey_public(), hotkey, source: KeySource::Wallet { wallet: w, hotkey: hk } })
    }

    fn hotkey(&self) -> Result<PublicKey> {
        self.hotkey.context("this transaction needs --hotkey")
    }

    /// The signing key the ledger expects for `kind`.
    fn signer(&self, kind: CallKind, password: &PasswordArgs) -> Result<SigningKey> {
        let cold = matches!(
            kind,
            CallKind::Transfer
                | CallKind::AddStake
                | CallKind::RemoveStake
                | CallKind::SetTake
                | CallKind::BurnedRegister
                | CallKind::CreateSubnet
        );
        match &self.source {
            KeySource::Dev(k) => Ok(k.clone()),
            KeySource::Wallet { wallet, .. } if cold => {
                let pw = unlock_password(password)?;
                Ok(wallet.unlock_coldkey(&pw)?)
            }
            KeySource::Wallet { wallet, hotkey } => {
                let h = hotkey.as_deref().context("this transaction needs --hotkey")?;
                Ok(wallet.hotkey(h)?)
            }
        }
    }
}

/// Runs `agora tx ...`.
pub fn run(args: TxArgs) -> Result<()> {
    let TxArgs { send: SendArgs { chain: target, wallet_dir, fee, password, netuid }, command } = args;
    if netuid != 0 && matches!(command, TxCommand::Transfer { .. }) {
        bail!("--netuid {netuid}: a transfer moves free balance, which is chain-wide: drop --netuid");
    }
    // Check every local input before touching the network or asking for a password.
    let fee = fee.as_deref().map(parse_tokens).transpose()?;
    // The commitment file a reveal spends: removed once the reveal is applied.
    let mut spent_commit: Option<PathBuf> = None;
    let (keys, call) = match &command {
        TxCommand::Transfer { from, to, amount } => {
            let to: PublicKey = to.parse().map_err(|e| anyhow!("--to: {e}"))?;
            let amount = parse_tokens(amount)?;
            (Keys::new(&wallet_dir, from, None)?, Some(Call::Transfer { to, amount }))
        }
        // The proof of work needs the chain's head: built below.
        TxCommand::Register { from, hotkey, burn: false } => {
            (Keys::new(&wallet_dir, from, Some(hotkey))?, None)
        }
        TxCommand::Register { from, hotkey, burn: true } => {
            let keys = Keys::new(&wallet_dir, from, Some(hotkey))?;
            let call = Call::BurnedRegister { hotkey: keys.hotkey()? };
            (keys, Some(call))
        }
        TxCommand::RegisterFor { from, hotkey, new_hotkey, new_coldkey, stake } => {
            let keys = Keys::new(&wallet_dir, from, Some(hotkey))?;
            let new_hotkey: PublicKey = new_hotkey.parse().map_err(|e| anyhow!("--new-hotkey: {e}"))?;
            let coldkey = match new_coldkey {
                Some(c) => c.parse().map_err(|e| anyhow!("--new-coldkey: {e}"))?,
                None => keys.coldkey,
            };
            let stake = parse_tokens(stake)?;
            (keys, Some(Call::RegisterBy { hotkey: new_hotkey, coldkey, stake }))
        }
        TxCommand::Serve { from, hotkey, ip, port, protocol, modality } => {
            let endpoint = Endpoint {
                ip: (*ip).into(),
                port: *port,
                protocol: match protocol {
                    ProtocolArg::Grpc => Protocol::Grpc,
                },
                modality: match modality {
                    ModalityArg::Text => Modality::Text,
                    ModalityArg::Image => Modality::Image,
                    ModalityArg::Tensor => Modality::Tensor,
                },
            };
            (Keys::new(&wallet_dir, from, Some(hotkey))?, Some(Call::Serve { endpoint }))
        }
        TxCommand::Stake { from, hotkey, amount } | TxCommand::Unstake { from, hotkey, amount } => {
            let keys = Keys::new(&wallet_dir, from, Some(hotkey))?;
            let (hotkey, amount) = (keys.hotkey()?, parse_tokens(amount)?);
            let call = match command {
                TxCommand::Stake { .. } => Call::AddStake { hotkey, amount },
                _ => Call::RemoveStake { hotkey, amount },
            };
            (keys, Some(call))
        }
        TxCommand::Weights { from, hotkey, row } => {
            let values = weight_values(&row.uids, &row.values)?;
            (Keys::new(&wallet_dir, from, Some(hotkey))?, Some(Call::set_weights(row.uids.clone(), &values)))
        }
        TxCommand::CommitWeights { from, hotkey, row, commit_file } => {
            let values = weight_values(&row.uids, &row.values)?;
            let keys = Keys::new(&wallet_dir, from, Some(hotkey))?;
            let pending = PendingCommit::new(keys.hotkey()?, row.uids.clone(), &values);
            // Saved before sending: if the commitment lands, the salt must not be lost.
            let path = commit_path(&wallet_dir, from, hotkey, commit_file)?;
            pending.save(&path)?;
            eprintln!("row and salt saved to {} (reveal-weights reads them)", path.display());
            (keys, Some(Call::CommitWeights { commitment: pending.commitment }))
        }
        TxCommand::RevealWeights { from, hotkey, commit_file } => {
            let keys = Keys::new(&wallet_dir, from, Some(hotkey))?;
            let path = commit_path(&wallet_dir, from, hotkey, commit_file)?;
            let p = PendingCommit::load(&path)?;
            if p.hotkey != keys.hotkey()? {
                bail!(
                    "{} holds a commitment of hotkey {}, not of {}",
                    path.display(),
                    p.hotkey,
                    keys.hotkey()?
                );
            }
            spent_commit = Some(path);
            (keys, Some(Call::RevealWeights { uids: p.uids, values: p.values, salt: p.salt }))
        }
    };
    send(&target, fee, &password, keys, call.map(|c| c.on_subnet(netuid)), netuid, spent_commit)
}

/// Signs `call` (or, for `None`, a proof-of-work `register` solved here) with the key the
/// ledger expects for its kind, submits it and waits for its block; prints what happened.
/// `netuid`: the subnet the call acts on (already wrapped into `call`; the one a `register`
/// solves for). `spent_commit`: a commitment file to remove once the transaction is applied.
pub(crate) fn send(
    target: &ChainArgs,
    fee: Option<u64>,
    password: &PasswordArgs,
    keys: Keys,
    call: Option<Call>,
    netuid: u16,
    spent_commit: Option<PathBuf>,
) -> Result<()> {
    let kind = call.as_ref().map_or(CallKind::Register, Call::kind);
    let registers = match call.as_ref().map(Call::inner) {
        Some(Call::BurnedRegister { hotkey } | Call::RegisterBy { hotkey, .. }) => Some(*hotkey),
        _ => None,
    };
    // Unlock before connecting, so a wrong password fails fast and the proof of work is not
    // wasted on a key that cannot sign.
    let key = keys.signer(kind, password)?;
    block_on(async move {
        let chain = Chain::connect(target).await?;
        if matches!(keys.source, KeySource::Dev(_)) && chain.id() != ledger::GenesisConfig::default().chain_id
        {
            bail!(
                "--dev-account signs with a publicly known key; chain {:?} is not a dev chain (\"{}\")",
                chain.id(),
                ledger::GenesisConfig::default().chain_id
            );
        }
        // A subnet that does not exist is named before anything is solved or signed.
        let commit_reveal = chain.commit_reveal(netuid).await?;
        let call = match call {
            Some(c) => c,
            None => register_call(&chain, &target.url, keys.hotkey()?, keys.coldkey, netuid)
                .await?
                .on_subnet(netuid),
        };
        let sender = ledger::public_key(&key);
        let fee = fee.unwrap_or_else(|| chain.genesis.config.fees.min_fee(kind));
        let nonce = chain.client.account(&sender).await?.nonce;
        let set_take = match call.inner() {
            Call::SetTake { hotkey, .. } => Some(*hotkey),
            _ => None,
        };
        let tx = TxBody { sender, nonce, fee, call }.sign(&key, chain.id());
        println!("submitting {kind} from {sender} (nonce {nonce}, fee {})", format_tokens(fee));
        let (height, receipt) = match chain.client.submit_and_wait(&tx).await {
            Ok(r) => r,
            Err(ClientError::Rejected(reason @ ledger::TxError::CannotPayFee { .. }))
                if matches!(kind, CallKind::Serve | CallKind::SetWeights) =>
            {
                // The hotkey signs these and so pays their fee: a fresh hotkey has no balance.
                bail!(
                    "rejected by the node: {reason}\nthe hotkey pays the fee of {kind}; fund it first, e.g. \
                     `agora tx transfer --wallet <wallet> --to {sender} --amount 1`"
                )
            }
            Err(ClientError::Rejected(reason)) => {
                bail!("rejected by the node: {reason}{}", units_note(&reason))
            }
            Err(e) => return Err(e.into()),
        };
        println!("transaction {}", receipt.tx_id);
        match receipt.status {
            TxStatus::Applied => {
                println!("included in block {height}: applied");
                if let Some(hotkey) = registers.or((kind == CallKind::Register).then_some(sender)) {
                    if let Some(n) = chain.neuron_by_hotkey(netuid, &hotkey).await? {
                        let on = if netuid == 0 { String::new() } else { format!(" in subnet {netuid}") };
                        println!("registered as uid {}{on} (hotkey {hotkey})", n.uid);
                    }
                }
                if let Some(hotkey) = set_take {
                    let info = chain.client.nominators_in(netuid, &hotkey).await?;
                    println!("take in force: {}", format_take(info.take));
                    if let Some(p) = info.pending_take {
                        println!(
                            "take {} announced: in force from block {}",
                            format_take(p.take),
                            p.effective_at
                        );
                    }
                }
                if let (CallKind::CommitWeights, Some(cr)) = (kind, &commit_reveal) {
                    let (earliest, deadline) = cr.reveal_range(height);
                    println!(
                        "reveal from block {earliest} to block {deadline} with `agora tx reveal-weights`"
                    );
                }
                if let Some(path) = spent_commit {
                    // Revealed: the salt has nothing left to hide and the commitment is spent.
                    let _ = std::fs::remove_file(&path);
                }
                Ok(())
            }
            TxStatus::Failed(reason) => bail!(
                "included in block {height}: failed (fee {} paid, nothing else changed): {reason}{}",
                format_tokens(receipt.fee_paid),
                units_note(&reason)
            ),
            TxStatus::Rejected(reason) => {
                bail!("included in block {height}: rejected: {reason}{}", units_note(&reason))
            }
        }
    })
}

/// The ledger's reasons give amounts in base units; say so where the CLI spoke in tokens.
fn units_note(reason: &ledger::TxError) -> &'static str {
    use ledger::TxError::*;
    match reason {
        CannotPayFee { .. } | InsufficientBalance { .. } | InsufficientStake { .. } | FeeTooLow { .. } => {
            " (amounts in base units: 1 token = 1000000000)"
        }
        _ => "",
    }
}

/// The commitment file of `commit-weights` / `reveal-weights`: `--commit-file`, else the
/// default next to the wallet ([`weights_commit::default_path`]).
fn commit_path(
    root: &Option<PathBuf>,
    from: &KeyFrom,
    hotkey: &HotkeyArg,
    file: &Option<PathBuf>,
) -> Result<PathBuf> {
    if let Some(f) = file {
        return Ok(f.clone());
    }
    Ok(weights_commit::default_path(
        &wallet_root(root.clone())?,
        from.wallet.as_deref(),
        hotkey.hotkey.as_deref(),
        from.dev_account.as_deref(),
    ))
}

/// Solves the proof of work of a `register` over the node's head block, with progress on
/// stderr. The seal must name one of the last `pow_window` blocks when the transaction lands,
/// so a search that outlives half the window starts over on the new head.
async fn register_call(
    chain: &Chain,
    url: &str,
    hotkey: PublicKey,
    coldkey: PublicKey,
    netuid: u16,
) -> Result<Call> {
    if let Some(n) = chain.neuron_by_hotkey(netuid, &hotkey).await? {
        bail!("hotkey {hotkey} is already registered as uid {} of subnet {netuid}", n.uid);
    }
    // The search peers use (`peer::pow`), over this command's connection, against the
    // subnet's difficulty; progress on stderr.
    let mut rpc = peer::RpcChain::over(url, chain.client.clone());
    rpc.netuid = netuid;
    let window = chain.genesis.config.registration.pow_window;
    let mut last_progress = Instant::now();
    let print = |e: &PowEvent| match e {
        PowEvent::Started { difficulty, block, hash } => {
            eprintln!("solving proof of work: difficulty {difficulty}, over block {block} ({hash})")
        }
        PowEvent::Progress { tried, rate, difficulty } => {
            if last_progress.elapsed() >= Duration::from_secs(1) {
                last_progress = Instant::now();
                eprintln!("  {tried} hashes ({rate:.0}/s, about {difficulty} expected)");
            }
        }
        PowEvent::Stale { block, head } => {
            eprintln!("  block {block} is getting old (head {head}); starting over")
        }
        PowEvent::Solved { nonce, tried, elapsed } => {
            eprintln!("solved: nonce {nonce} after {tried} hashes in {elapsed:.1?}")
        }
    };
    Ok(peer::pow::solve_registration(&rpc, hotkey, coldkey, window, print).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_amounts_parse_exactly() {
        assert_eq!(parse_tokens("1").unwrap(), 1_000_000_000);
        assert_eq!(parse_tokens("1.5").unwrap(), 1_500_000_000);
        assert_eq!(parse_tokens("0.000000001").unwrap(), 1);
        assert_eq!(parse_tokens(".25").unwrap(), 250_000_000);
        assert_eq!(parse_tokens("7.").unwrap(), 7_000_000_000);
        // 0.1 + 0.2 style float surprises cannot happen: the digits are the units.
        assert_eq!(parse_tokens("0.3").unwrap(), 300_000_000);
        assert_eq!(parse_tokens("18446744073.709551615").unwrap(), u64::MAX);
        for bad in ["", ".", "-1", "+1", "1e3", "1.2.3", "abc", "1,5", " 1 .5", "NaN"] {
            assert!(parse_tokens(bad).is_err(), "{bad:?}");
        }
        assert!(parse_tokens("1.0000000001").unwrap_err().to_string().contains("10 decimals"));
        assert!(parse_tokens("18446744073.709551616").unwrap_err().to_string().contains("too large"));
        assert!(parse_tokens("99999999999999999999").unwrap_err().to_string().contains("too large"));
    }

    #[test]
    fn token_amounts_format_without_trailing_zeros() {
        assert_eq!(format_tokens(0), "0");
        assert_eq!(format_tokens(1_500_000_000), "1.5");
        assert_eq!(format_tokens(1), "0.000000001");
        assert_eq!(format_tokens(10_000), "0.00001");
        for x in [0, 1, 999, 1_000_000_000, 123_456_789_012, u64::MAX] {
            assert_eq!(parse_tokens(&format_tokens(x)).unwrap(), x);
        }
    }

    #[test]
    fn weights_are_normalised_or_refused_with_the_entry_named() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let w = weight_values(&[0, 1, 2], &v(&["2", "1", "1"])).unwrap();
        assert_eq!(w, [0.5, 0.25, 0.25]);
        assert!(
            (weight_values(&[0, 1, 2], &v(&["0.5", "0.3", "0.2"])).unwrap().iter().sum::<f64>() - 1.0).abs()
                < 1e-12
        );
        let err = |u: &[u16], s: &[&str]| weight_values(u, &v(s)).unwrap_err().to_string();
        assert!(err(&[0, 1], &["NaN", "1"]).contains("finite"));
        assert!(err(&[0, 1], &["inf", "1"]).contains("finite"));
        assert!(err(&[0, 1], &["-1", "1"]).contains(">= 0"));
        assert!(err(&[0, 1], &["x", "1"]).contains("not a number"));
        assert!(err(&[0, 0], &["1", "1"]).contains("twice"));
        assert!(err(&[0], &["1", "1"]).contains("one value per uid"));
        assert!(err(&[0, 1], &["0", "0"]).contains("positive"));
        assert!(err(&[0, 1], &["1e308", "1e308"]).contains("finite"));
    }
}
