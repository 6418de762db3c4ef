//! The web dashboard every node serves on its RPC port: `GET /` and its few assets, compiled
//! into the binary (no CDN, no files to install), plus the sorted, paged neuron table behind
//! `agora_neurons`. The page reads the node only through its public JSON-RPC and WebSocket
//! subscription, like any other client: the assets are plain HTML, CSS and our own JS (charts
//! are drawn as SVG by that JS), so there is no build step and no third-party code.

use client::types::{
    LocalnetStatus, NeuronLinks, NeuronPage, NeuronSort, NeuronsQuery, MAX_NEURONS_PER_PAGE,
};
use jsonrpsee::server::HttpResponse;
use ledger::{Neuron, WeightRow, WEIGHT_SCALE};
use std::cmp::Ordering;

/// One file the dashboard is made of.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: [Asset; 3] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../dashboard/index.html"),
    },
    Asset {
        path: "/dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../dashboard/dashboard.js"),
    },
    Asset {
        path: "/dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../dashboard/dashboard.css"),
    },
];

/// The page may load and connect only to the node that served it (`'self'` covers its
/// WebSocket too: CSP level 3, in Chromium and Firefox; the browser test checks it opens).
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self'; style-src 'self'; \
                   script-src 'self'; frame-ancestors 'none'";

/// The response for `GET path`, if `path` is one of the dashboard's files.
pub fn response(path: &str) -> Option<HttpResponse> {
    let asset = ASSETS.iter().find(|a| a.path == path || (a.path == "/" && path == "/index.html"))?;
    let r = http::Response::builder()
        .header(http::header::CONTENT_TYPE, asset.content_type)
        .header(http::header::CACHE_CONTROL, "no-cache")
        .header(http::header::CONTENT_SECURITY_POLICY, CSP)
        .header(http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(jsonrpsee::server::HttpBody::from(asset.body))
        .ok()?;
    Some(r)
}

/// Why an `agora_neurons` query was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageError {
    /// The page size asked for is 0 or above [`MAX_NEURONS_PER_PAGE`].
    #[error("limit {0} is out of range: ask for 1 to {MAX_NEURONS_PER_PAGE} neurons per call")]
    Limit(u32),
}

fn key(n: &Neuron, sort: NeuronSort) -> f64 {
    let s = &n.scores;
    match sort {
        NeuronSort::Uid => f64::from(n.uid),
        NeuronSort::Stake => n.stake as f64,
        NeuronSort::Rank => s.rank,
        NeuronSort::Trust => s.trust,
        NeuronSort::Consensus => s.consensus,
        NeuronSort::Incentive => s.incentive,
        NeuronSort::Dividends => s.dividends,
        NeuronSort::Emission => s.emission as f64,
        NeuronSort::ValidatorTrust => s.validator_trust,
        // Never set weights sorts below block 0.
        NeuronSort::LastUpdate => n.last_weights_block.map_or(-1.0, |b| b as f64),
    }
}

/// One page of `neurons` (the table at `block`) sorted by `q.sort`, ties in uid order.
pub fn neuron_page(neurons: &[Neuron], block: u64, q: &NeuronsQuery) -> Result<NeuronPage, PageError> {
    if q.limit == 0 || q.limit > MAX_NEURONS_PER_PAGE {
        return Err(PageError::Limit(q.limit));
    }
    let mut order: Vec<&Neuron> = neurons.iter().collect();
    if q.sort != NeuronSort::Uid || q.descending {
        order.sort_by(|a, b| {
            let by_key = key(a, q.sort).total_cmp(&key(b, q.sort));
            let by_key = if q.descending { by_key.reverse() } else { by_key };
            match by_key {
                Ordering::Equal => a.uid.cmp(&b.uid),
                o => o,
            }
        });
    }
    let rows = order.into_iter().skip(q.offset as usize).take(q.limit as usize).cloned().collect();
    Ok(NeuronPage { block, n: neurons.len() as u32, offset: q.offset, neurons: rows })
}

/// Largest localnet file the node reads (a few hundred bytes per peer).
pub const MAX_LOCALNET_FILE: u64 = 1 << 20;

