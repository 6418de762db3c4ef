//! An axon for the attack measurements of `crates/wire/attacks.sh`: serves y = x with a stake
//! table given on the command line, prints `LISTEN <addr> <hotkey hex>`, serves until stdin
//! closes, then prints `PEAK_RSS_KB <n>` (the process's high-water mark of resident memory).
//!
//! Uses only the API older versions of the crate also have, so the script can build the same
//! file against the code before a change and measure both.
//!
//! Usage: `flood_axon [--replay-cache N] [--stake HOTKEY_HEX=STAKE ...]`

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use wire::{serve, AxonConfig, Caller, Handler, HandlerError, OwnedTensor, StakeTable, TensorView};

struct Echo;

impl Handler for Echo {
    fn forward(&self, _caller: &Caller, inputs: &TensorView<'_>) -> Result<OwnedTensor, HandlerError> {
        Ok(inputs.to_owned())
    }

    fn backward(
        &self,
        _caller: &Caller,
        _inputs: &TensorView<'_>,
        _grads: &TensorView<'_>,
    ) -> Result<Option<OwnedTensor>, HandlerError> {
        Ok(None)
    }
}

fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: 0 kB");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let table = StakeTable::new();
    let mut config = AxonConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--replay-cache" => config.replay_cache = args.next().unwrap_or_default().parse()?,
            "--stake" => {
                let spec = args.next().unwrap_or_default();
                let (key, stake) =
                    spec.split_once('=').ok_or_else(|| anyhow::anyhow!("--stake HEX=STAKE"))?;
                let key: [u8; 32] =
                    hex::decode(key)?.try_into().map_err(|_| anyhow::anyhow!("a hotkey is 32 bytes"))?;
                table.set(key, stake.parse()?);
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let axon = serve(config, SigningKey::from_bytes(&[0x77; 32]), Arc::new(Echo), Arc::new(table)).await?;
    println!("LISTEN {} {}", axon.local_addr(), hex::encode(axon.hotkey()));
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await??;
    println!("PEAK_RSS_KB {}", peak_rss_kb());
    axon.shutdown().await?;
    Ok(())
}
