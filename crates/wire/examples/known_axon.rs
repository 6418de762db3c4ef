//! An axon serving a known function, for interoperability tests and as the smallest example of
//! a [`Handler`]: Forward is y = 2x + 1 elementwise on a float TENSOR, Backward returns the
//! gradient w.r.t. the inputs, 2g.
//!
//! Cuts a corner a real peer must not: it serves unregistered callers (`allow_unregistered`),
//! since there is no metagraph here to feed the stake table.
//!
//! Usage: `cargo run -p wire --example known_axon [ADDR]` (default 127.0.0.1:0). Prints
//! `LISTEN <addr> <axon hotkey hex>` once bound, then serves until stdin closes.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use wire::{serve, AxonConfig, Caller, Handler, HandlerError, Modality, OwnedTensor, StakeTable, TensorView};

struct Affine;

fn floats(x: &TensorView<'_>) -> Result<Vec<f32>, HandlerError> {
    if x.modality != Modality::Tensor {
        return Err(HandlerError::NotImplemented(format!("modality {:?}; send a float TENSOR", x.modality)));
    }
    x.to_f32_vec().ok_or_else(|| HandlerError::NotImplemented(format!("dtype {:?}", x.dtype)))
}

impl Handler for Affine {
    fn forward(&self, _caller: &Caller, inputs: &TensorView<'_>) -> Result<OwnedTensor, HandlerError> {
        let y: Vec<f32> = floats(inputs)?.iter().map(|x| 2.0 * x + 1.0).collect();
        Ok(OwnedTensor::from_f32(Modality::Tensor, inputs.shape, &y))
    }

    fn backward(
        &self,
        _caller: &Caller,
        _inputs: &TensorView<'_>,
        grads: &TensorView<'_>,
    ) -> Result<Option<OwnedTensor>, HandlerError> {
        let dx: Vec<f32> = floats(grads)?.iter().map(|g| 2.0 * g).collect();
        Ok(Some(OwnedTensor::from_f32(Modality::Tensor, grads.shape, &dx)))
    }
}

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
