//! Per-peer request metrics of an axon (by caller) or a dendrite (by callee): request counts by
//! call and return code, a latency histogram, connections and bytes read, kept in
//! `prometheus-client` metrics and encoded by that crate (OpenMetrics text, which Prometheus
//! scrapes) for a `/metrics` endpoint.
//!
//! Peers are labelled by hotkey hex. Labels are bounded: callers that did not prove their key
//! share the label `unverified`, and past [`MAX_PEERS`] distinct peers the rest share `other`,
//! so a flood of fresh keys cannot grow the exposition without bound.

use std::collections::HashSet;
use std::sync::RwLock;
use std::time::Duration;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::proto::ReturnCode;

/// Distinct peer labels kept before folding the rest into `other`.
pub const MAX_PEERS: usize = 4096;

/// Upper bounds of the latency buckets, in seconds (plus the implicit `+Inf`).
pub const LATENCY_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The HTTP `Content-Type` of [`Metrics::render_prometheus`] and [`exposition`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// The labels of a request count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    peer: String,
    call: &'static str,
    /// The return code's name without its `RETURN_CODE_` prefix (`SUCCESS`, `TIMEOUT`).
    code: &'static str,
}

impl RequestLabels {
    fn new(peer: String, call: Call, code: ReturnCode) -> RequestLabels {
        RequestLabels {
            peer,
            call: call.as_str(),
            code: code.as_str_name().trim_start_matches("RETURN_CODE_"),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The metrics of one axon or one dendrite, registered under `agora_wire_<side>_`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<PeerLabels, Histogram, fn() -> Histogram>,
    /// The peer labels given out (at most [`MAX_PEERS`] plus `other`).
    peers: RwLock<HashSet<String>>,
    connections: Counter,
    /// Bytes read from the sockets (axon): what callers made this process take in.
    received: Counter,
    /// Request-message bytes read by admitted calls (axon): the bodies it chose to read.
    body: Counter,
}

impl Metrics {
    /// `side` (`axon` or `dendrite`) is the metric names' infix: `agora_wire_axon_requests_total`.
    pub fn new(side: &'static str) -> Metrics {
        let mut registry = Registry::with_prefix(format!("agora_wire_{side}"));
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let (connections, received, body) = (Counter::default(), Counter::default(), Counter::default());
        registry.register("requests", "Requests by peer, call and return code", requests.clone());
        registry.register_with_unit("latency", "Request latency by peer", Unit::Seconds, latency.clone());
        registry.register("connections", "Connections opened", connections.clone());
        registry.register_with_unit("received", "Bytes read from connections", Unit::Bytes, received.clone());
        registry.register_with_unit(
            "body",
            "Request bytes read by admitted calls",
            Unit::Bytes,
            body.clone(),
        );
        Metrics { registry, requests, latency, peers: RwLock::default(), connections, received, body }
    }

    /// The label of `peer`: its hotkey hex while fewer than [`MAX_PEERS`] labels exist (or it
    /// already has one), else `other`.
    fn label(&self, peer: PeerLabel<'_>) -> String {
        let label = match peer {
            PeerLabel::Hotkey(k) => hex::encode(k),
            PeerLabel::Unverified => "unverified".to_string(),
        };
        // Never refuse to record: a panic elsewhere while holding the lock changes nothing here.
        if self.peers.read().unwrap_or_else(|e| e.into_inner()).contains(&label) {
            return label;
        }
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        if peers.len() < MAX_PEERS || peers.contains(&label) {
            peers.insert(label.clone());
            label
        } else {
            "other".to_string()
        }
    }

    /// Counts one call to or from `peer` with its return code and latency (peers past the limit count as
    /// `other`).
    pub fn record(&self, peer: PeerLabel<'_>, call: Call, code: ReturnCode, latency: Duration) {
        let peer = self.label(peer);
        self.latency.get_or_create(&PeerLabels { peer: peer.clone() }).observe(latency.as_secs_f64());
        self.requests.get_or_create(&RequestLabels::new(peer, call, code)).inc();
    }

    /// Counts a newly accepted (axon) or opened (dendrite) connection.
    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    /// Connections accepted (axon) or opened (dendrite) so far.
    pub fn connections(&self) -> u64 {
        self.connections.get()
    }

    /// Counts bytes read from a caller's connection, framing included.
    pub fn add_received_bytes(&self, n: u64) {
        self.received.inc_by(n);
    }

    /// Bytes read from callers' connections, framing included.
    pub fn received_bytes(&self) -> u64 {
        self.received.get()
    }

    /// Counts request-message bytes an admitted call read.
    pub fn add_body_bytes(&self, n: u64) {
        self.body.inc_by(n);
    }

    /// Request-message bytes that admitted calls read (refused calls read none).
    pub fn body_bytes(&self) -> u64 {
        self.body.get()
    }

    /// Requests recorded for `peer` (hotkey hex, `unverified` or `other`) with this call and code.
    pub fn requests(&self, peer: &str, call: Call, code: ReturnCode) -> u64 {
        self.requests.get(&RequestLabels::new(peer.to_string(), call, code)).map_or(0, |c| c.get())
    }

    /// The registry holding these metrics, for an exposition that joins several.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The OpenMetrics text exposition of these metrics alone (see [`exposition`]):
    /// `agora_wire_<side>_requests_total{peer,call,code}`,
    /// `agora_wire_<side>_latency_seconds{peer}` (histogram), `agora_wire_<side>_connections_total`,
    /// `agora_wire_<side>_received_bytes_total` and `agora_wire_<side>_body_bytes_total`.
    pub fn render_prometheus(&self) -> String {
        exposition([self])
    }
}

/// One OpenMetrics text exposition of several sources (a peer's axon and dendrite), ending in
/// the `# EOF` the format requires once.
pub fn exposition<'a>(sources: impl IntoIterator<Item = &'a Metrics>) -> String {
    let mut out = String::new();
    for m in sources {
        // Writing to a String cannot fail; the encoder's only errors are the writer's.
        let _ = encode_registry(&mut out, &m.registry);
    }
    let _ = encode_eof(&mut out);
    out
}

/// A strict reader of the OpenMetrics text [`exposition`] writes, for tests here and in the
/// crates that serve it (feature `test-utils`).
#[cfg(any(test, feature = "test-utils"))]
pub mod parse {
    /// The samples of `text` as (`name{labels}` as written, value), after checking every line:
    /// `# HELP`, `# TYPE` and `# UNIT` name a valid metric family, each family is declared once
    /// and its samples follow its `# TYPE` together, a sample's name is its family's plus a
    /// suffix its type allows (`_total` for counters, `_bucket`, `_sum`, `_count` for
    /// histograms, none for gauges), labels are `name="value"` with valid escapes, histogram
    /// buckets carry `le`, values are numbers, and `# EOF` ends the text, once.
    pub fn samples(text: &str) -> Result<Vec<(String, f64)>, String> {
        let body = text.strip_suffix("# EOF\n").ok_or("the exposition does not end with `# EOF`")?;
        let mut declared = std::collections::HashSet::new();
        let mut current: Option<(&str, &str)> = None;
        let mut out = Vec::new();
        for (i, line) in body.lines().enumerate() {
            let bad = |why: &str| format!("line {}: {why}: {line:?}", i + 1);
            if let Some(meta) = line.strip_prefix("# ") {
                let mut parts = meta.splitn(3, ' ');
                let (kind, name, rest) = (parts.next(), parts.next(), parts.next());
                let name = name.filter(|n| valid_name(n, true)).ok_or_else(|| bad("bad metric name"))?;
                match (kind, rest) {
                    (Some("HELP"), Some(_)) | (Some("UNIT"), Some(_)) => {}
                    (Some("TYPE"), Some(t @ ("counter" | "gauge" | "histogram"))) => {
                        if !declared.insert(name) {
                            return Err(bad("family declared twice"));
                        }
                        current = Some((name, t));
                    }
                    _ => return Err(bad("unknown metadata line")),
                }
                continue;
            }
            let (series, value) = line.rsplit_once(' ').ok_or_else(|| bad("no value"))?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().map_err(|_| bad("value is not a number"))?,
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.strip_suffix('}').ok_or_else(|| bad("unclosed labels"))?),
                None => (series, ""),
            };
            let (family, kind) = current.ok_or_else(|| bad("sample before any # TYPE"))?;
            let suffix = name.strip_prefix(family).ok_or_else(|| bad("sample outside its family"))?;
            let allowed: &[&str] = match kind {
                "counter" => &["_total"],
                "gauge" => &[""],
                _ => &["_bucket", "_sum", "_count"],
            };
            if !allowed.contains(&suffix) {
                return Err(bad("suffix not allowed for the family's type"));
            }
            let names = label_names(labels).ok_or_else(|| bad("malformed labels"))?;
            if suffix == "_bucket" && !names.contains(&"le") {
                return Err(bad("histogram bucket without le"));
            }
            out.push((series.to_string(), value));
        }
        Ok(out)
    }

    fn valid_name(name: &str, colons: bool) -> bool {
        let ok = |c: char, first: bool| {
            c == '_' || c.is_ascii_alphabetic() || (colons && c == ':') || (!first && c.is_ascii_digit())
        };
        let mut chars = name.chars();
        chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
    }

    /// The names of `a="x",b="y"`, `None` if it is not that shape.
    fn label_names(mut labels: &str) -> Option<Vec<&str>> {
        let mut names = Vec::new();
        while !labels.is_empty() {
            let (name, rest) = labels.split_once("=\"")?;
            if !valid_name(name, false) || names.contains(&name) {
                return None;
            }
            names.push(name);
            // The value runs to the first quote not escaped; only \\, \" and \n are escapes.
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next()? {
                    // The guard consumes the escaped character: a valid escape goes on past it.
                    (_, '\\') if !matches!(chars.next()?, (_, '\\' | '"' | 'n')) => return None,
                    (j, '"') => break j,
                    _ => {}
                }
            };
            labels = &rest[end + 1..];
            if let Some(next) = labels.strip_prefix(',') {
                labels = next;
                if labels.is_empty() {
                    return None;
                }
            } else if !labels.is_empty() {
                return None;
            }
        }
        Some(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        parse::samples(text)
            .expect("a valid exposition")
            .into_iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| v)
    }

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
        assert_eq!(m.requests(&hexk, Call::Backward, ReturnCode::Timeout), 1);
        let text = m.render_prometheus();
        let series =
            format!("agora_wire_axon_requests_total{{peer=\"{hexk}\",call=\"backward\",code=\"TIMEOUT\"}}");
        assert_eq!(value(&text, &series), Some(1.0), "{text}");
        // 300 us falls in the 0.0005 bucket; 30 ms in 0.05; 60 s only in +Inf.
        let bucket = |le: &str| {
            value(&text, &format!("agora_wire_axon_latency_seconds_bucket{{le=\"{le}\",peer=\"{hexk}\"}}"))
        };
        assert_eq!(bucket("0.00025"), Some(0.0));
        assert_eq!(bucket("0.0005"), Some(1.0));
        assert_eq!(bucket("0.05"), Some(2.0));
        assert_eq!(bucket("10.0"), Some(2.0));
        assert_eq!(bucket("+Inf"), Some(3.0));
        let sum = value(&text, &format!("agora_wire_axon_latency_seconds_sum{{peer=\"{hexk}\"}}")).unwrap();
        assert!((sum - 60.0303).abs() < 1e-9, "{sum}");
        assert_eq!(value(&text, "agora_wire_axon_connections_total"), Some(0.0));
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
        assert_eq!(m.peers.read().unwrap().len(), MAX_PEERS);
        let text = m.render_prometheus();
        let labelled =
            parse::samples(&text).unwrap().into_iter().filter(|(s, _)| s.contains("_count{")).count();
        assert_eq!(labelled, MAX_PEERS + 1, "every peer and `other`");
        // A peer labelled before the bound keeps its label.
        m.record(PeerLabel::Hotkey(&[0; 32]), Call::Backward, ReturnCode::Success, Duration::ZERO);
        assert_eq!(m.requests(&hex::encode([0u8; 32]), Call::Backward, ReturnCode::Success), 1);
    }

    #[test]
    fn sources_join_into_one_exposition_with_one_eof() {
        let (axon, dendrite) = (Metrics::new("axon"), Metrics::new("dendrite"));
        axon.add_received_bytes(5);
        dendrite.connection_opened();
        let text = exposition([&axon, &dendrite]);
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert_eq!(value(&text, "agora_wire_axon_received_bytes_total"), Some(5.0));
        assert_eq!(value(&text, "agora_wire_dendrite_connections_total"), Some(1.0));
    }

    #[test]
    fn the_reader_refuses_what_a_scraper_would() {
        let ok = "# TYPE a counter\na_total 1\n# EOF\n";
        assert_eq!(parse::samples(ok), Ok(vec![("a_total".to_string(), 1.0)]));
        for bad in [
            "# TYPE a counter\na_total 1\n",                   // no EOF
            "# TYPE a counter\na 1\n# EOF\n",                  // counter sample without _total
            "a_total 1\n# EOF\n",                              // no TYPE
            "# TYPE a counter\na_total{x=\"1} 1\n# EOF\n",     // unclosed label value
            "# TYPE a counter\na_total{x=\"\\q\"} 1\n# EOF\n", // bad escape
            "# TYPE a counter\na_total one\n# EOF\n",          // not a number
            "# TYPE a histogram\na_bucket 1\n# EOF\n",         // bucket without le
            "# TYPE a gauge\n# TYPE a gauge\na 1\n# EOF\n",    // declared twice
            "# TYPE 1a gauge\n1a 1\n# EOF\n",                  // bad name
        ] {
            assert!(parse::samples(bad).is_err(), "{bad:?}");
        }
    }
}
