//! Training throughput of the default local model (what `agora bench train` reports).
//!
//! cargo run --release -p nucleus --example bench_train -- [--steps N] [--batch B] [--dim D]
//!     [--depth L] [--heads H] [--context T] [--json]

use nucleus::{bench::train_tokens_per_s, NucleusConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    nucleus::configure_threads();
    nucleus::keep_freed_memory();
    let mut cfg = NucleusConfig::default();
    let mut steps = 30usize;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || -> Result<usize, Box<dyn std::error::Error>> {
            Ok(args.next().ok_or(format!("{a} needs a value"))?.parse()?)
        };
        match a.as_str() {
            "--steps" => steps = num()?,
            "--batch" => cfg.batch = num()?,
            "--dim" => cfg.model.dim = num()?,
            "--depth" => cfg.model.depth = num()?,
            "--heads" => cfg.model.heads = num()?,
            "--context" => {
                cfg.model.context = num()?;
                cfg.student.context = cfg.model.context;
            }
            "--json" => json = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let r = train_tokens_per_s(&cfg, steps)?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "f_i dim {} depth {} heads {} context {} batch {} ({} parameters): {:.0} tokens/s \
             over {} steps ({:.2} s), loss {:.3} -> {:.3}",
            r.dim,
            r.depth,
            r.heads,
            r.context,
            r.batch,
            r.parameters,
            r.tokens_per_s,
            r.steps,
            r.seconds,
            r.first_loss,
            r.last_loss
        );
    }
    Ok(())
}