/// Why `agora_localnet` has nothing to serve.
#[derive(Debug, thiserror::Error)]
pub enum LocalnetFileError {
    /// The node was started without `--localnet-file`.
    #[error("this node is not part of a localnet (it was started without --localnet-file)")]
    NotALocalnet,
    /// The file does not exist yet: the run has not written its first status.
    #[error("the localnet has not written {0} yet")]
    NotWritten(std::path::PathBuf),
    #[error("{path} is {size} bytes: at most {MAX_LOCALNET_FILE} are read")]
    /// The file is larger than [`MAX_LOCALNET_FILE`]: not what `agora localnet` writes.
    TooLarge {
        /// The `--localnet-file`.
        path: std::path::PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    #[error("{path} could not be read: {reason}")]
    /// The file could not be read or does not parse as a localnet status.
    Unreadable {
        /// The `--localnet-file`.
        path: std::path::PathBuf,
        /// The I/O or JSON error.
        reason: String,
    },
}

/// The localnet's status as `agora localnet` last wrote it to `path` (whole: it writes a new
/// file and renames it over the old one).
pub fn read_localnet(path: Option<&std::path::Path>) -> Result<LocalnetStatus, LocalnetFileError> {
    let path = path.ok_or(LocalnetFileError::NotALocalnet)?;
    let unreadable = |reason: String| LocalnetFileError::Unreadable { path: path.to_path_buf(), reason };
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LocalnetFileError::NotWritten(path.to_path_buf()))
        }
        Err(e) => return Err(unreadable(e.to_string())),
    };
    if size > MAX_LOCALNET_FILE {
        return Err(LocalnetFileError::TooLarge { path: path.to_path_buf(), size });
    }
    let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))
}

