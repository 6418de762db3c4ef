//! Per-peer request metrics of an axon (by caller) or a dendrite (by callee): request counts by
//! call and return code, and a latency histogram, rendered in the Prometheus text format for a
//! `/metrics` endpoint. Hand-formatted like the node's: a framework would add a registry for a
//! few counters.
//!
//! Peers are labelled by hotkey hex. Labels are bounded: callers that did not prove their key
//! share the label `unverified`, and past [`MAX_PEERS`] distinct peers the rest share `other`,
//! so a flood of fresh keys cannot grow the exposition without bound.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::proto::ReturnCode;

/// Distinct peer labels kept before folding the rest into `other`.
pub const MAX_PEERS: usize = 4096;

/// Upper bounds of the latency buckets, in seconds (plus the implicit `+Inf`).
pub const LATENCY_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Which RPC a measurement belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Call {
    /// A Forward: inputs in, representations out.
    Forward,
    /// A Backward: gradients in for the representations served.
    Backward,
}

impl Call {
    /// The call's label in the metrics (`forward`, `backward`).
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Forward => "forward",
            Call::Backward => "backward",
        }
    }

    /// The gRPC path of the call; MACs name it so a Forward's is never a Backward's.
    pub fn path(self) -> &'static str {
        match self {
            Call::Forward => "/agora.v1.Axon/Forward",
            Call::Backward => "/agora.v1.Axon/Backward",
        }
    }

    /// The call of a gRPC path; `None` for another path.
    pub fn from_path(path: &str) -> Option<Call> {
        [Call::Forward, Call::Backward].into_iter().find(|c| c.path() == path)
    }
}

/// Who a measurement is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerLabel<'a> {
    /// A peer whose hotkey was authenticated.
    Hotkey(&'a [u8; 32]),
    /// A caller whose MAC (or handshake signature) was not (yet) verified.
    Unverified,
}

#[derive(Default, Clone, Debug)]
struct Histogram {
    // counts[i] = observations <= LATENCY_BUCKETS[i] and above the previous bound; the last
    // slot counts those above every bound.
    counts: [u64; LATENCY_BUCKETS.len() + 1],
    sum_seconds: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let i = LATENCY_BUCKETS.iter().position(|&b| seconds <= b).unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i] += 1;
        self.sum_seconds += seconds;
    }
}

#[derive(Default, Clone, Debug)]
struct PeerStats {
    requests: BTreeMap<(Call, i32), u64>,
    latency: Histogram,
}

/// The metrics of one axon or one dendrite.
#[derive(Debug)]
pub struct Metrics {
    /// `axon` or `dendrite`: the metric names' infix.
    side: &'static str,
    peers: Mutex<HashMap<String, PeerStats>>,
    connections: AtomicU64,
    /// Bytes read from the sockets (axon): what callers made this process take in.
    received: AtomicU64,
    /// Request-message bytes read by admitted calls (axon): the bodies it chose to read.
    body: AtomicU64,
}

