//! Times `train_step` of a configuration (tiny by default, `--default` for the default one).
use std::time::Instant;

use nucleus::{Corpus, Nucleus, NucleusConfig, Split};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    nucleus::configure_threads();
    nucleus::keep_freed_memory();
    let cfg = if std::env::args().any(|a| a == "--default") {
        NucleusConfig::default()
    } else {
        NucleusConfig::tiny(0)
    };
    let food = Corpus::builtin("food")?;
    let peer = Nucleus::new(cfg.clone())?;
    let mut n = Nucleus::new(cfg.clone())?;
    let batches = food.batches(Split::Train, cfg.batch, cfg.model.context, 20, 0)?;
    let t0 = Instant::now();
    for b in &batches {
        n.train_step(b, &[])?;
    }
    let alone = t0.elapsed().as_secs_f64() / 20.0;
    let t0 = Instant::now();
    for b in &batches {
        let r = peer.serve_forward(&b.tokens, b.batch, b.seq)?;
        n.train_step(b, &[(1, Some(r.clone())), (2, Some(r))])?;
    }
    let gated = t0.elapsed().as_secs_f64() / 20.0;
    let t0 = Instant::now();
    for b in &batches {
        peer.serve_forward(&b.tokens, b.batch, b.seq)?;
    }
    let serve = t0.elapsed().as_secs_f64() / 20.0;
    println!(
        "per step: alone {:.1} ms, with 2 peers {:.1} ms, serve_forward {:.1} ms",
        alone * 1e3,
        gated * 1e3,
        serve * 1e3
    );
    Ok(())
}
