//! `agora subnet list|show|create`: the chain's networks (btcli's `subnet list/show/create`).
//!
//! Netuid 0 is the genesis network; `create` opens the next netuid with its own mechanism and
//! parameters, burning the chain's creation cost from the coldkey (`ledger::subnet`). Every verb
//! that acts on a network takes `--netuid` (default 0).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use client::types::SubnetSummary;
use ledger::{Call, CommitRevealConfig, SubnetParams};

use crate::tx_cmd::{
    block_on, format_tokens, format_tokens_u128, send, Chain, ChainArgs, KeyFrom, Keys, SendArgs,
};

#[derive(Debug, Args)]
pub struct SubnetArgs {
    #[command(flatten)]
    send: SendArgs,
    #[command(subcommand)]
    command: SubnetCommand,
}

#[derive(Debug, Subcommand)]
enum SubnetCommand {
    /// Every subnet: netuid, mechanism, tempo, neurons, registered stake (what its share of
    /// each block's emission is in proportion to), difficulty and owner
    List,
    /// One subnet's parameters and state
    Show {
        /// The subnet (0 is the genesis network)
        netuid: u16,
    },
    /// Open the next subnet, owned by the coldkey, burning the chain's creation cost (see
    /// `agora subnet list` for what exists). Parameters left out are the genesis network's
    Create {
        #[command(flatten)]
        from: KeyFrom,
        /// Incentive mechanism: basic, connectivity, trust, nakamoto or yuma
        #[arg(long)]
        mechanism: Option<String>,
        /// Blocks per epoch
        #[arg(long)]
        tempo: Option<u64>,
        /// Size of the neuron table (uids)
        #[arg(long)]
        max_neurons: Option<u32>,
        /// Blocks after registration during which a neuron cannot be replaced
        #[arg(long)]
        immunity_period: Option<u64>,
        /// Initial proof-of-work difficulty (within the chain's bounds)
        #[arg(long)]
        difficulty: Option<u64>,
        /// Blocks between two weight rows of one neuron
        #[arg(long)]
        weights_rate_limit: Option<u64>,
        /// Turn commit-reveal weights on: blocks a commitment stays hidden
        #[arg(long, value_name = "BLOCKS", requires = "reveal_window")]
        reveal_delay: Option<u64>,
        /// With --reveal-delay: blocks the reveal stays open
        #[arg(long, value_name = "BLOCKS", requires = "reveal_delay")]
        reveal_window: Option<u64>,
        /// Turn commit-reveal off even if the genesis network has it on
        #[arg(long, conflicts_with = "reveal_delay")]
        no_commit_reveal: bool,
    },
}

/// Runs `agora subnet ...`.
pub fn run(args: SubnetArgs) -> Result<()> {
    let SubnetArgs { send: SendArgs { chain: target, wallet_dir, fee, password, netuid }, command } = args;
    match command {
        SubnetCommand::List => list(&target),
        SubnetCommand::Show { netuid } => show(&target, netuid),
        SubnetCommand::Create {
            from,
            mechanism,
            tempo,
            max_neurons,
            immunity_period,
            difficulty,
            weights_rate_limit,
            reveal_delay,
            reveal_window,
            no_commit_reveal,
        } => {
            if netuid != 0 {
                anyhow::bail!("--netuid {netuid}: create opens the next netuid itself: drop --netuid");
            }
            let fee = fee.as_deref().map(crate::tx_cmd::parse_tokens).transpose()?;
            // The parameters are checked against the chain's rules before anything is signed.
            let genesis = block_on(async { Ok(Chain::connect(&target).await?.genesis.config) })?;
            let base = SubnetParams::of_genesis(&genesis);
            let commit_reveal = match (reveal_delay, reveal_window) {
                (Some(reveal_delay), Some(reveal_window)) => {
                    Some(CommitRevealConfig { reveal_delay, reveal_window })
                }
                _ if no_commit_reveal => None,
                _ => base.commit_reveal.clone(),
            };
            let params = SubnetParams {
                mechanism: mechanism.unwrap_or(base.mechanism),
                tempo: tempo.unwrap_or(base.tempo),
                max_neurons: max_neurons.unwrap_or(base.max_neurons),
                immunity_period: immunity_period.unwrap_or(base.immunity_period),
                difficulty: difficulty.unwrap_or(base.difficulty),
                weights_rate_limit: weights_rate_limit.unwrap_or(base.weights_rate_limit),
                commit_reveal,
            };
            params.config(&genesis).map_err(|e| anyhow::anyhow!("subnet parameters refused: {e}"))?;
            let cost = genesis.subnets.creation_cost;
            println!(
                "creating a subnet ({}, tempo {}): burns {}",
                params.mechanism,
                params.tempo,
                format_tokens(cost)
            );
            let keys = Keys::new(&wallet_dir, &from, None)?;
            let owner = keys.coldkey;
            send(&target, fee, &password, keys, Some(Call::CreateSubnet { params }), 0, None)?;
            block_on(async {
                let chain = Chain::connect(&target).await?;
                let subnets = chain.client.subnets().await?;
                let mine = subnets
                    .iter()
                    .rev()
                    .find(|s| s.owner == Some(owner))
                    .context("the new subnet is not listed")?;
                println!("created subnet {} (owner {owner})", mine.netuid);
                Ok(())
            })
        }
    }
}

