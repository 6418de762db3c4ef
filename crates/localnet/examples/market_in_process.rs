//! The localnet's learning half in one process, without chain or network: four honest peers
//! (small models on computers, startrek and a duplicate, a medium one on science), a noise
//! peer and a 2-peer cabal serving noise train in lockstep and query each other through their
//! gates; at the end each honest peer's scores are compared with the true value (eq. 2
//! measured by ablation). For trying scoring and training choices in minutes rather than a
//! 10-minute localnet; the experiments behind the network-standard basis were run with it.
//!
//! cargo run --release -p localnet --example market_in_process -- STEPS [WARMUP]
//!     [--tiny: every model tiny] [--hetero: science pretrains 3x WARMUP] [--no-remote-grads]
use std::time::Instant;

use localnet::report::spearman;
use nucleus::{Batch, Corpus, Nucleus, Split};
use peer::preset::{nucleus_preset, ModelSize};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Honest,
    Noise,
}

struct Peer {
    name: &'static str,
    kind: Kind,
    n: Nucleus,
    corpus: Corpus,
    rng: ChaCha8Rng,
    stake: f32,
}

fn noise(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let d = Normal::new(0f32, 1.0).unwrap();
    (0..len).map(|_| d.sample(rng)).collect()
}

fn answer(p: &mut Peer, b: &Batch) -> Option<Vec<f32>> {
    match p.kind {
        Kind::Honest => p.n.serve_forward(&b.tokens, b.batch, b.seq).ok(),
        Kind::Noise => Some(noise(b.batch * b.seq * 32, &mut p.rng)),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    nucleus::configure_threads();
    nucleus::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let steps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let warmup: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let remote = !args.iter().any(|a| a == "--no-remote-grads");
    let tiny = args.iter().any(|a| a == "--tiny");
    let spec: Vec<(&str, Kind, ModelSize, &str, u64, f32)> = vec![
        ("honest-computers", Kind::Honest, ModelSize::Small, "computers", 1, 100.0),
        ("honest-science", Kind::Honest, ModelSize::Medium, "science", 2, 100.0),
        ("honest-startrek", Kind::Honest, ModelSize::Small, "startrek", 3, 100.0),
        ("duplicate", Kind::Honest, ModelSize::Small, "computers", 1, 100.0),
        ("noise", Kind::Noise, ModelSize::Tiny, "food", 5, 100.0),
        ("cabal-a", Kind::Noise, ModelSize::Tiny, "food", 7, 128.6),
        ("cabal-b", Kind::Noise, ModelSize::Tiny, "food", 8, 128.6),
    ];
    let mut peers: Vec<Peer> = spec
        .into_iter()
        .map(|(name, kind, size, topic, seed, stake)| {
            let size = if tiny { ModelSize::Tiny } else { size };
            let mut cfg = nucleus_preset(size, seed);
            cfg.batch = 16;
            Ok(Peer {
                name,
                kind,
                n: Nucleus::new(cfg)?,
                corpus: Corpus::builtin(topic)?,
                rng: ChaCha8Rng::seed_from_u64(seed),
                stake,
            })
        })
        .collect::<Result<_, nucleus::NucleusError>>()?;
    let total_stake: f32 = peers.iter().map(|p| p.stake).sum();
    let uids: Vec<u16> = (0..peers.len() as u16).collect();
    let t0 = Instant::now();
    let hetero = args.iter().any(|a| a == "--hetero");
    for s in 0..warmup * if hetero { 3 } else { 1 } {
        for p in peers.iter_mut().filter(|p| p.kind == Kind::Honest) {
            if s >= warmup && !(hetero && p.name == "honest-science") {
                continue;
            }
            let b = p.corpus.sample(Split::Train, 16, 64, &mut p.rng)?;
            p.n.pretrain_step(&b)?;
        }
        if s % 100 == 0 {
            eprintln!("warmup {s} {:.0}s", t0.elapsed().as_secs_f64());
        }
    }
    for s in 0..steps {
        for i in 0..peers.len() {
            if peers[i].kind != Kind::Honest {
                continue;
            }
            let b = {
                let p = &mut peers[i];
                p.corpus.sample(Split::Train, 16, 64, &mut p.rng)?
            };
            let others: Vec<u16> = uids.iter().copied().filter(|&u| usize::from(u) != i).collect();
            let routed = peers[i].n.route(&b, &others);
            let responses: Vec<(u16, Option<Vec<f32>>)> =
                routed.iter().map(|&u| (u, answer(&mut peers[usize::from(u)], &b))).collect();
            let report = peers[i].n.train_step(&b, &responses)?;
            if remote {
                let w = peers[i].stake / total_stake;
                for (u, g) in &report.grads {
                    let q = &mut peers[usize::from(*u)];
                    if q.kind == Kind::Honest {
                        q.n.apply_remote_gradient(&b.tokens, b.batch, b.seq, g, w)?;
                    }
                }
            }
            if s % 50 == 0 {
                eprintln!(
                    "step {s} {:.0}s {} loss {:.3} routed {:?}",
                    t0.elapsed().as_secs_f64(),
                    peers[i].name,
                    report.loss,
                    routed
                );
            }
        }
    }
    eprintln!("trained in {:.0}s", t0.elapsed().as_secs_f64());

    // Evaluation: every honest peer, on 8 held-out batches of its own data.
    let n = peers.len();
    let mut truth_gate = vec![0f32; n]; // Σ_i ablation with the gate's own routing (the localnet's truth)
    let mut all_mask = vec![vec![0f32; n]; n]; // masking with every neighbour joined
    let mut alone = vec![vec![0f32; n]; n]; // L(student) - L(j alone)
    for i in 0..n {
        if peers[i].kind != Kind::Honest {
            continue;
        }
        let batches = peers[i].corpus.batches(Split::HeldOut, 16, 64, 8, 99)?;
        let others: Vec<u16> = uids.iter().copied().filter(|&u| usize::from(u) != i).collect();
        let (mut l_gate, mut l_student) = (0f32, 0f32);
        for b in &batches {
            let routed = peers[i].n.route(b, &others);
            let resp: Vec<(u16, Option<Vec<f32>>)> =
                routed.iter().map(|&u| (u, answer(&mut peers[usize::from(u)], b))).collect();
            l_gate += peers[i].n.held_out_loss(b, &resp)? / batches.len() as f32;
            for (u, d) in peers[i].n.ablation(b, &resp)? {
                truth_gate[usize::from(u)] += d / batches.len() as f32;
            }
            let all: Vec<(u16, Option<Vec<f32>>)> =
                others.iter().map(|&u| (u, answer(&mut peers[usize::from(u)], b))).collect();
            for (u, d) in peers[i].n.ablation(b, &all)? {
                all_mask[i][usize::from(u)] += d / batches.len() as f32;
            }
            let ls = peers[i].n.student_loss(b)?;
            l_student += ls / batches.len() as f32;
            for (u, r) in &all {
                let l = peers[i].n.held_out_loss(b, &[(*u, r.clone())])?;
                alone[i][usize::from(*u)] += (ls - l) / batches.len() as f32;
            }
        }
        eprintln!("{:<18} held-out gated {l_gate:.3}  student {l_student:.3}", peers[i].name);
    }
    let consensus = |m: &Vec<Vec<f32>>| -> Vec<f32> {
        // Stake-weighted sum of each honest row, negatives clipped and rows normalised.
        let mut c = vec![0f32; n];
        for (i, row) in m.iter().enumerate() {
            let pos: Vec<f32> = row.iter().map(|v| v.max(0.0)).collect();
            let s: f32 = pos.iter().sum();
            if s > 0.0 {
                for j in 0..n {
                    c[j] += peers[i].stake * pos[j] / s;
                }
            }
        }
        c
    };
    println!("{:<18} {:>10} {:>10} {:>10} {:>10}", "peer", "truth", "truth-all", "w(all)", "w(alone)");
    let (ca, cb) = (consensus(&all_mask), consensus(&alone));
    let truth_all: Vec<f32> = (0..n).map(|j| all_mask.iter().map(|row| row[j]).sum()).collect();
    for j in 0..n {
        println!(
            "{:<18} {:>10.4} {:>10.4} {:>10.4} {:>10.4}",
            peers[j].name, truth_gate[j], truth_all[j], ca[j], cb[j]
        );
    }
    let rho = |a: &[f32], b: &[f32]| {
        let f = |v: &[f32]| v.iter().map(|x| f64::from(*x)).collect::<Vec<f64>>();
        spearman(&f(a), &f(b)).map_or("n/a".to_string(), |r| format!("{r:.3}"))
    };
    println!(
        "spearman vs truth: all-masking {}, alone {}; vs truth-all: all-masking {}, alone {}",
        rho(&ca, &truth_gate),
        rho(&cb, &truth_gate),
        rho(&ca, &truth_all),
        rho(&cb, &truth_all)
    );
    Ok(())
}