impl Metrics {
    /// Empty metrics for one side (`axon` or `dendrite`, the metric names' infix).
    pub fn new(side: &'static str) -> Metrics {
        Metrics {
            side,
            peers: Mutex::new(HashMap::new()),
            connections: AtomicU64::new(0),
            received: AtomicU64::new(0),
            body: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PeerStats>> {
        // Counters stay meaningful after a panic elsewhere; never refuse to record.
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one call to or from `peer` with its return code and latency (peers past the limit count as
    /// `other`).
    pub fn record(&self, peer: PeerLabel<'_>, call: Call, code: ReturnCode, latency: Duration) {
        let mut label = match peer {
            PeerLabel::Hotkey(k) => hex::encode(k),
            PeerLabel::Unverified => "unverified".to_string(),
        };
        let mut peers = self.lock();
        if !peers.contains_key(&label) && peers.len() >= MAX_PEERS {
            label = "other".to_string();
        }
        let stats = peers.entry(label).or_default();
        *stats.requests.entry((call, code as i32)).or_default() += 1;
        stats.latency.observe(latency.as_secs_f64());
    }

    /// Counts a newly accepted (axon) or opened (dendrite) connection.
    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections accepted (axon) or opened (dendrite) so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Counts bytes read from a caller's connection, framing included.
    pub fn add_received_bytes(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes read from callers' connections, framing included.
    pub fn received_bytes(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Counts request-message bytes an admitted call read.
    pub fn add_body_bytes(&self, n: u64) {
        self.body.fetch_add(n, Ordering::Relaxed);
    }

    /// Request-message bytes that admitted calls read (refused calls read none).
    pub fn body_bytes(&self) -> u64 {
        self.body.load(Ordering::Relaxed)
    }

    /// Requests recorded for `peer` (hotkey hex, `unverified` or `other`) with this call and code.
    pub fn requests(&self, peer: &str, call: Call, code: ReturnCode) -> u64 {
        self.lock().get(peer).and_then(|s| s.requests.get(&(call, code as i32)).copied()).unwrap_or(0)
    }

    /// Every request recorded, all peers, calls and codes.
    pub fn total_requests(&self) -> u64 {
        self.lock().values().flat_map(|s| s.requests.values()).sum()
    }

    /// The Prometheus text exposition: `agora_wire_<side>_requests_total{peer,call,code}`,
    /// `agora_wire_<side>_latency_seconds{peer}` (histogram) and
    /// `agora_wire_<side>_connections_total`.
    pub fn render_prometheus(&self) -> String {
        let side = self.side;
        let peers = self.lock();
        let mut names: Vec<&String> = peers.keys().collect();
        names.sort();
        let mut out = String::new();
        let _ =
            writeln!(out, "# HELP agora_wire_{side}_requests_total Requests by peer, call and return code.");
        let _ = writeln!(out, "# TYPE agora_wire_{side}_requests_total counter");
        for name in &names {
            for ((call, code), n) in &peers[*name].requests {
                let code = ReturnCode::try_from(*code).map_or("UNKNOWN", |c| c.as_str_name());
                let code = code.trim_start_matches("RETURN_CODE_");
                let call = call.as_str();
                let _ = writeln!(
                    out,
                    "agora_wire_{side}_requests_total{{peer=\"{name}\",call=\"{call}\",code=\"{code}\"}} {n}"
                );
            }
        }
        let _ = writeln!(out, "# HELP agora_wire_{side}_latency_seconds Request latency by peer.");
        let _ = writeln!(out, "# TYPE agora_wire_{side}_latency_seconds histogram");
        for name in &names {
            let h = &peers[*name].latency;
            let mut cumulative = 0;
            for (bound, count) in LATENCY_BUCKETS.iter().zip(&h.counts) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "agora_wire_{side}_latency_seconds_bucket{{peer=\"{name}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let total: u64 = h.counts.iter().sum();
            let _ = writeln!(
                out,
                "agora_wire_{side}_latency_seconds_bucket{{peer=\"{name}\",le=\"+Inf\"}} {total}"
            );
            let _ =
                writeln!(out, "agora_wire_{side}_latency_seconds_sum{{peer=\"{name}\"}} {}", h.sum_seconds);
            let _ = writeln!(out, "agora_wire_{side}_latency_seconds_count{{peer=\"{name}\"}} {total}");
        }
        let _ = writeln!(out, "# HELP agora_wire_{side}_connections_total Connections opened.");
        let _ = writeln!(out, "# TYPE agora_wire_{side}_connections_total counter");
        let _ = writeln!(out, "agora_wire_{side}_connections_total {}", self.connections());
        let _ = writeln!(out, "# HELP agora_wire_{side}_received_bytes_total Bytes read from connections.");
        let _ = writeln!(out, "# TYPE agora_wire_{side}_received_bytes_total counter");
        let _ = writeln!(out, "agora_wire_{side}_received_bytes_total {}", self.received_bytes());
        let _ =
            writeln!(out, "# HELP agora_wire_{side}_body_bytes_total Request bytes read by admitted calls.");
        let _ = writeln!(out, "# TYPE agora_wire_{side}_body_bytes_total counter");
        let _ = writeln!(out, "agora_wire_{side}_body_bytes_total {}", self.body_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_codes_and_cumulative_buckets() {
        let m = Metrics::new("axon");
        let k = [7u8; 32];
        m.record(PeerLabel::Hotkey(&k), Call::Forward, ReturnCode::Success, Duration::from_micros(300));
        m.record(PeerLabel::Hotkey(&k), Call::Forward, ReturnCode::Success, Duration::from_millis(30));
        m.record(PeerLabel::Hotkey(&k), Call::Backward, ReturnCode::Timeout, Duration::from_secs(60));
        m.record(PeerLabel::Unverified, Call::Forward, ReturnCode::InvalidSignature, Duration::ZERO);
        let hexk = hex::encode(k);
        assert_eq!(m.requests(&hexk, Call::Forward, ReturnCode::Success), 2);
        assert_eq!(m.requests("unverified", Call::Forward, ReturnCode::InvalidSignature), 1);
        assert_eq!(m.total_requests(), 4);
        let text = m.render_prometheus();
        let line = |s: &str| text.lines().find(|l| l.starts_with(s)).map(str::to_string);
        assert_eq!(
            line(&format!(
                "agora_wire_axon_requests_total{{peer=\"{hexk}\",call=\"backward\",code=\"TIMEOUT\"}}"
            )),
            Some(format!(
                "agora_wire_axon_requests_total{{peer=\"{hexk}\",call=\"backward\",code=\"TIMEOUT\"}} 1"
            ))
        );
        // 300 us falls in the 0.0005 bucket; 30 ms in 0.05; 60 s only in +Inf.
        let bucket = |le: &str| {
            line(&format!("agora_wire_axon_latency_seconds_bucket{{peer=\"{hexk}\",le=\"{le}\"}}"))
                .and_then(|l| l.rsplit(' ').next().map(|n| n.parse::<u64>().unwrap()))
        };
        assert_eq!(bucket("0.00025"), Some(0));
        assert_eq!(bucket("0.0005"), Some(1));
        assert_eq!(bucket("0.05"), Some(2));
        assert_eq!(bucket("10"), Some(2));
        assert_eq!(bucket("+Inf"), Some(3));
    }

    #[test]
    fn peer_labels_are_bounded() {
        let m = Metrics::new("dendrite");
        for i in 0..(MAX_PEERS + 10) {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            m.record(PeerLabel::Hotkey(&k), Call::Forward, ReturnCode::Success, Duration::ZERO);
        }
        assert_eq!(m.requests("other", Call::Forward, ReturnCode::Success), 10);
        assert_eq!(m.lock().len(), MAX_PEERS + 1);
    }
}