fn list(target: &ChainArgs) -> Result<()> {
    block_on(async {
        let chain = Chain::connect(target).await?;
        let subnets = chain.client.subnets().await?;
        let total: u128 = subnets.iter().map(|s| s.stake).sum();
        println!("{} subnets on chain {}", subnets.len(), chain.id());
        println!(
            "{:>6} {:<12} {:>6} {:>7} {:>22} {:>7} {:>12}  OWNER",
            "NETUID", "MECHANISM", "TEMPO", "N", "STAKE", "SHARE", "DIFFICULTY"
        );
        for s in &subnets {
            println!(
                "{:>6} {:<12} {:>6} {:>7} {:>22} {:>7} {:>12}  {}",
                s.netuid,
                s.params.mechanism,
                s.params.tempo,
                format!("{}/{}", s.n, s.params.max_neurons),
                format_tokens_u128(s.stake),
                share(s, total),
                s.difficulty,
                s.owner.map_or_else(|| "genesis".to_string(), |o| o.to_string())
            );
        }
        println!("each block's emission is split by STAKE (all of it to netuid 0 when no subnet has stake)");
        Ok(())
    })
}

/// A subnet's share of each block's emission, as a percentage.
fn share(s: &SubnetSummary, total: u128) -> String {
    if total == 0 {
        return if s.netuid == 0 { "100%".into() } else { "0%".into() };
    }
    format!("{:.1}%", s.stake as f64 / total as f64 * 100.0)
}

fn show(target: &ChainArgs, netuid: u16) -> Result<()> {
    block_on(async {
        let chain = Chain::connect(target).await?;
        let s = chain.subnet(netuid).await?;
        let p = &s.params;
        println!("subnet {} on chain {}", s.netuid, chain.id());
        match s.owner {
            Some(o) => println!("owner {o}, created at block {}", s.created_at),
            None => println!("the genesis network"),
        }
        println!("mechanism {}, tempo {}", p.mechanism, p.tempo);
        println!("neurons {} of {}, immunity period {} blocks", s.n, p.max_neurons, p.immunity_period);
        println!("difficulty {}, registration burn {}", s.difficulty, format_tokens(s.burn));
        println!("weights rate limit {} blocks", p.weights_rate_limit);
        match &p.commit_reveal {
            Some(cr) => println!(
                "commit-reveal on: reveal after {} blocks, within {}",
                cr.reveal_delay, cr.reveal_window
            ),
            None => println!("commit-reveal off"),
        }
        println!("registered stake {}", format_tokens_u128(s.stake));
        let last = match s.last_epoch_block {
            0 => "no epoch yet".to_string(),
            h => format!("last epoch at block {h}"),
        };
        println!("emission pending {} (paid at its next epoch; {last})", format_tokens(s.emission_pending));
        Ok(())
    })
}
