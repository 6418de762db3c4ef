//! Round trips on loopback, each server in its own process: a Rust dendrite (this process)
//! calling a Rust axon whose handler echoes its input, beside two references measured in the
//! same run, cell by cell, the systems taking turns (rotated each round) so that load from
//! other processes falls on all of them alike:
//! - raw TCP: a tokio echo of length-prefixed frames (no HTTP/2, no signature, no checks), what
//!   the loopback itself allows;
//! - Python grpcio: a grpc.aio echo of raw bytes, client and server in Python processes
//!   (`benches/grpcio_echo.py`; skipped when `python3 -c "import grpc"` fails).
//!
//! Every cell prints medians over the rounds of throughput (request plus response payload bytes
//! per second) and p50/p99 latency per call, and Agora's ratios to both references.
//!
//! `cargo bench -p wire` (about 2 minutes). Options after `--`: `--secs S` per system per round
//! (1), `--rounds R` (3), `--sizes 4096,262144,1048576,4194304`, `--conc 1,16`,
//! `--only agora,tcp,grpcio` (a subset), `--workers N` (tokio worker threads in each Rust
//! process: this dendrite, the axon, the TCP echo; default one per core, as a peer runs),
//! `--json` (one JSON object per cell and system, used by bench/wire_vs_bittensor.py),
//! `--help`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wire::test_utils::Echo;
use wire::{serve, AxonConfig, Dendrite, Modality, OwnedTensor, StakeTable, Target};

const CALLER_SEED: [u8; 32] = [1; 32];
const AXON_SEED: [u8; 32] = [2; 32];
const GRPCIO_ECHO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/grpcio_echo.py");

/// One system's calls in one cell and round.
struct Cell {
    calls: usize,
    failures: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Cell {
    fn mb_per_s(&self, payload: usize) -> f64 {
        (2 * payload * self.calls) as f64 / self.elapsed.as_secs_f64() / 1e6
    }
    fn percentile_ms(&self, p: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
        l[i].as_secs_f64() * 1e3
    }
}

/// Medians over the rounds of one system in one cell.
#[derive(Clone, Copy)]
struct Summary {
    mb_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    calls: usize,
    failures: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn summarise(cells: &[Cell], payload: usize) -> Summary {
    Summary {
        mb_per_s: median(cells.iter().map(|c| c.mb_per_s(payload)).collect()),
        p50_ms: median(cells.iter().map(|c| c.percentile_ms(0.5)).collect()),
        p99_ms: median(cells.iter().map(|c| c.percentile_ms(0.99)).collect()),
        calls: cells.iter().map(|c| c.calls).sum(),
        failures: cells.iter().map(|c| c.failures).sum(),
    }
}

/// Runs `concurrency` loops of `one_call` for `secs`, at least 5 calls each, after 3 warm-up calls.
async fn measure<F, Fut>(concurrency: usize, secs: f64, one_call: F) -> Cell
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    for _ in 0..3 {
        one_call().await;
    }
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let one_call = one_call.clone();
            tokio::spawn(async move {
                let (mut lat, mut failures) = (Vec::new(), 0);
                while Instant::now() < stop || lat.len() < 5 {
                    let t = Instant::now();
                    if !one_call().await {
                        failures += 1;
                    }
                    lat.push(t.elapsed());
                }
                (lat, failures)
            })
        })
        .collect();
    let mut cell = Cell { calls: 0, failures: 0, elapsed: Duration::ZERO, latencies: Vec::new() };
    for t in tasks {
        let (lat, failures) = t.await.expect("bench task");
        cell.calls += lat.len();
        cell.failures += failures;
        cell.latencies.extend(lat);
    }
    cell.elapsed = start.elapsed();
    cell
}

/// A server child: its stdin held open (closing it stops the child) and the words of its
/// `LISTEN ...` line.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    words: Vec<String>,
}

