//! The child processes of a run: one `agora node`, one `agora peer run` per peer. Every child
//! is killed when its handle drops, so an error or a panic never leaves a process behind;
//! the orderly path asks first (SIGTERM) and waits.

use crate::error::LocalnetError;
use crate::scenario::{PeerSpec, Role};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Checks that a scenario's dataset resolves (`nucleus::Corpus::resolve`: `+`-separated
/// fortunes topics or paths), so a typo fails before any process starts. The peer process
/// resolves the same text the same way.
pub fn check_dataset(spec: &str) -> Result<(), LocalnetError> {
    nucleus::Corpus::resolve(spec)
        .map(|_| ())
        .map_err(|e| LocalnetError::Dataset { topic: spec.into(), reason: e.to_string() })
}

/// How long a node process may take to write its RPC address (it opens its store first).
const NODE_LISTENS_WITHIN: Duration = Duration::from_secs(60);

/// Sends SIGTERM to `pid` through the system's `kill` (no unsafe code, no libc binding).
fn sigterm(pid: u32) -> bool {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits for `child` to exit for at most `timeout`; `true` if it did.
fn wait_timeout(child: &mut Child, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(25)),
            _ => return false,
        }
    }
}

/// A running `agora node`, its output in its log file.
pub struct NodeProcess {
    child: Option<Child>,
    /// `127.0.0.1:PORT` of its JSON-RPC.
    pub addr: String,
}

impl NodeProcess {
    /// `AGORA node --genesis GENESIS --data-dir DATA --block-time-ms T --rpc-addr 127.0.0.1:0`,
    /// waiting (up to 60 s) for the bound address, which the node writes to `--rpc-addr-file`
    /// (LOG with the extension `addr`).
    pub fn spawn(
        agora: &Path,
        genesis: &Path,
        data_dir: &Path,
        block_time_ms: u64,
        log: &Path,
    ) -> Result<NodeProcess, LocalnetError> {
        let args: Vec<std::ffi::OsString> = vec![
            "--genesis".into(),
            genesis.into(),
            "--data-dir".into(),
            data_dir.into(),
            "--block-time-ms".into(),
            block_time_ms.to_string().into(),
            // The dashboard's localnet panel (crate::monitor::write_dashboard).
            "--localnet-file".into(),
            data_dir.with_file_name(crate::monitor::DASHBOARD_FILE).into(),
        ];
        NodeProcess::spawn_with(agora, &args, log)
    }

