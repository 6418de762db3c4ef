//! Issue 5's network test: three peers on loopback, each model behind a real `wire` axon with
//! the peer's own handler ([`ModelHandler`]), queried by a real dendrite.
//!
//! Peer A learns the `food` topic. B serves a model trained on `food` (a useful neighbour), C
//! serves noise (the localnet's worthless role). Each step A routes its batch with its gate,
//! sends it to the chosen axons, trains on what comes back and sends each its gradient, as
//! `agora peer run` does. The same A trained alone (same seed, same batches, same steps) is
//! the baseline.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use nucleus::{Batch, Corpus, Nucleus, NucleusConfig, Split};
use peer::learner::text_tensor;
use peer::serve::{ModelHandler, Serving};
use wire::{AxonConfig, Dendrite, Modality, OwnedTensor, StakeTable, Target, TensorView};

const STEPS: usize = 200;
const TEACHER_STEPS: usize = 300;
const TIMEOUT: Duration = Duration::from_secs(60);
/// Measured 2026-12-02 (`cargo test -p peer --test loopback -- --nocapture`): 2.985 nats/byte
/// with the neighbours, 3.082 alone, after 200 steps.
const MARGIN: f32 = 0.05;

/// An axon on 127.0.0.1 serving `nucleus` as `serving`; callers' gradients are weighted by
/// their stake, and A holds all of it.
async fn axon(
    nucleus: Nucleus,
    serving: Serving,
    key: SigningKey,
    caller: &SigningKey,
) -> (wire::axon::AxonHandle, Target) {
    let stakes = StakeTable::new();
    stakes.set(caller.verifying_key().to_bytes(), 1);
    let handler = ModelHandler::new(Arc::new(RwLock::new(nucleus)), serving, Arc::new(AtomicU64::new(10)), 3);
    let config =
        AxonConfig { addr: "127.0.0.1:0".parse().unwrap(), deadline: TIMEOUT, ..AxonConfig::default() };
    let handle = wire::axon::serve(config, key.clone(), Arc::new(handler), Arc::new(stakes)).await.unwrap();
    let target = Target { hotkey: key.verifying_key().to_bytes(), addr: handle.local_addr() };
    (handle, target)
}

/// Sends `batch` to the neighbours A's gate picks (all of them when `everyone`) and returns
/// each one's answer (None for a failure), with the targets asked.
async fn ask(
    a: &mut Nucleus,
    dendrite: &Dendrite,
    neighbours: &[(u16, Target)],
    batch: &Batch,
    everyone: bool,
) -> (Vec<(u16, Option<Vec<f32>>)>, Vec<(u16, Target)>) {
    let uids: Vec<u16> = neighbours.iter().map(|(u, _)| *u).collect();
    let chosen: Vec<(u16, Target)> = if everyone {
        neighbours.to_vec()
    } else {
        let picked = a.route(batch, &uids);
        neighbours.iter().filter(|(u, _)| picked.contains(u)).copied().collect()
    };
    let targets: Vec<Target> = chosen.iter().map(|(_, t)| *t).collect();
    let results = dendrite.forward(&targets, &text_tensor(batch), TIMEOUT).await;
    let answers = chosen
        .iter()
        .zip(results)
        .map(|((uid, _), r)| {
            assert!(r.is_success(), "neighbour {uid} failed: {:?} {}", r.code, r.message);
            let t = r.tensor.expect("a successful Forward carries a tensor");
            let view = TensorView { dtype: t.dtype, modality: t.modality, shape: &t.shape, data: &t.data };
            (*uid, view.to_f32_vec())
        })
        .collect();
    (answers, chosen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_useful_neighbour_on_loopback_learns_more_than_alone_and_weights_noise_least() {
    // One thread for candle per process: the axons and the learner share two cores.
    std::env::set_var("CANDLE_NUM_THREADS", "1");
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let food = Corpus::builtin("food").unwrap();

    let mut teacher = Nucleus::new(NucleusConfig::tiny(1)).unwrap();
    let cfg = teacher.config().clone();
    for b in &food.batches(Split::Train, cfg.batch, cfg.model.context, TEACHER_STEPS, 1).unwrap() {
        teacher.train_step(b, &[]).unwrap();
    }
    let key_a = SigningKey::from_bytes(&[10; 32]);
    let (axon_b, target_b) = axon(teacher, Serving::Model, SigningKey::from_bytes(&[11; 32]), &key_a).await;
    let noise = Nucleus::new(NucleusConfig::tiny(2)).unwrap();
    let (axon_c, target_c) = axon(noise, Serving::Noise, SigningKey::from_bytes(&[12; 32]), &key_a).await;
    let neighbours = [(1u16, target_b), (2u16, target_c)];
    let dendrite = Dendrite::new(key_a);

    let batches = food.batches(Split::Train, cfg.batch, cfg.model.context, STEPS, 7).unwrap();
    let mut with = Nucleus::new(NucleusConfig::tiny(7)).unwrap();
    let mut gradients_accepted = 0;
    for batch in &batches {
        let (answers, asked) = ask(&mut with, &dendrite, &neighbours, batch, false).await;
        let report = with.train_step(batch, &answers).unwrap();
        // The loss gradient w.r.t. each answer goes back to the peer that gave it.
        let (targets, grads): (Vec<Target>, Vec<OwnedTensor>) = report
            .grads
            .iter()
            .filter_map(|(uid, g)| {
                let (_, t) = asked.iter().find(|(u, _)| u == uid)?;
                let shape = [batch.batch as u64, batch.seq as u64, cfg.model.output_dim as u64];
                Some((*t, OwnedTensor::from_f32(Modality::Tensor, &shape, g)))
            })
            .unzip();
        let acks = dendrite.backward(&targets, &text_tensor(batch), &grads, TIMEOUT).await;
        gradients_accepted += acks.iter().filter(|r| r.is_success()).count();
    }
    let mut alone = Nucleus::new(NucleusConfig::tiny(7)).unwrap();
    for batch in &batches {
        alone.train_step(batch, &[]).unwrap();
    }

    let held_out = food.batches(Split::HeldOut, cfg.batch, cfg.model.context, 8, 99).unwrap();
    let (mut loss_with, mut loss_alone) = (0f32, 0f32);
    for batch in &held_out {
        let (answers, _) = ask(&mut with, &dendrite, &neighbours, batch, true).await;
        loss_with += with.held_out_loss(batch, &answers).unwrap() / held_out.len() as f32;
        loss_alone += alone.held_out_loss(batch, &[]).unwrap() / held_out.len() as f32;
    }
    let weights = with.weights();
    let weight = |u: u16| weights.iter().find(|(x, _)| *x == u).map(|(_, w)| *w).unwrap_or(0.0);
    eprintln!(
        "held-out loss after {STEPS} steps over loopback: with neighbours {loss_with:.3}, alone \
         {loss_alone:.3}; A's weights {weights:?}; {gradients_accepted} gradients accepted"
    );
    assert!(loss_with + MARGIN < loss_alone, "{loss_with} vs {loss_alone}");
    assert!(weight(1) > weight(2), "the useful neighbour outweighs the noise: {weights:?}");
    assert!(gradients_accepted > 0, "the neighbours took A's gradients");
    axon_b.shutdown().await.unwrap();
    axon_c.shutdown().await.unwrap();
}