impl Server {
    fn start(mut command: Command) -> Server {
        let mut child =
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start a server process");
        let stdin = child.stdin.take();
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout).read_line(&mut line).expect("read the server's LISTEN line");
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        assert_eq!(words.first().map(String::as_str), Some("LISTEN"), "server said {line:?}");
        Server { child, stdin, words }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Blocks until this process's stdin closes (the parent went away or is done).
fn wait_for_stdin_to_close() {
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
}

/// A multi-threaded runtime with `workers` threads (tokio's default, one per core, for `None`).
fn runtime(workers: Option<usize>) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder.enable_all().build().expect("runtime")
}

/// `--serve axon`: the echo axon, its own process and runtime, as a peer runs it.
fn serve_axon(workers: Option<usize>) {
    let rt = runtime(workers);
    rt.block_on(async {
        let stakes = StakeTable::new();
        stakes.set(SigningKey::from_bytes(&CALLER_SEED).verifying_key().to_bytes(), 1_000);
        let config = AxonConfig { queue_capacity: 1024, ..Default::default() };
        let axon = serve(config, SigningKey::from_bytes(&AXON_SEED), Arc::new(Echo), Arc::new(stakes))
            .await
            .expect("axon");
        println!("LISTEN {} {}", axon.local_addr(), hex::encode(axon.hotkey()));
        std::io::stdout().flush().ok();
        tokio::task::spawn_blocking(wait_for_stdin_to_close).await.ok();
        axon.shutdown().await.expect("shutdown");
    });
}

/// `--serve tcp`: the raw TCP echo of length-prefixed frames, one task per connection.
fn serve_tcp(workers: Option<usize>) {
    let rt = runtime(workers);
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("LISTEN {}", listener.local_addr().expect("addr"));
        std::io::stdout().flush().ok();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                s.set_nodelay(true).ok();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Ok(n) = s.read_u64_le().await else { return };
                        buf.resize(n as usize, 0);
                        if s.read_exact(&mut buf).await.is_err() {
                            return;
                        }
                        if s.write_u64_le(n).await.is_err() || s.write_all(&buf).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        tokio::task::spawn_blocking(wait_for_stdin_to_close).await.ok();
    });
}

/// One TCP connection per concurrent client.
async fn tcp_cell(addr: std::net::SocketAddr, size: usize, conc: usize, secs: f64) -> Cell {
    let payload = Arc::new(vec![7u8; size]);
    let mut streams = Vec::new();
    for _ in 0..conc {
        let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).ok();
        streams.push(Arc::new(tokio::sync::Mutex::new(s)));
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    measure(conc, secs, move || {
        let s = streams[next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % streams.len()].clone();
        let payload = payload.clone();
        async move {
            let mut s = s.lock().await;
            let mut back = vec![0u8; payload.len()];
            s.write_u64_le(payload.len() as u64).await.is_ok()
                && s.write_all(&payload).await.is_ok()
                && s.read_u64_le().await.is_ok()
                && s.read_exact(&mut back).await.is_ok()
        }
    })
    .await
}

async fn agora_cell(dendrite: &Dendrite, target: Target, size: usize, conc: usize, secs: f64) -> Cell {
    let n = size / 4;
    let values: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 0.001).collect();
    let inputs = Arc::new(OwnedTensor::from_f32(Modality::Tensor, &[1, 1, n as u64], &values));
    let d = dendrite.clone();
    measure(conc, secs, move || {
        let (d, x) = (d.clone(), inputs.clone());
        async move {
            let r = d.forward(&[target], &x, Duration::from_secs(30)).await;
            r[0].is_success() && r[0].tensor.as_ref().is_some_and(|t| t.data.len() == size)
        }
    })
    .await
}