    /// `AGORA node --rpc-addr 127.0.0.1:0 ARGS...`, as [`NodeProcess::spawn`].
    pub fn spawn_with(
        agora: &Path,
        args: &[std::ffi::OsString],
        log: &Path,
    ) -> Result<NodeProcess, LocalnetError> {
        let log_file = std::fs::File::create(log).map_err(|e| LocalnetError::io(log, e))?;
        let err_log = log_file.try_clone().map_err(|e| LocalnetError::io(log, e))?;
        let addr_file = log.with_extension("addr");
        let _ = std::fs::remove_file(&addr_file);
        let child = Command::new(agora)
            .arg("node")
            .args(args)
            .args(["--rpc-addr", "127.0.0.1:0", "--rpc-addr-file"])
            .arg(&addr_file)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(err_log))
            // Its own process group: a Ctrl-C at the terminal reaches localnet only, which then
            // stops the peers before the node they depend on.
            .process_group(0)
            .spawn()
            .map_err(|source| LocalnetError::Spawn { program: agora.to_path_buf(), source })?;
        let mut node = NodeProcess { child: Some(child), addr: String::new() };
        let start = Instant::now();
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                node.addr = addr;
                return Ok(node);
            }
            if !node.running() || start.elapsed() > NODE_LISTENS_WITHIN {
                return Err(LocalnetError::NodeNotListening {
                    seconds: NODE_LISTENS_WITHIN.as_secs(),
                    log: log.to_path_buf(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The node's JSON-RPC over HTTP.
    pub fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The node's JSON-RPC over WebSocket (what peers connect to).
    pub fn ws(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, then SIGKILL after `timeout`. `Ok(true)`: it stopped on SIGTERM (the node
    /// finishes its block and exits cleanly).
    pub fn stop(&mut self, timeout: Duration) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        let clean = sigterm(child.id()) && wait_timeout(&mut child, timeout);
        if !clean {
            let _ = child.kill();
        }
        let _ = child.wait();
        clean
    }
}

impl Drop for NodeProcess {
    /// An error or an interruption before the orderly end: still let the node finish its block.
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// Everything a peer process needs to be started.
#[derive(Clone, Debug)]
pub struct PeerLaunch {
    /// The peer as the scenario describes it.
    pub spec: PeerSpec,
    /// The uid it registered at.
    pub uid: u16,
    /// The directory of its wallet (coldkey and hotkey).
    pub wallet_dir: PathBuf,
    /// WebSocket URL of the node.
    pub chain: String,
    /// Its output directory: status log, checkpoints, final report.
    pub out: PathBuf,
    /// Uids of the cabal (for a cabal member).
    pub cabal_uids: Vec<u16>,
    /// For [`Role::Offline`]: the block it leaves at.
    pub offline_at_block: u64,
    /// For [`Role::Copycat`]: the hotkey of the peer it copies.
    pub copy_of: Option<ledger::PublicKey>,
    /// Blocks between two of its `set_weights`.
    pub weights_interval: u64,
    /// The scenario's `copy_detection`: off adds `--no-copy-detection`.
    pub copy_detection: bool,
    /// Where the axon listens and the address it publishes instead (a fault-injecting proxy
    /// in front of it); `None`: a free port, published as bound.
    pub axon: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// The axon's competitive masking (`--competitive-masking T`); `None`: off.
    pub competitive_masking: Option<wire::MaskingConfig>,
}

/// The name of the hotkey every localnet wallet uses.
pub const HOTKEY: &str = "default";

/// The command line of a peer (after the binary): the one place that maps a role onto
/// `agora peer run` flags. It is
/// `peer run --wallet-dir D --wallet NAME --hotkey default --chain ws://127.0.0.1:PORT
/// --dataset PATH --out PEERDIR --role honest|noise|cabal|offline-at-block N
/// [--cabal-uids a,b] --model-size small|medium [--seed S] --weights-interval B
/// --axon-addr 127.0.0.1:0`; a duplicate runs as `honest` with its original's dataset, model
/// size and seed. The wallet's coldkey password is [`crate::setup::PASSWORD`].
pub fn peer_argv(l: &PeerLaunch) -> Result<Vec<String>, LocalnetError> {
    check_dataset(&l.spec.dataset)?;
    let role = match l.spec.role {
        // A duplicate runs as honest with its original's dataset, size and seed.
        Role::Honest | Role::Duplicate => vec!["honest".to_string()],
        Role::Noise => vec!["noise".to_string()],
        Role::Cabal => vec!["cabal".to_string()],
        Role::Lazy => vec!["lazy".to_string()],
        Role::Copycat => {
            let of = l.copy_of.ok_or_else(|| {
                LocalnetError::Scenario(format!(
                    "copycat {:?}: the hotkey of the peer it copies is unknown",
                    l.spec.name
                ))
            })?;
            vec!["copycat".to_string(), "--copy-of".to_string(), of.to_string()]
        }
        Role::Python => {
            return Err(LocalnetError::Scenario(format!(
                "{:?} is a Python peer: python_argv, not agora peer run, starts it",
                l.spec.name
            )))
        }
        Role::Offline => {
            vec!["offline".to_string(), "--offline-at-block".to_string(), l.offline_at_block.to_string()]
        }
    };
    let mut argv: Vec<String> = vec!["peer".into(), "run".into()];
    argv.extend(identity_args(l));
    argv.extend([
        "--dataset".into(),
        l.spec.dataset.clone(),
        "--out".into(),
        l.out.display().to_string(),
        "--role".into(),
    ]);
    argv.extend(role);
    if l.spec.role == Role::Cabal {
        let uids: Vec<String> = l.cabal_uids.iter().map(u16::to_string).collect();
        argv.extend(["--cabal-uids".into(), uids.join(",")]);
    }
    argv.extend(["--model-size".into(), l.spec.model_size.name().into()]);
    if let Some(seed) = l.spec.seed {
        argv.extend(["--seed".into(), seed.to_string()]);
    }
    if l.spec.pretrain_steps > 0 && l.spec.role != Role::Lazy {
        // The pretraining phase left the model in OUT/checkpoint; should it have failed, the
        // peer pretrains by itself before joining.
        argv.extend(["--pretrain-steps".into(), l.spec.pretrain_steps.to_string(), "--resume".into()]);
    }
    argv.extend(["--weights-interval".into(), l.weights_interval.to_string()]);
    if !l.copy_detection {
        argv.push("--no-copy-detection".into());
    }
    // A status row (one held-out evaluation) every few seconds: the report's loss curves.
    argv.extend(["--status-every".into(), "3".into()]);
    // The judge runs consumers from their checkpoints (fresh ones) and asks every axon with a
    // key no chain knows.
    argv.extend(["--checkpoint-every".into(), "50".into()]);
    argv.extend(["--trust-caller".into(), ledger::public_key(&crate::judging::judge_key()).to_string()]);
    match l.axon {
        Some((listen, announce)) => argv.extend([
            "--axon-addr".into(),
            listen.to_string(),
            "--announce-addr".into(),
            announce.to_string(),
        ]),
        None => argv.extend(["--axon-addr".into(), "127.0.0.1:0".into()]),
    }
    if let Some(m) = l.competitive_masking {
        argv.extend(["--competitive-masking".into(), m.temperature().to_string()]);
    }
    Ok(argv)
}

/// Who a peer is and which chain it joins, the same for a Rust and a Python peer:
/// `--wallet-dir D --wallet NAME --hotkey default --chain URL`.
fn identity_args(l: &PeerLaunch) -> [String; 8] {
    [
        "--wallet-dir".into(),
        l.wallet_dir.display().to_string(),
        "--wallet".into(),
        l.spec.name.clone(),
        "--hotkey".into(),
        HOTKEY.into(),
        "--chain".into(),
        l.chain.clone(),
    ]
}

/// The interpreter that runs Python peers: `AGORA_PYTHON`, else `python3` from the PATH. It
/// needs the package (`pip install ./python`) and torch.
pub fn python_interpreter() -> PathBuf {
    std::env::var_os("AGORA_PYTHON").map_or_else(|| PathBuf::from("python3"), PathBuf::from)
}

/// The data a Python peer reads, written into its directory: the train and held-out parts of
/// its dataset as `nucleus::Corpus::resolve` splits it for the Rust peers (`train.txt`,
/// `held_out.txt`). The test part stays out: only the judge reads it.
fn write_python_data(spec: &PeerSpec, dir: &Path) -> Result<(PathBuf, PathBuf), LocalnetError> {
    let corpus = nucleus::Corpus::resolve(&spec.dataset)
        .map_err(|e| LocalnetError::Dataset { topic: spec.dataset.clone(), reason: e.to_string() })?;
    std::fs::create_dir_all(dir).map_err(|e| LocalnetError::io(dir, e))?;
    let (train, held_out) = (dir.join("train.txt"), dir.join("held_out.txt"));
    std::fs::write(&train, &corpus.train).map_err(|e| LocalnetError::io(&train, e))?;
    std::fs::write(&held_out, &corpus.held_out).map_err(|e| LocalnetError::io(&held_out, e))?;
    Ok((train, held_out))
}

/// The command line of a Python peer (after the interpreter), the counterpart of
/// [`peer_argv`]: `-m agora.torch_peer run --wallet-dir D --wallet NAME --hotkey default
/// --chain ws://127.0.0.1:PORT --train PEERDIR/train.txt --held-out PEERDIR/held_out.txt
/// --out PEERDIR --model-size S [--seed S] [--pretrain-steps N] --weights-interval B
/// --status-every 3 --trust-caller JUDGE --axon-addr 127.0.0.1:0 --threads 1`. Writes the
/// data files.
pub fn python_argv(l: &PeerLaunch) -> Result<Vec<String>, LocalnetError> {
    let (train, held_out) = write_python_data(&l.spec, &l.out)?;
    let mut argv: Vec<String> = ["-m", "agora.torch_peer", "run"].map(String::from).to_vec();
    argv.extend(identity_args(l));
    argv.extend([
        "--train".into(),
        train.display().to_string(),
        "--held-out".into(),
        held_out.display().to_string(),
        "--out".into(),
        l.out.display().to_string(),
        "--model-size".into(),
        l.spec.model_size.name().into(),
    ]);
    if let Some(seed) = l.spec.seed {
        argv.extend(["--seed".into(), seed.to_string()]);
    }
    if l.spec.pretrain_steps > 0 {
        // Done before the node started (spawn_pretrain); the peer resumes its checkpoint.
        argv.extend(["--pretrain-steps".into(), l.spec.pretrain_steps.to_string()]);
    }
    argv.extend([
        "--weights-interval".into(),
        l.weights_interval.to_string(),
        "--status-every".into(),
        "3".into(),
    ]);
    argv.extend(["--trust-caller".into(), ledger::public_key(&crate::judging::judge_key()).to_string()]);
    argv.extend(["--axon-addr".into(), "127.0.0.1:0".into(), "--threads".into(), "1".into()]);
    Ok(argv)
}

/// A running peer.
pub struct PeerProcess {
    /// The peer's name in the scenario.
    pub name: String,
    child: Option<Child>,
}

impl PeerProcess {
    /// `AGORA peer run ...` with stdout and stderr into `OUT/peer.log`.
    /// A Python peer runs `AGORA_PYTHON -m agora.torch_peer run ...` instead ([`python_argv`]).
    pub fn spawn(agora: &Path, launch: &PeerLaunch) -> Result<PeerProcess, LocalnetError> {
        let mut cmd = if launch.spec.role == Role::Python {
            let mut c = Command::new(python_interpreter());
            c.args(python_argv(launch)?).env("OMP_NUM_THREADS", "1");
            c
        } else {
            let mut c = Command::new(agora);
            c.args(peer_argv(launch)?);
            c
        };
        let child = training_child(&mut cmd, &launch.out, "peer.log")?
            .spawn()
            .map_err(|e| LocalnetError::Peer { name: launch.spec.name.clone(), reason: e.to_string() })?;
        Ok(PeerProcess { name: launch.spec.name.clone(), child: Some(child) })
    }

    /// `None` while running, else its exit code (`Some(None)`: killed by a signal).
    pub fn exited(&mut self) -> Option<Option<i32>> {
        let c = self.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(status)) => Some(status.code()),
            _ => None,
        }
    }

    /// Asks it to stop (SIGTERM: it writes final.json and exits).
    pub fn terminate(&mut self) {
        if let Some(c) = &self.child {
            sigterm(c.id());
        }
    }

    /// Waits up to `timeout` after [`PeerProcess::terminate`], then kills. `true`: it exited
    /// by itself.
    pub fn wait_or_kill(&mut self, timeout: Duration) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        let clean = wait_timeout(&mut child, timeout);
        if !clean {
            let _ = child.kill();
        }
        let _ = child.wait();
        clean
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `agora peer pretrain` for one peer: its model trained alone into `out/checkpoint`, with
/// stdout and stderr in `out/pretrain.log`.
pub fn spawn_pretrain(agora: &Path, spec: &PeerSpec, out: &Path) -> Result<Child, LocalnetError> {
    check_dataset(&spec.dataset)?;
    if spec.role == Role::Python {
        return spawn_python_pretrain(spec, out);
    }
    let mut cmd = Command::new(agora);
    cmd.args(["peer", "pretrain", "--dataset"])
        .arg(&spec.dataset)
        .arg("--steps")
        .arg(spec.pretrain_steps.to_string())
        .arg("--out")
        .arg(out)
        .args(["--model-size", spec.model_size.name(), "--status-every", "5"]);
    if let Some(seed) = spec.seed {
        cmd.args(["--seed", &seed.to_string()]);
    }
    training_child(&mut cmd, out, "pretrain.log")?
        .spawn()
        .map_err(|e| LocalnetError::Peer { name: spec.name.clone(), reason: format!("pretraining: {e}") })
}

/// `AGORA_PYTHON -m agora.torch_peer pretrain` for a Python peer: its model trained alone into
/// `out/torch_checkpoint.pt`, which `run` resumes.
fn spawn_python_pretrain(spec: &PeerSpec, out: &Path) -> Result<Child, LocalnetError> {
    let (train, _) = write_python_data(spec, out)?;
    let mut cmd = Command::new(python_interpreter());
    cmd.args(["-m", "agora.torch_peer", "pretrain", "--train"])
        .arg(&train)
        .arg("--steps")
        .arg(spec.pretrain_steps.to_string())
        .arg("--out")
        .arg(out)
        .args(["--model-size", spec.model_size.name(), "--status-every", "5", "--threads", "1"])
        .env("OMP_NUM_THREADS", "1");
    if let Some(seed) = spec.seed {
        cmd.args(["--seed", &seed.to_string()]);
    }
    training_child(&mut cmd, out, "pretrain.log")?
        .spawn()
        .map_err(|e| LocalnetError::Peer { name: spec.name.clone(), reason: format!("pretraining: {e}") })
}

/// Readies `cmd`, an `agora` process that trains a model, to run beside the others: stdout
/// and stderr into `dir/log`, no stdin, its own process group (Ctrl-C reaches the localnet,
/// which stops it), and one thread for each of candle's pools. Eight peers share the cores:
/// candle's default pools (one thread per core in every process, one of them spinning) would
/// make each of them several times slower.
fn training_child<'a>(cmd: &'a mut Command, dir: &Path, log: &str) -> Result<&'a mut Command, LocalnetError> {
    std::fs::create_dir_all(dir).map_err(|e| LocalnetError::io(dir, e))?;
    let log_path = dir.join(log);
    let out = std::fs::File::create(&log_path).map_err(|e| LocalnetError::io(&log_path, e))?;
    let err = out.try_clone().map_err(|e| LocalnetError::io(&log_path, e))?;
    Ok(cmd
        .env("CANDLE_NUM_THREADS", "1")
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_onto_peer_run_flags() {
        let dir = std::env::temp_dir().join(format!("agora-localnet-argv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let entries: String = (0..30).map(|i| format!("fortune {i}\n%\n")).collect();
        std::fs::write(dir.join("topic"), entries).unwrap();
        let spec = crate::PeerSpec {
            name: "cabal-a".into(),
            role: Role::Cabal,
            model_size: crate::ModelSize::Tiny,
            dataset: dir.join("topic").display().to_string(),
            duplicate_of: None,
            seed: Some(7),
            pretrain_steps: 0,
        };
        let mut l = PeerLaunch {
            spec,
            uid: 6,
            wallet_dir: "/w".into(),
            chain: "ws://127.0.0.1:1".into(),
            out: "/o".into(),
            cabal_uids: vec![6, 7],
            offline_at_block: 250,
            copy_of: None,
            weights_interval: 10,
            copy_detection: true,
            axon: None,
            competitive_masking: None,
        };
        let argv = peer_argv(&l).unwrap().join(" ");
        assert!(argv.starts_with(
            "peer run --wallet-dir /w --wallet cabal-a --hotkey default --chain ws://127.0.0.1:1"
        ));
        assert!(argv.contains("--role cabal --cabal-uids 6,7 --model-size tiny --seed 7"), "{argv}");
        assert!(!argv.contains("--pretrain-steps"), "the cabal does not pretrain: {argv}");
        l.spec.pretrain_steps = 300;
        let argv = peer_argv(&l).unwrap().join(" ");
        assert!(argv.contains("--pretrain-steps 300 --resume"), "{argv}");
        l.spec.role = Role::Offline;
        let argv = peer_argv(&l).unwrap().join(" ");
        assert!(argv.contains("--role offline --offline-at-block 250 --model-size"), "{argv}");
        assert!(!argv.contains("cabal-uids"));
        let judge = ledger::public_key(&crate::judging::judge_key());
        assert!(argv.contains(&format!("--trust-caller {judge}")), "the judge must be served: {argv}");
        l.spec.role = Role::Lazy;
        let argv = peer_argv(&l).unwrap().join(" ");
        assert!(argv.contains("--role lazy") && !argv.contains("--pretrain-steps"), "{argv}");
        l.spec.role = Role::Copycat;
        assert!(matches!(peer_argv(&l), Err(LocalnetError::Scenario(_))), "a copycat needs its original");
        let original = ledger::public_key(&crate::judging::judge_key());
        l.copy_of = Some(original);
        let argv = peer_argv(&l).unwrap().join(" ");
        assert!(argv.contains(&format!("--role copycat --copy-of {original}")), "{argv}");
        assert!(!argv.contains("--no-copy-detection"), "{argv}");
        l.copy_detection = false;
        assert!(peer_argv(&l).unwrap().join(" ").contains("--no-copy-detection"));
        l.copy_detection = true;
        let (listen, announce) = ("127.0.0.1:4000".parse().unwrap(), "127.0.0.1:5000".parse().unwrap());
        l.axon = Some((listen, announce));
        let argv = peer_argv(&l).unwrap().join(" ");
        assert!(argv.contains("--axon-addr 127.0.0.1:4000 --announce-addr 127.0.0.1:5000"), "{argv}");
        assert!(!argv.contains("--competitive-masking"), "off by default: {argv}");
        l.competitive_masking = Some(wire::MaskingConfig::new(0.5).unwrap());
        let argv = peer_argv(&l).unwrap().join(" ");
        assert!(argv.ends_with("--competitive-masking 0.5"), "{argv}");
        l.competitive_masking = None;
        l.spec.dataset = "no-such-topic-anywhere".into();
        assert!(matches!(peer_argv(&l), Err(LocalnetError::Dataset { .. })));
        // A Python peer: the package's torch peer with the same wallet, chain and judge, and
        // its data written beside it without the judge's test part.
        l.spec.role = Role::Python;
        l.spec.dataset = dir.join("topic").display().to_string();
        l.out = dir.join("py");
        assert!(peer_argv(&l).is_err(), "agora peer run does not start a Python peer");
        let argv = python_argv(&l).unwrap().join(" ");
        assert!(
            argv.starts_with("-m agora.torch_peer run --wallet-dir /w --wallet cabal-a --hotkey default"),
            "{argv}"
        );
        assert!(argv.contains(&format!("--trust-caller {judge}")), "the judge must be served: {argv}");
        assert!(
            argv.contains("--pretrain-steps 300") && argv.contains("--model-size tiny --seed 7"),
            "{argv}"
        );
        let corpus = nucleus::Corpus::resolve(&l.spec.dataset).unwrap();
        assert_eq!(std::fs::read(l.out.join("train.txt")).unwrap(), corpus.train);
        assert_eq!(std::fs::read(l.out.join("held_out.txt")).unwrap(), corpus.held_out);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
