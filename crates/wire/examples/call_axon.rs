//! A dendrite that calls one axon serving the known function of `known_axon` (y = 2x + 1,
//! input gradient 2g) and checks the numbers; exits non-zero on any mismatch. Used by
//! `crates/wire/python/interop.sh` against a Python axon.
//!
//! Usage: `cargo run -p wire --example call_axon -- <addr> <axon hotkey hex>`

use std::time::Duration;

use anyhow::{bail, ensure, Context};
use ed25519_dalek::SigningKey;
use wire::{Dendrite, Modality, OwnedTensor, ReturnCode, Target};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().context("usage: call_axon <addr> <axon hotkey hex>")?.parse()?;
    let hotkey: [u8; 32] = hex::decode(args.next().context("missing axon hotkey")?)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("a hotkey is 32 bytes"))?;
    let target = [Target { hotkey, addr }];
    let dendrite = Dendrite::new(SigningKey::from_bytes(&[0x22; 32]));
    let deadline = Duration::from_secs(5);

    // [batch 2, seq 3, dim 4]
    let x: Vec<f32> = (0..24).map(|i| i as f32 * 0.25 - 3.0).collect();
    let inputs = OwnedTensor::from_f32(Modality::Tensor, &[2, 3, 4], &x);
    let r = dendrite.forward(&target, &inputs, deadline).await.remove(0);
    ensure!(r.code == ReturnCode::Success, "forward: {:?} {}", r.code, r.message);
    let y = r.tensor.context("forward: no output")?;
    ensure!(y.shape == [2, 3, 4], "forward: shape {:?}", y.shape);
    let y = wire::tensor::le_bytes_to_f32s(&y.data);
    for (a, b) in x.iter().zip(&y) {
        if (2.0 * a + 1.0 - b).abs() > 1e-6 {
            bail!("forward: f({a}) = {b}, expected {}", 2.0 * a + 1.0);
        }
    }
    println!("forward ok: 24 values match 2x+1 ({:?})", r.latency);

    let g: Vec<f32> = (0..24).map(|i| (i % 5) as f32 - 2.0).collect();
    let grads = OwnedTensor::from_f32(Modality::Tensor, &[2, 3, 4], &g);
    let r = dendrite.backward(&target, &inputs, &[grads], deadline).await.remove(0);
    ensure!(r.code == ReturnCode::Success, "backward: {:?} {}", r.code, r.message);
    let dx = wire::tensor::le_bytes_to_f32s(&r.tensor.context("backward: no gradient")?.data);
    ensure!(dx == g.iter().map(|g| 2.0 * g).collect::<Vec<_>>(), "backward: {dx:?}");
    println!("backward ok: gradient is 2g");

    // A 1 MiB tensor: the dendrite sends its bytes as a DATA frame of their own, which any
    // gRPC server must read as part of the one message.
    let n = 1 << 18;
    let big: Vec<f32> = (0..n).map(|i| (i % 97) as f32).collect();
    let inputs = OwnedTensor::from_f32(Modality::Tensor, &[1, 1, n as u64], &big);
    let r = dendrite.forward(&target, &inputs, deadline).await.remove(0);
    ensure!(r.code == ReturnCode::Success, "forward of 1 MiB: {:?} {}", r.code, r.message);
    let y = wire::tensor::le_bytes_to_f32s(&r.tensor.context("forward of 1 MiB: no output")?.data);
    ensure!(y == big.iter().map(|a| 2.0 * a + 1.0).collect::<Vec<_>>(), "forward of 1 MiB: wrong values");
    println!("forward ok: 1 MiB tensor, {n} values match 2x+1");

    // A NaN input must come back as NON_FINITE from any conforming axon.
    let bad = OwnedTensor::from_f32(Modality::Tensor, &[1, 1, 2], &[1.0, f32::NAN]);
    let r = dendrite.forward(&target, &bad, deadline).await.remove(0);
    ensure!(r.code == ReturnCode::NonFinite, "NaN input: {:?} {}", r.code, r.message);
    println!("NaN input refused: {}", r.message);
    Ok(())
}