/// The Python client in its own process, against the Python server.
fn grpcio_cell(addr: &str, size: usize, conc: usize, secs: f64) -> Cell {
    let out = Command::new("python3")
        .args([GRPCIO_ECHO, "call", addr, &size.to_string(), &conc.to_string(), &secs.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("run the grpcio client");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> &str {
        let at = text.find(&format!("\"{name}\": ")).unwrap_or_else(|| panic!("grpcio client said {text:?}"));
        let rest = &text[at + name.len() + 4..];
        &rest[..rest.find([',', '}']).unwrap_or(rest.len())]
    };
    let list_at = text.find('[').expect("latencies");
    let list_end = text.find(']').expect("latencies");
    let latencies = text[list_at + 1..list_end]
        .split(',')
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_micros)
        .collect();
    Cell {
        calls: field("calls").trim().parse().expect("calls"),
        failures: field("failures").trim().parse().expect("failures"),
        elapsed: Duration::from_secs_f64(field("secs").trim().parse().expect("secs")),
        latencies,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Agora,
    Tcp,
    Grpcio,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Agora => "agora",
            System::Tcp => "tcp",
            System::Grpcio => "grpcio",
        }
    }
}

struct Options {
    secs: f64,
    rounds: usize,
    sizes: Vec<usize>,
    concs: Vec<usize>,
    systems: Vec<System>,
    json: bool,
    /// Worker threads of each Rust process's runtime (`None`: tokio's default).
    workers: Option<usize>,
}

fn value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn list<T: std::str::FromStr>(text: &str) -> Vec<T> {
    text.split(',').map(|s| s.trim().parse().ok().unwrap_or_else(|| panic!("bad list item {s:?}"))).collect()
}

fn python_grpc() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        // The module doc is the usage.
        println!(
            "{}",
            include_str!("wire.rs")
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .map(|l| l.trim_start_matches("//!").trim_start())
                .collect::<Vec<_>>()
                .join("\n")
        );
        return;
    }
    let workers = value(&args, "--workers").map(|s| match s.parse::<usize>() {
        Ok(n) if n > 0 => n,
        _ => panic!("--workers {s}: a number of threads, at least 1"),
    });
    match value(&args, "--serve") {
        Some("axon") => return serve_axon(workers),
        Some("tcp") => return serve_tcp(workers),
        Some(other) => panic!("unknown server {other}"),
        None => {}
    }
    let mut systems: Vec<System> = match value(&args, "--only") {
        Some(only) => only
            .split(',')
            .map(|s| match s {
                "agora" => System::Agora,
                "tcp" => System::Tcp,
                "grpcio" => System::Grpcio,
                other => panic!("unknown system {other} (agora, tcp, grpcio)"),
            })
            .collect(),
        None => vec![System::Agora, System::Tcp, System::Grpcio],
    };
    let json = args.iter().any(|a| a == "--json");
    if systems.contains(&System::Grpcio) && !python_grpc() {
        eprintln!("python3 with grpcio not found: leaving out the grpcio reference");
        systems.retain(|s| *s != System::Grpcio);
    }
    let options = Options {
        secs: value(&args, "--secs").map_or(1.0, |s| s.parse().expect("--secs")),
        rounds: value(&args, "--rounds").map_or(3, |s| s.parse().expect("--rounds")),
        sizes: value(&args, "--sizes").map_or(vec![4 << 10, 256 << 10, 1 << 20, 4 << 20], list),
        concs: value(&args, "--conc").map_or(vec![1, 16], list),
        systems,
        json,
        workers,
    };
    run(&options);
}

