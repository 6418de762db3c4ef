//! `agora node`: parses the flags, opens the data directory, prints, and runs `node::Node`
//! until Ctrl-C or SIGTERM.

use ledger::{dev_key, public_key, GenesisConfig, UNITS_PER_TOKEN};
use node::server::RpcLimits;
use node::{chain_dir, Node, NodeConfig, NodeError, Production, DEV_ACCOUNTS, DEV_BALANCE};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `agora node` options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NodeArgs {
    /// Run a single-validator development chain from the dev genesis (funded, insecure keys)
    #[arg(long, conflicts_with = "genesis")]
    pub dev: bool,
    /// Run the chain of this genesis file (JSON, `ledger::GenesisConfig`): its single validator, or
    /// one of its validators with --validator-key
    #[arg(long, value_name = "FILE")]
    pub genesis: Option<PathBuf>,
    /// Where the chain is stored (reused on restart). A new chain starts only in a missing or
    /// empty directory, or with --new-chain
    #[arg(long, value_name = "DIR", default_value = "agora-data")]
    pub data_dir: PathBuf,
    /// Milliseconds between blocks (empty blocks included). A validator waits this long after
    /// the parent block before proposing; the engine may take longer
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub block_time_ms: u64,
    /// Produce a block as soon as transactions wait, and no empty blocks (for tests)
    #[arg(long, conflicts_with = "block_time_ms")]
    pub instant: bool,
    /// Address of JSON-RPC (HTTP and WebSocket) and GET /metrics; port 0 picks a free port
    /// (the default port is Agora's own, not subtensor's 9944, so a client never reaches the
    /// other chain by accident)
    #[arg(long, default_value = "127.0.0.1:9960")]
    pub rpc_addr: SocketAddr,
    /// Write the bound RPC address (IP:PORT) to this file once the node listens, for scripts
    /// and tests that start it on port 0
    #[arg(long, value_name = "FILE")]
    pub rpc_addr_file: Option<PathBuf>,
    /// Most transactions the mempool holds; submissions beyond are refused
    #[arg(long, default_value_t = 10_000)]
    pub mempool_size: usize,
    /// Start a new chain although the data directory exists. Never replaces a readable chain;
    /// an unreadable chain.redb is kept as chain.redb.unreadable-TIME
    #[arg(long)]
    pub new_chain: bool,
    /// How many blocks back agora_metagraph serves past heights (a state checkpoint is kept
    /// every epoch for as long)
    #[arg(long, default_value_t = 10_000)]
    pub history_blocks: u64,
    /// A JSON file `agora localnet` rewrites each block (peers' names and roles, the judge's
    /// values, the running Spearman), served read-only as agora_localnet for the dashboard
    #[arg(long, value_name = "FILE")]
    pub localnet_file: Option<PathBuf>,
    /// Run as one of the genesis' validators with this key: a wallet hotkey file
    /// (`~/.agora/wallets/NAME/hotkeys/HOTKEY`) whose public key is in the genesis'
    /// `validators`. Blocks are then ordered and finalized by the consensus engine among the
    /// validators instead of produced here
    #[arg(long, value_name = "FILE", requires = "peers", conflicts_with_all = ["dev", "instant"], help_heading = "Validator network")]
    pub validator_key: Option<PathBuf>,
    /// The other validators, comma-separated: KEY@HOST:PORT, KEY their public key in hex as in
    /// the genesis, HOST:PORT their --p2p-addr
    #[arg(long, value_name = "KEY@ADDR,...", value_delimiter = ',', value_parser = parse_peer, requires = "validator_key", help_heading = "Validator network")]
    pub peers: Vec<(ledger::PublicKey, SocketAddr)>,
    /// Where this validator listens for the others (authenticated, encrypted connections)
    #[arg(long, default_value = "0.0.0.0:9945", help_heading = "Validator network")]
    pub p2p_addr: SocketAddr,
    /// Most RPC connections at once, HTTP and WebSocket
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..), help_heading = "RPC limits")]
    pub rpc_max_connections: u32,
    /// Most RPC connections at once from one IP address
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..), help_heading = "RPC limits")]
    pub rpc_max_connections_per_ip: u32,
    /// Most WebSocket connections at once (counted apart, so subscriptions cannot take every slot)
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..), help_heading = "RPC limits")]
    pub rpc_max_ws: u32,
    /// Most WebSocket connections at once from one IP address
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..), help_heading = "RPC limits")]
    pub rpc_max_ws_per_ip: u32,
    /// Seconds a client has to send a request's headers, and again its body; an idle keep-alive
    /// connection is closed after as long
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..), help_heading = "RPC limits")]
    pub rpc_request_timeout_secs: u64,
    /// Seconds a WebSocket may stay open with no subscription and no call
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..), help_heading = "RPC limits")]
    pub rpc_ws_idle_secs: u64,
    /// Most agora_metagraph calls at a past height running at once (each rebuilds a state);
    /// others wait up to 10 s, then get error -33016
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..), help_heading = "RPC limits")]
    pub rpc_max_historical: u32,
}

