//! `agora metagraph`: the network as the chain's last epoch describes it, one row per neuron,
//! in the columns of the bittensor metagraph (S, R, T, C, I, D, VT, E, validator permit,
//! activity and the endpoint).

use anyhow::Result;
use clap::Args;
use client::MetagraphInfo;

use crate::tx_cmd::{block_on, format_tokens, Chain, DEFAULT_CHAIN};

#[derive(Debug, Args)]
pub struct MetagraphArgs {
    /// The node's JSON-RPC URL (http:// or ws://)
    #[arg(long, value_name = "URL", env = "AGORA_CHAIN", default_value = DEFAULT_CHAIN)]
    chain: String,
    /// The height to show [default: the latest block]; a past height is rebuilt by the node
    /// replaying its blocks (at most 100,000), a future one is refused
    #[arg(long, value_name = "N")]
    block: Option<u64>,
    /// Print the whole metagraph (weights and bonds included) as JSON, with the chain id and
    /// the mechanism, instead of the table
    #[arg(long)]
    json: bool,
}

/// Runs `agora metagraph`.
pub fn run(args: MetagraphArgs) -> Result<()> {
    block_on(async {
        let chain = Chain::connect(&args.chain).await?;
        let mg = chain.client.metagraph(args.block).await?;
        let mechanism = chain.genesis.config.mechanism.name();
        if args.json {
            let mut v = serde_json::to_value(&mg)?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("chain_id".into(), chain.id().into());
                obj.insert("mechanism".into(), mechanism.into());
            }
            write_out(&format!("{}\n", serde_json::to_string_pretty(&v)?))
        } else {
            write_out(&table(chain.id(), mechanism, &mg))
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
    let mut out = format!(
        "chain {chain_id}  block {}  n {}  mechanism {mechanism}  difficulty {}  issuance {}\n",
        mg.block,
        mg.n,
        mg.difficulty,
        crate::tx_cmd::format_tokens_u128(issuance)
    );
    out += &format!(
        "{:>5}  {:<12}  {:>16}  {:>8}  {:>8}  {:>9}  {:>9}  {:>9}  {:>8}  {:>14}  {:>3}  {:>6}  {:<32}  {}\n",
        "UID",
        "HOTKEY",
        "STAKE",
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
        let f = |v: &Vec<f64>| v.get(uid).copied().unwrap_or(f64::NAN);
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
        let hotkey = mg.hotkeys.get(uid).map(|k| k.to_hex()).unwrap_or_default();
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
        out += &format!(
            "{uid:>5}  {short:<12}  {:>16}  {:>8.5}  {:>8.5}  {:>9.5}  {:>9.5}  {:>9.5}  {:>8.5}  {:>14}  {:>3}  {:>6}  {model:<32}  {endpoint}\n",
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
