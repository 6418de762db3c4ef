//! `agora metagraph`: the network as the chain's last epoch describes it, one row per neuron,
//! in the columns of the bittensor metagraph (S, R, T, C, I, D, VT, E, validator permit,
//! activity and the endpoint).

use anyhow::{bail, Result};
use clap::Args;
use client::MetagraphInfo;

use crate::tx_cmd::{block_on, format_tokens, Chain, ChainArgs};

#[derive(Debug, Args)]
pub struct MetagraphArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// The height to show [default: the latest block]; a past height is rebuilt by the node
    /// replaying its blocks (at most 100,000), a future one is refused
    #[arg(long, value_name = "N")]
    block: Option<u64>,
    /// Print the whole metagraph (weights and bonds included) as JSON, with the chain id and
    /// the mechanism, instead of the table
    #[arg(long)]
    json: bool,
    /// The subnet to show (`agora subnet list`); 0 is the genesis network. Past blocks are
    /// kept for netuid 0 only
    #[arg(long, value_name = "NETUID", default_value_t = 0)]
    netuid: u16,
}

/// Runs `agora metagraph`.
pub fn run(args: MetagraphArgs) -> Result<()> {
    block_on(async {
        let chain = Chain::connect(&args.chain).await?;
        let netuid = args.netuid;
        if netuid != 0 && args.block.is_some() {
            bail!("--block with --netuid {netuid}: past metagraphs are kept for netuid 0 only");
        }
        // A subnet's own mechanism and tempo; the genesis' for netuid 0.
        let (mg, mechanism, tempo) = if netuid == 0 {
            let cfg = &chain.genesis.config;
            (chain.client.metagraph(args.block).await?, cfg.mechanism.name().to_string(), cfg.tempo)
        } else {
            let s = chain.subnet(netuid).await?;
            (chain.client.subnet_metagraph(netuid).await?, s.params.mechanism, s.params.tempo)
        };
        let mechanism = mechanism.as_str();
        if args.json {
            let mut v = serde_json::to_value(&mg)?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("chain_id".into(), chain.id().into());
                obj.insert("mechanism".into(), mechanism.into());
                obj.insert("netuid".into(), netuid.into());
                // The keys again as SS58 addresses (the ledger's JSON has them in hex).
                let ss58 = |keys: &[ledger::PublicKey]| keys.iter().map(|k| k.to_ss58()).collect::<Vec<_>>();
                obj.insert("hotkeys_ss58".into(), ss58(&mg.hotkeys).into());
                obj.insert("coldkeys_ss58".into(), ss58(&mg.coldkeys).into());
            }
            write_out(&format!("{}\n", serde_json::to_string_pretty(&v)?))
        } else {
            let cfg = &chain.genesis.config;
            let last = last_epoch_height(mg.block, tempo);
            // The block's own report says whether the epoch paid; a node that cannot serve the
            // block (pruned, or an older node) still gets the heights.
            // (Blocks report netuid 0's epoch only.)
            let report = match last.filter(|_| netuid == 0) {
                Some(h) => chain.client.block(h).await.ok().and_then(|b| b.stored.epoch),
                None => None,
            };
            let lazy = cfg.emission_mode == ledger::EmissionMode::Lazy;
            let mut text = table(chain.id(), mechanism, &mg);
            if netuid != 0 {
                text.insert_str(0, &format!("subnet {netuid}  "));
            }
            let at = text.find('\n').map_or(text.len(), |i| i + 1);
            text.insert_str(at, &format!("{}\n", epoch_line(mg.block, tempo, report.as_ref(), lazy)));
            write_out(&text)
        }
    })
}

/// Writes to stdout; a closed pipe (`agora metagraph | head`) is the reader's choice, not an
/// error, where `print!` would panic.
fn write_out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The text table: a header line, the column names, one line per uid.
fn table(chain_id: &str, mechanism: &str, mg: &MetagraphInfo) -> String {
    // Saturating: a node's numbers are input, and a bad answer must not panic the CLI.
    let issuance = (u128::from(mg.issuance.genesis) + mg.issuance.minted).saturating_sub(mg.issuance.burned);
    // Sparsity of W at the last epoch, what adaptive inflation steers tau by.
    let sparsity = mg.sparsity.map_or("-".to_string(), |s| format!("{s:.4}"));
    let mut out = format!(
        "chain {chain_id}  block {}  n {}  mechanism {mechanism}  difficulty {}  burn {}  issuance {}  tau {}/block  sparsity {sparsity}\n",
        mg.block,
        mg.n,
        mg.difficulty,
        format_tokens(mg.burn),
        crate::tx_cmd::format_tokens_u128(issuance),
        format_tokens(mg.tau),
    );
    out += &format!(
        "{:>5}  {:<12}  {:>16}  {:>7}  {:>8}  {:>8}  {:>9}  {:>9}  {:>9}  {:>8}  {:>14}  {:>3}  {:>6}  {:<32}  {}\n",
        "UID",
        "HOTKEY",
        "STAKE",
        "TAKE",
        "RANK",
        "TRUST",
        "CONSENSUS",
        "INCENTIVE",
        "DIVIDENDS",
        "VT",
        "EMISSION",
        "VAL",
        "ACTIVE",
        "MODEL (VERSION/STEP @ BLOCK)",
        "ENDPOINT"
    );
    for uid in 0..mg.n as usize {
        // The vectors are all n long (the node builds them from one neuron table); `get` keeps a
        // malformed answer from panicking.
        let f = |v: &Vec<f64>| v.get(uid).copied().map_or(f64::NAN, shown);
        // btcli's marks: `*` for a validator permit, 1/0 for active; `-` from a node without them.
        let flag = |v: &Vec<bool>, yes: &'static str, no: &'static str| match v.get(uid) {
            Some(&b) => {
                if b {
                    yes
                } else {
                    no
                }
            }
            None => "-",
        };
        // The SS58 address's first ten characters, as btcli shortens hotkeys.
        let hotkey = mg.hotkeys.get(uid).map(|k| k.to_ss58()).unwrap_or_default();
        let short = format!("{}..", &hotkey[..hotkey.len().min(10)]);
        let endpoint = match mg.endpoints.get(uid).copied().flatten() {
            Some(e) => {
                let modality =
                    serde_json::to_value(e.modality).ok().and_then(|v| v.as_str().map(String::from));
                let ip = std::net::IpAddr::from(e.ip);
                let host = if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() };
                format!("{host}:{} grpc {}", e.port, modality.unwrap_or_default())
            }
            None => "-".into(),
        };
        let model = model_cell(mg, uid);
        // The owner's take of what the stake earns (delegation); `-` from a node without it.
        let take = mg.take.get(uid).map_or("-".to_string(), |&t| {
            crate::tx_cmd::format_take(ledger::delegation::take_from_fraction(t).unwrap_or(0))
        });
        out += &format!(
            "{uid:>5}  {short:<12}  {:>16}  {take:>7}  {:>8.5}  {:>8.5}  {:>9.5}  {:>9.5}  {:>9.5}  {:>8.5}  {:>14}  {:>3}  {:>6}  {model:<32}  {endpoint}\n",
            format_tokens(mg.S.get(uid).copied().unwrap_or(0)),
            f(&mg.R),
            f(&mg.T),
            f(&mg.C),
            f(&mg.I),
            f(&mg.D),
            f(&mg.VT),
            format_tokens(mg.E.get(uid).copied().unwrap_or(0)),
            flag(&mg.validator_permit, "*", ""),
            flag(&mg.active, "1", "0"),
        );
    }
    out
}

