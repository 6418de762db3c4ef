//! `agora stake add|remove|list|set-take`: stake on any registered hotkey, named by public key
//! (hex or SS58), as btcli's `stake` and `delegate` verbs do.
//!
//! The ledger's rule (`ledger::delegation`): stake a coldkey adds to a hotkey it owns is the
//! owner's own stake; stake it adds to anyone else's hotkey is a nomination. Whatever the chain
//! pays to the hotkey's stake goes first to the owner's take, then pro rata to all its stake.
//! The coldkey signs every one of these (`agora tx stake` / `unstake` remain, for a wallet's
//! own hotkeys named by their wallet names).

use crate::tx_cmd::ChainArgs;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use ledger::{Call, PublicKey};
use std::path::PathBuf;
use wallet::Wallet;

use crate::tx_cmd::{
    block_on, format_take, format_tokens, parse_tokens, send, Chain, KeyFrom, Keys, SendArgs,
};
use crate::wallet_cmd::wallet_root;

#[derive(Debug, Args)]
pub struct StakeArgs {
    #[command(flatten)]
    send: SendArgs,
    #[command(subcommand)]
    command: StakeCommand,
}

#[derive(Debug, Subcommand)]
enum StakeCommand {
    /// Move free balance of the coldkey onto a hotkey's stake: the coldkey's own hotkey (owner's
    /// stake) or anyone's (a nomination, paid its pro-rata share after the owner's take)
    Add {
        #[command(flatten)]
        from: KeyFrom,
        /// The hotkey: 64 hex digits, an SS58 address, or a hotkey name of --wallet
        #[arg(long, value_name = "PUBKEY")]
        hotkey: String,
        /// Amount in tokens (up to 9 decimals)
        #[arg(long, value_name = "TOKENS", allow_hyphen_values = true)]
        amount: String,
    },
    /// Move the coldkey's stake on a hotkey (its own stake, or its nomination) back to its free
    /// balance
    Remove {
        #[command(flatten)]
        from: KeyFrom,
        /// The hotkey: 64 hex digits, an SS58 address, or a hotkey name of --wallet
        #[arg(long, value_name = "PUBKEY")]
        hotkey: String,
        /// Amount in tokens (up to 9 decimals); --all for everything the coldkey has on it
        #[arg(long, value_name = "TOKENS", allow_hyphen_values = true, required_unless_present = "all")]
        amount: Option<String>,
        #[arg(long, conflicts_with = "amount")]
        all: bool,
    },
    /// List stakes: the hotkeys a coldkey has stake on (--wallet, --dev-account or --coldkey),
    /// or the owner and nominators of a hotkey (--hotkey)
    List {
        #[arg(long, conflicts_with_all = ["dev_account", "coldkey", "hotkey"])]
        wallet: Option<String>,
        #[arg(long, value_name = "NAME", conflicts_with_all = ["coldkey", "hotkey"])]
        dev_account: Option<String>,
        /// A coldkey: 64 hex digits or an SS58 address
        #[arg(long, value_name = "PUBKEY", conflicts_with = "hotkey")]
        coldkey: Option<String>,
        /// A registered hotkey: list its owner's stake, its take and its nominators
        #[arg(long, value_name = "PUBKEY")]
        hotkey: Option<String>,
    },
    /// Set the take the owner keeps of what its hotkey's stake earns, as a fraction (0.18 is
    /// 18%, the default and maximum on the dev chain). A decrease applies at once; an increase
    /// is announced and applies after the chain's `delegation.take_notice` blocks
    SetTake {
        #[command(flatten)]
        from: KeyFrom,
        /// The hotkey: 64 hex digits, an SS58 address, or a hotkey name of --wallet
        #[arg(long, value_name = "PUBKEY")]
        hotkey: String,
        /// The take as a fraction in [0, 1]
        #[arg(long, value_name = "FRACTION")]
        take: f64,
    },
}

/// A hotkey named by public key, or by a hotkey name of `--wallet`.
fn hotkey_key(root: &Option<PathBuf>, wallet: Option<&str>, s: &str) -> Result<PublicKey> {
    match (s.parse::<PublicKey>(), wallet) {
        (Ok(k), _) => Ok(k),
        (Err(_), Some(w)) if !s.is_empty() => {
            let w = Wallet::open(&wallet_root(root.clone())?, w)?;
            w.hotkey_public(s)
                .with_context(|| format!("--hotkey {s:?} is no public key and no hotkey of the wallet"))
        }
        (Err(e), _) => Err(anyhow!("--hotkey: {e}")),
    }
}

