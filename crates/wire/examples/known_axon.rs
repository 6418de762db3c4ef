//! An axon serving a known function, for interoperability tests: Forward is y = 2x + 1
//! elementwise on a float TENSOR, Backward returns the gradient w.r.t. the inputs, 2g. The
//! function is `wire::test_utils::Affine` (feature `test-utils`), the one the Rust tests call,
//! so both sides of the interoperability check compute what the tests do; its source is also
//! the smallest example of a [`wire::Handler`].
//!
//! Cuts a corner a real peer must not: it serves unregistered callers (`allow_unregistered`),
//! since there is no metagraph here to feed the stake table.
//!
//! Usage: `cargo run -p wire --example known_axon [ADDR]` (default 127.0.0.1:0). Prints
//! `LISTEN <addr> <axon hotkey hex>` once bound, then serves until stdin closes.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use wire::test_utils::Affine;
use wire::{serve, AxonConfig, StakeTable};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_string()).parse()?;
    let key = SigningKey::from_bytes(&[0x11; 32]);
    let config = AxonConfig { addr, allow_unregistered: true, ..Default::default() };
    let axon = serve(config, key, Arc::new(Affine), Arc::new(StakeTable::new())).await?;
    println!("LISTEN {} {}", axon.local_addr(), hex::encode(axon.hotkey()));
    // Serve until whoever started us closes our stdin (or kills us).
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await??;
    axon.shutdown().await?;
    Ok(())
}
