//! Nucleus-level behaviour with in-process peers: each "peer" is a real [`Nucleus`] whose
//! `serve_forward` output is passed to another one's `train_step`, exactly the buffers the
//! `peer` crate moves over the wire.

mod learning;
mod safety;
mod state;

use std::sync::{Once, OnceLock};

use nucleus::{Batch, Corpus, JoinMode, Nucleus, NucleusConfig, Split};

/// candle's CPU pool spins waiting for its workers; with tiny tensors and both cores busy
/// (the test harness runs two tests at once) one thread per test is several times faster.
/// Must run before the first tensor operation of the process, hence every test calls it first.
pub fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
        std::env::set_var("RAYON_NUM_THREADS", "1");
    });
}

/// The shared useful neighbour: trained alone on `food` for [`TEACHER_STEPS`] steps, once.
pub fn food_teacher() -> &'static Nucleus {
    static T: OnceLock<Nucleus> = OnceLock::new();
    T.get_or_init(|| teacher("food", TEACHER_STEPS, 1))
}
/// Training steps of the shared `food` teacher ([`food_teacher`]).
pub const TEACHER_STEPS: usize = 300;

/// A peer's response to `batch`.
pub fn respond(peer: &Nucleus, batch: &Batch) -> Vec<f32> {
    peer.serve_forward(&batch.tokens, batch.batch, batch.seq).unwrap()
}

/// Trains `n` alone (no neighbours: its student stands in) for `steps` steps from `seed`.
pub fn train_alone(n: &mut Nucleus, corpus: &Corpus, steps: usize, seed: u64) {
    let c = n.config().clone();
    let batches = corpus.batches(Split::Train, c.batch, c.model.context, steps, seed).unwrap();
    for b in &batches {
        let r = n.train_step(b, &[]).unwrap();
        assert_eq!(r.mode, JoinMode::Student);
    }
}

/// Mean held-out loss over fixed held-out batches, with responses from `peers` (uid, peer).
pub fn held_out(n: &Nucleus, corpus: &Corpus, peers: &[(u16, &Nucleus)], count: usize) -> f32 {
    let c = n.config();
    let batches = corpus.batches(Split::HeldOut, c.batch, c.model.context, count, 99).unwrap();
    let mut total = 0.0;
    for b in &batches {
        let resp: Vec<(u16, Option<Vec<f32>>)> =
            peers.iter().map(|(u, p)| (*u, Some(respond(p, b)))).collect();
        total += n.held_out_loss(b, &resp).unwrap();
    }
    total / count as f32
}

/// A teacher peer: tiny model trained alone on `topic` for `steps` steps.
pub fn teacher(topic: &str, steps: usize, seed: u64) -> Nucleus {
    setup();
    let mut t = Nucleus::new(NucleusConfig::tiny(seed)).unwrap();
    train_alone(&mut t, &Corpus::builtin(topic).unwrap(), steps, seed);
    t
}
