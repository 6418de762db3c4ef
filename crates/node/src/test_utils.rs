//! Fixtures shared by the tests of the node and of the crates that drive one (the `cli`
//! integration tests, the fuzz harness): behind the `test-utils` feature.

use ledger::{dev_key, public_key, GenesisConfig, GenesisNeuron, UNITS_PER_TOKEN};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A fresh, empty directory under the system temp dir, unique to this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agora-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// A chain with alice and three neurons n0, n1, n2 (each funded with 1,000 tokens, owned by
/// alice, 100 tokens staked) and an epoch every `tempo` blocks.
pub fn neuron_genesis(chain_id: &str, tempo: u64) -> GenesisConfig {
    let mut g = GenesisConfig::dev(&["alice", "n0", "n1", "n2"], 1_000 * UNITS_PER_TOKEN);
    g.chain_id = chain_id.into();
    g.tempo = tempo;
    g.neurons = ["n0", "n1", "n2"]
        .iter()
        .map(|n| GenesisNeuron {
            hotkey: public_key(&dev_key(n)),
            coldkey: public_key(&dev_key("alice")),
            stake: 100 * UNITS_PER_TOKEN,
            endpoint: None,
        })
        .collect();
    g
}

/// A running `agora node` child process, killed (SIGKILL) when dropped.
pub struct NodeProcess {
    child: Child,
    /// `127.0.0.1:PORT` of its JSON-RPC.
    pub addr: String,
}

impl NodeProcess {
    /// `AGORA node --rpc-addr 127.0.0.1:0 ARGS...`, once it listens: the node writes its bound
    /// address to `--rpc-addr-file` (nothing parses its output).
    pub fn spawn(agora: &Path, args: &[&str]) -> NodeProcess {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = std::env::temp_dir().join(format!("agora-rpc-addr-{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let mut child = Command::new(agora)
            .args(["node", "--rpc-addr", "127.0.0.1:0", "--rpc-addr-file"])
            .arg(&file)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its warnings and errors reach the test's output; not a line per block.
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start agora node");
        let start = Instant::now();
        let addr = loop {
            if let Ok(addr) = std::fs::read_to_string(&file) {
                break addr;
            }
            if let Some(status) = child.try_wait().expect("wait") {
                panic!("agora node exited ({status}) before listening");
            }
            assert!(start.elapsed() < Duration::from_secs(30), "node did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(10));
        };
        let _ = std::fs::remove_file(&file);
        NodeProcess { child, addr }
    }

    /// Its JSON-RPC as an HTTP URL, for [`client::Client::connect`].
    pub fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its JSON-RPC as a WebSocket URL, for subscriptions.
    pub fn ws(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The child's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it without warning and reaps it: a crash, for tests of resuming a chain.
    pub fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// SIGTERM, then the exit code.
    pub fn sigterm(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill").success();
        assert!(ok, "kill -TERM {pid}");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(start.elapsed() < Duration::from_secs(20), "node did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON-RPC POST of `body` to `addr` over plain HTTP/1.0: the response body.
pub fn post(addr: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let req = format!(
        "POST / HTTP/1.0\r\nhost: node\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(out)
}

/// Clients that attack a node's RPC port as issue 13's probe did: slow bodies, held and idle
/// WebSockets, each from a chosen loopback address.
pub mod attack {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};

    /// A TCP connection to `addr` from the loopback address `src` (127.0.0.0/8 all reach this host,
    /// so one test can play clients at many addresses).
    pub async fn connect_from(src: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
        let s = TcpSocket::new_v4()?;
        s.bind(SocketAddr::from((src, 0)))?;
        s.connect(addr).await
    }

    /// What the node did to an attacking connection.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub enum Fate {
        /// Refused at once (a limit's 429/503, or closed before any timeout could fire).
        Refused,
        /// Closed by the node after this long.
        Closed(Duration),
        /// Still open when the attack ended.
        Open,
    }

    /// Reads until the node answers or closes; `Closed` after `start`, `Refused` if that was at once.
    fn fate_of(start: Instant, answer: &[u8]) -> Fate {
        let quick = start.elapsed() < Duration::from_millis(800);
        if answer.starts_with(b"HTTP/1.1 429") || answer.starts_with(b"HTTP/1.1 503") || quick {
            Fate::Refused
        } else {
            Fate::Closed(start.elapsed())
        }
    }

    /// A slow HTTP client: declares a 100,000-byte body and sends one byte a second.
    pub async fn slow_body(src: [u8; 4], addr: SocketAddr, until: Instant) -> Fate {
        let start = Instant::now();
        let Ok(mut s) = connect_from(src, addr).await else { return Fate::Refused };
        let head =
            "POST / HTTP/1.1\r\nhost: node\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n[";
        if s.write_all(head.as_bytes()).await.is_err() {
            return Fate::Refused;
        }
        let mut buf = [0u8; 256];
        loop {
            tokio::select! {
                r = s.read(&mut buf) => return fate_of(start, &buf[..r.unwrap_or(0)]),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if Instant::now() > until {
                        return Fate::Open;
                    }
                    if s.write_all(b" ").await.is_err() {
                        return fate_of(start, &[]);
                    }
                }
            }
        }
    }

    /// A WebSocket client that subscribes to new heads (and reads them), or stays idle.
    pub async fn websocket(src: [u8; 4], addr: SocketAddr, subscribe: bool, until: Instant) -> Fate {
        let start = Instant::now();
        let Ok(mut s) = connect_from(src, addr).await else { return Fate::Refused };
        let upgrade = format!(
            "GET / HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
             sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
        );
        if s.write_all(upgrade.as_bytes()).await.is_err() {
            return Fate::Refused;
        }
        let mut buf = vec![0u8; 4096];
        let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return Fate::Refused,
        };
        if !buf[..n].starts_with(b"HTTP/1.1 101") {
            return Fate::Refused;
        }
        if subscribe {
            let payload = br#"{"jsonrpc":"2.0","id":1,"method":"agora_subscribeNewHeads","params":[]}"#;
            let mask = [1u8, 2, 3, 4];
            let mut frame = vec![0x81, 0x80 | payload.len() as u8];
            frame.extend_from_slice(&mask);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            if s.write_all(&frame).await.is_err() {
                return Fate::Closed(start.elapsed());
            }
        }
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, s.read(&mut buf)).await {
                Err(_) => return Fate::Open,
                Ok(Ok(0)) | Ok(Err(_)) => return Fate::Closed(start.elapsed()),
                Ok(Ok(_)) => {}
            }
        }
    }
}