/// The model version a neuron last published (issue 16): the first 12 hex digits of the
/// version, its step and the block that recorded it; `-` before its first publication.
fn model_cell(mg: &MetagraphInfo, uid: usize) -> String {
    match mg.models.get(uid).copied().flatten() {
        Some(m) => format!("{}/{} @ {}", &m.version.to_hex()[..12], m.step, m.published_at),
        None => "-".into(),
    }
}

/// The height of the last epoch at or before `block` (epochs run at the multiples of `tempo`;
/// height 0 is genesis, where none runs).
fn last_epoch_height(block: u64, tempo: u64) -> Option<u64> {
    let last = block.checked_div(tempo)? * tempo;
    (last > 0).then_some(last)
}

/// Why the table shows what it shows: when the last epoch ran and what it paid, when the next
/// one comes. A table of zeros is otherwise unexplained (no epoch yet, or one that withheld).
fn epoch_line(block: u64, tempo: u64, report: Option<&ledger::EpochReport>, lazy: bool) -> String {
    let next = (block / tempo.max(1) + 1) * tempo.max(1);
    let Some(last) = last_epoch_height(block, tempo) else {
        return format!(
            "no epoch yet: the scores below are zero until the first, at block {next} (every {tempo} blocks)"
        );
    };
    let outcome = match report {
        None => String::new(),
        Some(r) => match &r.error {
            Some(e) => format!(": the mechanism refused its input, nothing was minted ({e})"),
            None if r.withheld => ": it paid nothing (no weights set yet, no consensus among them, or the mechanism withholding)".into(),
            None if r.minted > 0 => format!(": it minted {}", format_tokens(r.minted)),
            None if lazy => ": it ran (lazy emission: tokens are minted when stake is paid out)".into(),
            None => ": it minted nothing (the issuance cap is reached)".into(),
        },
    };
    format!("last epoch at block {last}{outcome}; the next at block {next} (every {tempo} blocks)")
}

/// A score as the table shows it (five decimals): rounding noise below that (a -1e-12 left by
/// a normalisation, or -0.0) prints as 0.00000, not -0.00000.
fn shown(x: f64) -> f64 {
    if x.abs() < 5e-6 {
        0.0
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_line_says_when_and_what_the_last_epoch_paid() {
        let report = |minted, withheld, error: Option<&str>| ledger::EpochReport {
            height: 20,
            mechanism: "yuma".into(),
            n: 3,
            minted,
            withheld,
            error: error.map(String::from),
        };
        assert_eq!(
            epoch_line(7, 10, None, false),
            "no epoch yet: the scores below are zero until the first, at block 10 (every 10 blocks)"
        );
        assert_eq!(
            epoch_line(25, 10, Some(&report(5_000_000_000, false, None)), false),
            "last epoch at block 20: it minted 5; the next at block 30 (every 10 blocks)"
        );
        assert!(
            epoch_line(20, 10, Some(&report(0, true, None)), false).contains("it paid nothing (no weights")
        );
        assert!(epoch_line(20, 10, Some(&report(0, false, Some("NaN in W"))), false)
            .contains("refused its input"));
        assert!(epoch_line(29, 10, Some(&report(0, false, None)), true).contains("lazy emission"));
        assert_eq!(
            epoch_line(29, 10, None, false),
            "last epoch at block 20; the next at block 30 (every 10 blocks)"
        );
        assert_eq!(last_epoch_height(5, 0), None, "a zero tempo is not a division by zero");
    }

    #[test]
    fn scores_round_to_zero_without_a_sign() {
        for x in [-0.0, -1e-12, -4.9e-6, 1e-9] {
            assert_eq!(format!("{:.5}", shown(x)), "0.00000", "{x}");
        }
        assert_eq!(format!("{:.5}", shown(-0.25)), "-0.25000");
        assert_eq!(format!("{:.5}", shown(0.5)), "0.50000");
        assert!(shown(f64::NAN).is_nan());
    }
}
