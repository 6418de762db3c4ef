//! Trains a peer with an in-process neighbour, exports its offline model and runs it with no
//! network: the library calls behind `agora peer export` and `agora infer`.
//!
//! cargo run --release -p nucleus --example offline -- [--topic food] [--neighbour science]
//!     [--steps 300] [--out /tmp/agora-offline] [--prompt "The "]
//!
//! Topics come from /usr/share/games/fortunes when the `fortunes` package is installed, else
//! from the built-in sample (computers, food, science, startrek).

use std::path::PathBuf;

use nucleus::{Corpus, Inference, Nucleus, NucleusConfig, Split};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut topic, mut neighbour) = ("food".to_string(), "science".to_string());
    let mut steps = 300usize;
    let mut out = std::env::temp_dir().join("agora-offline");
    let mut prompt = "The ".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--topic" => topic = v,
            "--neighbour" => neighbour = v,
            "--steps" => steps = v.parse()?,
            "--out" => out = PathBuf::from(v),
            "--prompt" => prompt = v,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let cfg = NucleusConfig::default();
    let data = Corpus::fortune_topic(&topic)?;
    let other = Corpus::fortune_topic(&neighbour)?;
    let (b, t) = (cfg.batch, cfg.model.context);

    // The neighbour learns its own domain alone first.
    let mut peer = Nucleus::new(NucleusConfig { seed: 1, ..cfg.clone() })?;
    for batch in other.batches(Split::Train, b, t, steps, 1)? {
        peer.train_step(&batch, &[])?;
    }
    let mut me = Nucleus::new(cfg.clone())?;
    for (i, batch) in data.batches(Split::Train, b, t, steps, 2)?.iter().enumerate() {
        let resp = peer.serve_forward(&batch.tokens, b, t)?;
        let r = me.train_step(batch, &[(1, Some(resp))])?;
        if i % 50 == 0 || i + 1 == steps {
            println!("step {i}: loss {:.3}, distill {:.3}", r.loss, r.distill_loss);
        }
    }
    me.export(&out)?;
    let inf = Inference::load(&out)?;
    let held = &data.held_out[..data.held_out.len().min(4096)];
    println!("exported to {}; offline held-out loss {:.3} nats/byte", out.display(), inf.score(held)?);
    let text = inf.generate(prompt.as_bytes(), 200, 0.8, 0)?;
    println!("{prompt}{}", String::from_utf8_lossy(&text));
    Ok(())
}