fn run(o: &Options) {
    let me = std::env::current_exe().expect("this binary");
    let spawn_self = |what: &str| {
        let mut c = Command::new(&me);
        c.args(["--serve", what]);
        if let Some(workers) = o.workers {
            c.args(["--workers", &workers.to_string()]);
        }
        c
    };
    let axon = o.systems.contains(&System::Agora).then(|| Server::start(spawn_self("axon")));
    let tcp = o.systems.contains(&System::Tcp).then(|| Server::start(spawn_self("tcp")));
    let grpcio = o.systems.contains(&System::Grpcio).then(|| {
        let mut c = Command::new("python3");
        c.args([GRPCIO_ECHO, "serve"]);
        Server::start(c)
    });
    let rt = runtime(o.workers);
    let dendrite = Dendrite::new(SigningKey::from_bytes(&CALLER_SEED));
    let target = axon.as_ref().map(|a| {
        let hotkey: [u8; 32] = hex::decode(&a.words[2]).expect("hex").try_into().expect("32 bytes");
        Target { hotkey, addr: a.words[1].parse().expect("axon address") }
    });
    let load_before = load_average();
    if !o.json {
        println!(
            "wire round trips on loopback, each server in its own process; {} round(s) of {} s per system and cell, \
             systems rotated each round; medians over rounds; MB/s = request + response payload; \
             tokio workers per Rust process: {}",
            o.rounds,
            o.secs,
            o.workers.map_or("one per core".to_string(), |w| w.to_string())
        );
        println!("load average before: {load_before}");
        println!(
            "{:>7} {:>4} | {:>24} | {:>24} | {:>24} | {:>6} {:>7}",
            "payload",
            "conc",
            "agora MB/s  p50  p99 ms",
            "grpcio MB/s  p50  p99 ms",
            "TCP MB/s  p50  p99 ms",
            "/TCP",
            "/grpcio"
        );
    }
    for &size in &o.sizes {
        for &conc in &o.concs {
            let mut cells: Vec<(System, Vec<Cell>)> = o.systems.iter().map(|s| (*s, Vec::new())).collect();
            for round in 0..o.rounds {
                for k in 0..cells.len() {
                    let i = (k + round) % cells.len();
                    let cell = match cells[i].0 {
                        System::Agora => {
                            rt.block_on(agora_cell(&dendrite, target.expect("axon"), size, conc, o.secs))
                        }
                        System::Tcp => {
                            let addr = tcp.as_ref().expect("tcp").words[1].parse().expect("tcp address");
                            rt.block_on(tcp_cell(addr, size, conc, o.secs))
                        }
                        System::Grpcio => {
                            grpcio_cell(&grpcio.as_ref().expect("grpcio").words[1], size, conc, o.secs)
                        }
                    };
                    cells[i].1.push(cell);
                }
            }
            let summaries: Vec<(System, Summary)> =
                cells.iter().map(|(s, c)| (*s, summarise(c, size))).collect();
            report(o.json, size, conc, o.rounds, &summaries);
        }
    }
    if !o.json {
        println!("load average after: {}", load_average());
    }
    drop((axon, tcp, grpcio));
}

fn report(json: bool, size: usize, conc: usize, rounds: usize, summaries: &[(System, Summary)]) {
    for (system, s) in summaries {
        if s.failures > 0 {
            eprintln!(
                "warning: {}: {} of {} calls failed at {size} B x {conc}",
                system.name(),
                s.failures,
                s.calls
            );
        }
        if json {
            println!(
                "{{\"impl\":\"{}\",\"payload\":{size},\"concurrency\":{conc},\"rounds\":{rounds},\"calls\":{},\"failures\":{},\"mb_per_s\":{:.2},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
                system.name(),
                s.calls,
                s.failures,
                s.mb_per_s,
                s.p50_ms,
                s.p99_ms
            );
        }
    }
    if json {
        return;
    }
    let get = |sys: System| summaries.iter().find(|(s, _)| *s == sys).map(|(_, s)| *s);
    let column = |s: Option<Summary>| match s {
        Some(s) => format!("{:>10.1} {:>6.3} {:>6.3}", s.mb_per_s, s.p50_ms, s.p99_ms),
        None => format!("{:>24}", "-"),
    };
    let ratio = |a: Option<Summary>, b: Option<Summary>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a.mb_per_s / b.mb_per_s),
        _ => "-".into(),
    };
    let label = if size >= 1 << 20 { format!("{} MB", size >> 20) } else { format!("{} KB", size >> 10) };
    let (agora, grpcio, tcp) = (get(System::Agora), get(System::Grpcio), get(System::Tcp));
    println!(
        "{label:>7} {conc:>4} | {} | {} | {} | {:>6} {:>7}",
        column(agora),
        column(grpcio),
        column(tcp),
        ratio(agora, tcp),
        ratio(agora, grpcio)
    );
}