pub fn run(args: StakeArgs) -> Result<()> {
    let StakeArgs { send: SendArgs { chain: target, wallet_dir, fee, password, netuid }, command } = args;
    let fee = fee.as_deref().map(parse_tokens).transpose()?;
    let (keys, call) = match &command {
        StakeCommand::Add { from, hotkey, amount } => {
            let hotkey = hotkey_key(&wallet_dir, from.wallet.as_deref(), hotkey)?;
            let amount = parse_tokens(amount)?;
            (Keys::new(&wallet_dir, from, None)?, Call::AddStake { hotkey, amount })
        }
        StakeCommand::Remove { from, hotkey, amount, all } => {
            let hotkey = hotkey_key(&wallet_dir, from.wallet.as_deref(), hotkey)?;
            let keys = Keys::new(&wallet_dir, from, None)?;
            let amount = match (amount, all) {
                (Some(a), _) => parse_tokens(a)?,
                (None, true) => held(&target, netuid, &keys.coldkey, &hotkey)?,
                (None, false) => bail!("pass --amount TOKENS or --all"),
            };
            (keys, Call::RemoveStake { hotkey, amount })
        }
        StakeCommand::SetTake { from, hotkey, take } => {
            let hotkey = hotkey_key(&wallet_dir, from.wallet.as_deref(), hotkey)?;
            let take = ledger::delegation::take_from_fraction(*take)
                .with_context(|| format!("--take {take}: give a fraction in [0, 1], e.g. 0.18 for 18%"))?;
            (Keys::new(&wallet_dir, from, None)?, Call::SetTake { hotkey, take })
        }
        StakeCommand::List { wallet, dev_account, coldkey, hotkey } => {
            return list(&target, netuid, &wallet_dir, wallet, dev_account, coldkey, hotkey);
        }
    };
    send(&target, fee, &password, keys, Some(call.on_subnet(netuid)), netuid, None)
}

/// The stakes of `coldkey` in subnet `netuid` (netuid 0 with the call that predates subnets).
async fn stakes_in(chain: &Chain, netuid: u16, coldkey: &PublicKey) -> Result<Vec<client::types::StakeInfo>> {
    if netuid != 0 {
        chain.subnet(netuid).await?;
        return Ok(chain.client.stakes_in(netuid, coldkey).await?);
    }
    Ok(chain.client.stakes(coldkey).await?)
}

/// What `coldkey` has on `hotkey` in subnet `netuid` (for `remove --all`).
fn held(target: &ChainArgs, netuid: u16, coldkey: &PublicKey, hotkey: &PublicKey) -> Result<u64> {
    block_on(async {
        let chain = Chain::connect(target).await?;
        let stakes = stakes_in(&chain, netuid, coldkey).await?;
        match stakes.iter().find(|s| s.hotkey == *hotkey) {
            Some(s) if s.stake > 0 => Ok(s.stake),
            _ => bail!("{coldkey} has no stake on hotkey {hotkey}"),
        }
    })
}

fn list(
    target: &ChainArgs,
    netuid: u16,
    root: &Option<PathBuf>,
    wallet: &Option<String>,
    dev_account: &Option<String>,
    coldkey: &Option<String>,
    hotkey: &Option<String>,
) -> Result<()> {
    let coldkey: Option<PublicKey> = match (wallet, dev_account, coldkey) {
        (Some(w), _, _) => Some(Wallet::open(&wallet_root(root.clone())?, w)?.coldkey_public()),
        (_, Some(d), _) => Some(ledger::public_key(&ledger::dev_key(d))),
        (_, _, Some(c)) => Some(c.parse().map_err(|e| anyhow!("--coldkey: {e}"))?),
        _ => None,
    };
    let hotkey: Option<PublicKey> =
        hotkey.as_deref().map(|h| h.parse().map_err(|e| anyhow!("--hotkey: {e}"))).transpose()?;
    block_on(async move {
        let chain = Chain::connect(target).await?;
        if let Some(h) = hotkey {
            if netuid != 0 {
                chain.subnet(netuid).await?;
            }
            let info = chain.client.nominators_in(netuid, &h).await?;
            println!("hotkey {} (uid {}), owner {}", info.hotkey, info.uid, info.owner);
            println!(
                "stake {} (owner {}), take {}",
                format_tokens(info.stake),
                format_tokens(info.own_stake),
                format_take(info.take)
            );
            if let Some(p) = info.pending_take {
                println!("take {} announced: in force from block {}", format_take(p.take), p.effective_at);
            }
            println!("{:<66} {:>20}", "NOMINATOR", "STAKE");
            for n in &info.nominators {
                println!("{:<66} {:>20}", n.coldkey.to_string(), format_tokens(n.stake));
            }
            return Ok(());
        }
        let Some(c) = coldkey else {
            bail!("pass --wallet, --dev-account or --coldkey (a coldkey's stakes), or --hotkey (a hotkey's nominators)")
        };
        let stakes = stakes_in(&chain, netuid, &c).await?;
        match netuid {
            0 => println!("coldkey {c}"),
            k => println!("coldkey {c} in subnet {k}"),
        }
        println!("{:>5} {:<66} {:>20} {:>9} {:>7}", "UID", "HOTKEY", "STAKE", "ROLE", "TAKE");
        let mut total: u128 = 0;
        for s in &stakes {
            total += u128::from(s.stake);
            let role = if s.owner { "owner" } else { "nominator" };
            let take = format_take(ledger::delegation::take_from_fraction(s.take).unwrap_or(0));
            println!(
                "{:>5} {:<66} {:>20} {:>9} {:>7}",
                s.uid,
                s.hotkey.to_string(),
                format_tokens(s.stake),
                role,
                take
            );
        }
        println!("total staked {}", crate::tx_cmd::format_tokens_u128(total));
        Ok(())
    })
}