impl NodeArgs {
    /// The node's configuration from the flags.
    pub(crate) fn config(&self, genesis: GenesisConfig) -> NodeConfig {
        let defaults = RpcLimits::for_genesis(&genesis);
        let rpc_limits = RpcLimits {
            max_connections: self.rpc_max_connections as usize,
            max_connections_per_ip: self.rpc_max_connections_per_ip as usize,
            max_ws: self.rpc_max_ws as usize,
            max_ws_per_ip: self.rpc_max_ws_per_ip as usize,
            request_timeout: Duration::from_secs(self.rpc_request_timeout_secs),
            ws_idle_timeout: Duration::from_secs(self.rpc_ws_idle_secs),
            max_historical: self.rpc_max_historical as usize,
            ..defaults
        };
        let production = match self.instant {
            true => Production::Instant,
            false => Production::Interval(Duration::from_millis(self.block_time_ms)),
        };
        NodeConfig {
            rpc_addr: self.rpc_addr,
            production,
            mempool_size: self.mempool_size,
            history_blocks: self.history_blocks,
            localnet_file: self.localnet_file.clone(),
            rpc_limits,
            ..NodeConfig::new(genesis)
        }
    }
}

/// `KEY@HOST:PORT`.
fn parse_peer(s: &str) -> Result<(ledger::PublicKey, SocketAddr), String> {
    let (key, addr) = s.split_once('@').ok_or_else(|| format!("{s:?}: expected KEY@HOST:PORT"))?;
    let key = key.parse().map_err(|e| format!("{key:?}: not a public key: {e}"))?;
    let addr = addr.parse().map_err(|e| format!("{addr:?}: not an address: {e}"))?;
    Ok((key, addr))
}

/// The validator the arguments name, if any: its key from the hotkey file, its journal under
/// the data directory.
pub(crate) fn validator_of(args: &NodeArgs) -> anyhow::Result<Option<node::ValidatorConfig>> {
    let Some(file) = &args.validator_key else { return Ok(None) };
    let key = wallet::read_hotkey_file(file)
        .map_err(|e| anyhow::anyhow!("--validator-key {}: {e}", file.display()))?;
    Ok(Some(node::ValidatorConfig {
        timeouts: bft::Timeouts::paced(Duration::from_millis(args.block_time_ms)),
        ..node::ValidatorConfig::new(
            key.to_bytes(),
            args.p2p_addr,
            args.peers.clone(),
            args.data_dir.join("consensus"),
        )
    }))
}