/// Neuron `uid`'s row and column of W (`weights(i)` is row i of `n`) and its `bonds`, at
/// `block`; `None` if there is no such uid.
pub fn links<'a>(
    n: usize,
    uid: u16,
    weights: impl Fn(u16) -> Option<&'a WeightRow>,
    bonds: Vec<(u16, f64)>,
    block: u64,
) -> Option<NeuronLinks> {
    if usize::from(uid) >= n {
        return None;
    }
    let scale = f64::from(WEIGHT_SCALE);
    let given = weights(uid).map(|r| r.0.iter().map(|&(j, w)| (j, f64::from(w) / scale)).collect());
    // The column: one pass over the sparse rows (n rows of at most a few hundred entries).
    let received = (0..n)
        .filter_map(|i| {
            let i = i as u16; // n <= 65,536: uids are u16
            let w = weights(i)?.0.iter().find(|&&(j, _)| j == uid)?.1;
            Some((i, f64::from(w) / scale))
        })
        .collect();
    Some(NeuronLinks { uid, block, given: given.unwrap_or_default(), received, bonds })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{NeuronScores, PublicKey};

    fn neuron(uid: u16, stake: u64, incentive: f64, last: Option<u64>) -> Neuron {
        let mut n = Neuron::new(uid, PublicKey([uid as u8; 32]), PublicKey([0; 32]), stake, 0, 0);
        n.last_weights_block = last;
        n.scores = NeuronScores { incentive, ..Default::default() };
        n
    }

    fn uids(p: &NeuronPage) -> Vec<u16> {
        p.neurons.iter().map(|n| n.uid).collect()
    }

    #[test]
    fn pages_sort_on_the_node_with_ties_in_uid_order() {
        let t = vec![
            neuron(0, 5, 0.1, None),
            neuron(1, 9, 0.3, Some(4)),
            neuron(2, 5, 0.3, Some(2)),
            neuron(3, 1, 0.0, None),
        ];
        let q = |sort, descending, offset, limit| NeuronsQuery { offset, limit, sort, descending };
        assert_eq!(uids(&neuron_page(&t, 7, &q(NeuronSort::Uid, false, 0, 10)).unwrap()), [0, 1, 2, 3]);
        assert_eq!(uids(&neuron_page(&t, 7, &q(NeuronSort::Stake, true, 0, 10)).unwrap()), [1, 0, 2, 3]);
        assert_eq!(uids(&neuron_page(&t, 7, &q(NeuronSort::Stake, false, 0, 10)).unwrap()), [3, 0, 2, 1]);
        assert_eq!(uids(&neuron_page(&t, 7, &q(NeuronSort::Incentive, true, 1, 2)).unwrap()), [2, 0]);
        assert_eq!(uids(&neuron_page(&t, 7, &q(NeuronSort::LastUpdate, true, 0, 10)).unwrap()), [1, 2, 0, 3]);
        assert_eq!(uids(&neuron_page(&t, 7, &q(NeuronSort::Uid, true, 0, 2)).unwrap()), [3, 2]);
        let past_end = neuron_page(&t, 7, &q(NeuronSort::Uid, false, 10, 5)).unwrap();
        assert_eq!((past_end.n, past_end.block, past_end.neurons.len()), (4, 7, 0));
    }

    #[test]
    fn links_are_a_row_and_a_column_of_w() {
        let half = WEIGHT_SCALE / 2;
        let rows =
            [WeightRow(vec![(1, half), (2, half)]), WeightRow(vec![(2, WEIGHT_SCALE)]), WeightRow(vec![])];
        let w = |i: u16| rows.get(usize::from(i));
        let l = links(3, 2, w, vec![(0, 0.5)], 9).unwrap();
        assert_eq!((l.uid, l.block, l.given.clone(), l.bonds.clone()), (2, 9, vec![], vec![(0, 0.5)]));
        let s = f64::from(WEIGHT_SCALE);
        assert_eq!(l.received, [(0, f64::from(half) / s), (1, 1.0)]);
        assert_eq!(
            links(3, 0, w, vec![], 9).unwrap().given,
            [(1, f64::from(half) / s), (2, f64::from(half) / s)]
        );
        assert!(links(3, 3, w, vec![], 9).is_none());
    }

    #[test]
    fn the_localnet_file_is_read_whole_or_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("agora-localnet-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dashboard.json");
        let _ = std::fs::remove_file(&path);
        assert!(matches!(read_localnet(None), Err(LocalnetFileError::NotALocalnet)));
        assert!(matches!(read_localnet(Some(&path)), Err(LocalnetFileError::NotWritten(_))));
        let status = LocalnetStatus {
            done: 3,
            blocks: 10,
            epoch: 1,
            judge_block: Some(2),
            spearman_incentive: Some(0.5),
            peers: vec![client::types::LocalnetPeer {
                uid: 0,
                name: "expert-0".into(),
                role: "honest".into(),
                judge: Some(1.5),
                loss: vec![(5, 4.25)],
            }],
        };
        std::fs::write(&path, serde_json::to_vec(&status).unwrap()).unwrap();
        assert_eq!(read_localnet(Some(&path)).unwrap(), status);
        std::fs::write(&path, b"{\"done\": 1}").unwrap();
        let e = read_localnet(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("missing field"), "{e}");
        std::fs::write(&path, vec![b' '; MAX_LOCALNET_FILE as usize + 1]).unwrap();
        assert!(matches!(read_localnet(Some(&path)), Err(LocalnetFileError::TooLarge { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ten_thousand_neurons_page_by_fifty() {
        let t: Vec<Neuron> = (0..10_000u16).map(|u| neuron(u, u64::from(u % 97), 0.0, None)).collect();
        let q = |offset| NeuronsQuery { offset, limit: 50, sort: NeuronSort::Stake, descending: true };
        let first = neuron_page(&t, 1, &q(0)).unwrap();
        assert_eq!((first.n, first.neurons.len()), (10_000, 50));
        assert!(first.neurons.iter().all(|n| n.stake == 96), "the largest stake first");
        let last = neuron_page(&t, 1, &q(9_950)).unwrap();
        assert_eq!(last.neurons.len(), 50);
        assert!(last.neurons.iter().all(|n| n.stake == 0));
        // Pages partition the table: every uid once.
        let mut seen: Vec<u16> =
            (0..200).flat_map(|p| neuron_page(&t, 1, &q(p * 50)).unwrap().neurons).map(|n| n.uid).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10_000).collect::<Vec<u16>>());
    }

    #[test]
    fn a_page_of_zero_or_too_many_rows_is_refused() {
        let q = |limit| NeuronsQuery { limit, ..Default::default() };
        assert_eq!(neuron_page(&[], 0, &q(0)).unwrap_err(), PageError::Limit(0));
        assert_eq!(neuron_page(&[], 0, &q(1001)).unwrap_err(), PageError::Limit(1001));
        assert!(neuron_page(&[], 0, &q(1000)).is_ok());
    }

    #[test]
    fn the_page_and_its_assets_are_served_and_nothing_else() {
        for path in ["/", "/index.html", "/dashboard.js", "/dashboard.css"] {
            let r = response(path).unwrap_or_else(|| panic!("{path} is served"));
            assert!(r.headers()[http::header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("'self'"));
        }
        assert!(response("/metrics").is_none() && response("/../Cargo.toml").is_none());
        // Every asset the page names is one the node serves (nothing from elsewhere).
        let html = ASSETS[0].body;
        for a in &ASSETS[1..] {
            assert!(html.contains(&format!("\"{}\"", a.path)), "index.html loads {}", a.path);
        }
        assert!(!html.contains("http://") && !html.contains("https://"), "no outside URL in the page");
    }
}