/// The genesis the arguments name: the dev genesis for `--dev`, else the `--genesis` file.
pub(crate) fn genesis_of(args: &NodeArgs) -> Result<GenesisConfig, NodeError> {
    if args.dev {
        return Ok(node::dev_genesis());
    }
    let path = args.genesis.as_ref().ok_or(NodeError::NoGenesis)?;
    let bad = |reason: String| NodeError::GenesisFile { path: path.clone(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    // `from_json` also validates (supply, mechanism parameters, limits).
    GenesisConfig::from_json(&text).map_err(|e| bad(e.to_string()))
}

/// Runs the node until Ctrl-C or SIGTERM; the block being produced is finished first.
pub(crate) fn run(args: NodeArgs) -> anyhow::Result<()> {
    // Before starting anything: a bad genesis file is a usage error.
    let genesis = genesis_of(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| NodeError::Runtime(e.to_string()))?;
    rt.block_on(run_async(args, genesis))
}

async fn run_async(args: NodeArgs, genesis: GenesisConfig) -> anyhow::Result<()> {
    // Installed before anything prints: a signal sent right after the address is printed must
    // stop the node cleanly, not kill it.
    let shutdown = shutdown_signal();
    let (ledger, opened) = chain_dir::open(&args.data_dir, genesis.clone(), args.new_chain)?;
    let head = ledger.head();
    println!("agora node: chain {} (genesis {})", ledger.chain_id(), ledger.genesis().hash());
    println!("data directory: {}", args.data_dir.display());
    match opened {
        chain_dir::Opened::Resumed => {
            println!("resuming at height {} (state root {}), store checked", head.height, head.state_root)
        }
        chain_dir::Opened::Started => println!("new chain at height 0 (state root {})", head.state_root),
        chain_dir::Opened::StartedOver { kept } => println!(
            "new chain at height 0 (state root {}); the unreadable chain file was kept as {}",
            head.state_root,
            kept.display()
        ),
    }
    if args.dev {
        println!(
            "funded dev accounts ({} tokens each). INSECURE: their secret keys derive from the",
            DEV_BALANCE / UNITS_PER_TOKEN
        );
        println!("  names (ledger::dev_key), so anyone can spend them; use them on dev chains only:");
        for name in DEV_ACCOUNTS {
            println!("  {name:<8} {}", public_key(&dev_key(name)));
        }
    }
    let validator = validator_of(&args)?;
    let validators = genesis.validators.len();
    let config = NodeConfig { validator, ..args.config(genesis) };
    let handle = Node::start(config, ledger.into_store()).await?;
    let addr = handle.addr();
    println!("rpc listening on http://{addr} (WebSocket: ws://{addr}, metrics: http://{addr}/metrics)");
    if let Some(file) = &args.rpc_addr_file {
        // Written whole under another name, then renamed: a reader never sees half an address.
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, addr.to_string()).and_then(|()| std::fs::rename(&tmp, file))?;
    }
    match (&config_validator_key(&args), args.instant) {
        (Some(key), _) => println!(
            "validator {key} of {validators}: a block every {} ms at most, final when the consensus engine says so; p2p on {}, peers {}",
            args.block_time_ms,
            args.p2p_addr,
            args.peers.iter().map(|(k, a)| format!("{k}@{a}")).collect::<Vec<_>>().join(",")
        ),
        (None, true) => println!("producing a block as soon as transactions arrive (instant mode)"),
        (None, false) => println!("producing a block every {} ms", args.block_time_ms),
    }
    let head = handle.run_until(shutdown).await?;
    println!("stopped at height {} (state root {})", head.height, head.state_root);
    Ok(())
}

/// The public key of `--validator-key`, for the start message.
fn config_validator_key(args: &NodeArgs) -> Option<ledger::PublicKey> {
    let file = args.validator_key.as_ref()?;
    wallet::read_hotkey_file(file).ok().map(|k| ledger::public_key(&k))
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled: a signal sent right after the node printed its address
/// must stop it cleanly, not kill it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        node: NodeArgs,
    }

    fn args(a: &[&str]) -> NodeArgs {
        Cli::try_parse_from(std::iter::once("node").chain(a.iter().copied())).expect("parses").node
    }

    #[test]
    fn the_chain_comes_from_dev_or_a_genesis_file() {
        assert_eq!(genesis_of(&args(&["--dev"])).unwrap(), GenesisConfig::dev(&DEV_ACCOUNTS, DEV_BALANCE));
        assert!(matches!(genesis_of(&args(&[])), Err(NodeError::NoGenesis)));
        let dir = std::env::temp_dir().join(format!("agora-node-genesis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("genesis.json");
        let mut g = GenesisConfig::dev(&["zed"], 7);
        g.chain_id = "agora-test".into();
        std::fs::write(&file, g.to_json_pretty()).unwrap();
        let path = file.to_str().unwrap();
        assert_eq!(genesis_of(&args(&["--genesis", path])).unwrap(), g);
        std::fs::write(&file, "{").unwrap();
        assert!(matches!(genesis_of(&args(&["--genesis", path])), Err(NodeError::GenesisFile { .. })));
        assert!(Cli::try_parse_from(["node", "--dev", "--genesis", path]).is_err(), "one chain at a time");
        assert!(Cli::try_parse_from(["node", "--dev", "--instant", "--block-time-ms", "5"]).is_err());
        assert!(Cli::try_parse_from(["node", "--dev", "--block-time-ms", "0"]).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn validator_flags_are_parsed_or_refused_with_the_reason() {
        let key = ledger::public_key(&ledger::dev_key("v1"));
        let a = args(&[
            "--genesis",
            "g.json",
            "--validator-key",
            "k",
            "--peers",
            &format!("{key}@127.0.0.1:9000"),
        ]);
        assert_eq!(a.peers, vec![(key, "127.0.0.1:9000".parse().unwrap())]);
        assert!(parse_peer("127.0.0.1:9000").unwrap_err().contains("KEY@HOST:PORT"));
        assert!(parse_peer(&format!("{key}@nowhere")).unwrap_err().contains("not an address"));
        assert!(parse_peer("zz@127.0.0.1:1").unwrap_err().contains("not a public key"));
        assert!(
            Cli::try_parse_from(["node", "--genesis", "g", "--validator-key", "k"]).is_err(),
            "peers needed"
        );
        assert!(Cli::try_parse_from(["node", "--dev", "--validator-key", "k", "--peers", "x"]).is_err());
        let missing = validator_of(&args(&[
            "--genesis",
            "g",
            "--validator-key",
            "/nonexistent",
            "--peers",
            &format!("{key}@127.0.0.1:1"),
        ]));
        assert!(missing.unwrap_err().to_string().contains("--validator-key /nonexistent"));
    }

    #[test]
    fn flags_reach_the_config() {
        let c = args(&["--dev", "--instant", "--mempool-size", "7", "--rpc-max-ws", "3"])
            .config(node::dev_genesis());
        assert_eq!(c.production, Production::Instant);
        assert_eq!((c.mempool_size, c.rpc_limits.max_ws), (7, 3));
        let d = args(&["--dev"]).config(node::dev_genesis());
        assert_eq!(d.production, Production::Interval(Duration::from_millis(1000)));
        assert_eq!(
            d.rpc_limits.max_request_bytes,
            RpcLimits::for_genesis(&node::dev_genesis()).max_request_bytes
        );
    }
}
