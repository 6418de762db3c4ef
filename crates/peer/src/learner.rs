//! The phases of a participant's learning, apart from how it is driven: pretraining alone, a
//! training step through the gate, a scoring round over every neighbour, the held-out loss of a
//! status line and the final report. Each takes the neighbours as a [`Neighbours`] (the wire's
//! dendrite or an in-process switchboard) and the metagraph as a [`MetagraphView`], so the same
//! code runs in `agora peer run` and in an in-process market.

use crate::copies::{neutral_answer, Copy, CopyDetector, Provenance, VersionBook};
use crate::files::{FinalReport, FoundCopy};
use crate::metagraph::MetagraphView;
use crate::neighbours::Neighbours;
use crate::run::RunError;
use nucleus::{Batch, Corpus, Nucleus, Split};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use wire::{Modality, ModelVersion, OwnedTensor, Target};

/// Held-out batches a peer keeps for scoring and its reports.
pub const HELD_OUT_BATCHES: usize = 8;
/// Held-out batches per scoring round (taken in turn from the `HELD_OUT_BATCHES`).
pub const SCORE_BATCHES: usize = 4;
/// Weight of a scoring round's measurement in the smoothed score of a neighbour.
pub const SCORE_SMOOTHING: f32 = 0.3;
/// How many standard errors above 0 a neighbour's smoothed score must be to become a weight.
/// A neighbour whose answers change the loss by noise alone (a noise peer, a useless one)
/// then gets exactly 0 instead of a random positive share, and a colluding minority finds no
/// honest validator's stray weight to reach a stake majority with.
pub const SIGNIFICANCE: f32 = 2.0;
/// Consecutive scoring rounds a neighbour may fail to answer before its score is set to 0: one
/// miss may be a slow moment, two in a row is a peer that left (issue 12: nobody is paid for
/// being absent).
pub const MISSES_BEFORE_ZERO: u32 = 2;
/// Seed of the held-out batches, apart from the training data's.
const HELD_OUT_SEED: u64 = 0x68656c64;
/// Data order of pretraining, apart from the run's.
pub const PRETRAIN_DATA_SEED: u64 = 0x7072_6574_7261_696e;

/// What a training step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutcome {
    /// Next-byte loss (nats) of the step on its training batch.
    pub loss: f32,
    /// Neighbours that answered the step's Forward.
    pub answering: usize,
}

/// Which neighbours a batch goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// The k the gate picks (noisy top-k): training and the status line.
    Gate,
    /// Every serving neighbour: scoring rounds and reports.
    All,
}

/// One participant's model, data and running scores of its neighbours.
pub struct Learner {
    nucleus: Arc<RwLock<Nucleus>>,
    uid: u16,
    corpus: Corpus,
    /// Draws the training batches.
    rng: ChaCha8Rng,
    held_out: Vec<Batch>,
    timeout: Duration,
    /// Smoothed scores of the neighbours (the weights' source), with their uncertainty.
    scores: BTreeMap<u16, Score>,
    /// Consecutive scoring rounds each neighbour failed to answer.
    misses: BTreeMap<u16, u32>,
    /// Every neighbour's last answers to the held-out probes, to catch copies (issue 16).
    copies: CopyDetector,
    /// The first publisher of every model version seen on chain (issue 16).
    versions: VersionBook,
    /// Scoring rounds in which each copy was found, over the run (`final.json`).
    found: BTreeMap<Copy, u64>,
    /// The copies found in the last scoring round.
    copiers: BTreeSet<Copy>,
    /// Whether copies are looked for and their copiers scored 0 (on by default; off is the
    /// negative control of the copycat market, `Scenario::copy_detection`).
    detect_copies: bool,
    /// Hotkey of each uid when last seen, so a uid that changed hands starts afresh.
    hotkeys: BTreeMap<u16, [u8; 32]>,
    rounds: u64,
    steps: u64,
}

impl Learner {
    /// `rng` draws the training batches (the run's data order); the held-out batches come from
    /// the model's seed.
    pub fn new(
        nucleus: Nucleus,
        uid: u16,
        corpus: Corpus,
        rng: ChaCha8Rng,
        timeout: Duration,
    ) -> Result<Learner, RunError> {
        let (batch, context, seed) =
            (nucleus.config().batch, nucleus.config().model.context, nucleus.config().seed);
        let held_out =
            corpus.batches(Split::HeldOut, batch, context, HELD_OUT_BATCHES, seed ^ HELD_OUT_SEED)?;
        let neutral = neutral_answer(nucleus.config().model.vocab, nucleus.config().model.output_dim);
        Ok(Learner {
            nucleus: Arc::new(RwLock::new(nucleus)),
            uid,
            corpus,
            rng,
            held_out,
            timeout,
            scores: BTreeMap::new(),
            misses: BTreeMap::new(),
            copies: CopyDetector::with_neutral(neutral),
            versions: VersionBook::new(),
            found: BTreeMap::new(),
            copiers: BTreeSet::new(),
            detect_copies: true,
            hotkeys: BTreeMap::new(),
            rounds: 0,
            steps: 0,
        })
    }

    /// Switches copy detection ([`crate::copies`]) on or off. Off, a copier is scored by what
    /// its answers add like anyone else: the control that shows what detection is for.
    pub fn with_copy_detection(mut self, on: bool) -> Learner {
        self.detect_copies = on;
        self
    }

    /// The model, shared with the axon's handler.
    pub fn nucleus(&self) -> &Arc<RwLock<Nucleus>> {
        &self.nucleus
    }

    /// The peer's uid on the metagraph.
    pub fn uid(&self) -> u16 {
        self.uid
    }

    /// Training steps taken in the network (pretraining not counted).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The scores to turn into weights, by uid: each neighbour's smoothed score where it is
    /// [`SIGNIFICANCE`] standard errors above 0, else 0.
    pub fn scores(&self) -> Vec<(u16, f32)> {
        self.scores.iter().map(|(&u, s)| (u, s.weight())).collect()
    }

    /// The copies the last scoring round found (each copier is weighted 0).
    pub fn copiers(&self) -> &BTreeSet<Copy> {
        &self.copiers
    }

    /// The smoothed scores and their standard errors, by uid, whether significant or not.
    pub fn raw_scores(&self) -> Vec<(u16, f32, f32)> {
        self.scores.iter().map(|(&u, s)| (u, s.mean, s.var.sqrt())).collect()
    }

    /// One step (market paper §9): a batch of D_i, routed by the gate to k neighbours, f_i, the
    /// gate and the student trained on their answers, and each queried neighbour sent the
    /// gradient of the loss w.r.t. its answer (not waited for).
    pub async fn train_step(
        &mut self,
        net: &impl Neighbours,
        view: &MetagraphView,
    ) -> Result<StepOutcome, RunError> {
        let (b, context) = {
            let n = read(&self.nucleus);
            (n.config().batch, n.config().model.context)
        };
        let batch = self.corpus.sample(Split::Train, b, context, &mut self.rng)?;
        let targets = candidates(view, self.uid, read(&self.nucleus).config().slots);
        let (responses, _, _, inputs) =
            query(&self.nucleus, net, &targets, &batch, self.timeout, Routing::Gate).await;
        let answering = responses.iter().filter(|(_, r)| r.is_some()).count();
        let model = self.nucleus.clone();
        let report = tokio::task::spawn_blocking(move || {
            model.write().unwrap_or_else(|e| e.into_inner()).train_step(&batch, &responses)
        })
        .await
        .map_err(|e| RunError::Join(e.to_string()))??;
        self.steps += 1;

        let (grad_targets, grads): (Vec<Target>, Vec<OwnedTensor>) = report
            .grads
            .iter()
            .filter_map(|(uid, g)| {
                let t = targets.get(uid)?;
                let shape = [
                    inputs.shape[0],
                    inputs.shape[1],
                    (g.len() as u64) / (inputs.shape[0] * inputs.shape[1]).max(1),
                ];
                Some((*t, OwnedTensor::from_f32(Modality::Tensor, &shape, g)))
            })
            .unzip();
        net.backward(grad_targets, inputs, grads, self.timeout);
        Ok(StepOutcome { loss: report.loss, answering })
    }

    /// A scoring round over every serving neighbour, not only the k the gate routes to, so
    /// every peer has an opinion of every peer and the stake majority can agree: the increase
    /// of the held-out loss without each neighbour (eq. 2 made empirical) on each of
    /// [`SCORE_BATCHES`] batches, folded into the smoothed scores with their uncertainty. A
    /// neighbour that failed to answer [`MISSES_BEFORE_ZERO`] rounds in a row is scored 0, and
    /// so is one whose answers copy another's, now or in an earlier round (see [`crate::copies`]):
    /// the later registered of the two.
    /// Returns the scores to set as weights ([`Learner::scores`]).
    ///
    /// Several batches a round: a weaker neighbour's contribution is a few thousandths of a
    /// nat, below one batch's noise, and only a consistent sign across the honest peers gives
    /// it a stake majority (consensus) on chain.
    pub async fn scoring_round(
        &mut self,
        net: &impl Neighbours,
        view: &MetagraphView,
    ) -> Result<Vec<(u16, f32)>, RunError> {
        let from = (self.rounds as usize * SCORE_BATCHES) % self.held_out.len();
        let batches: Vec<Batch> =
            (0..SCORE_BATCHES).map(|k| self.held_out[(from + k) % self.held_out.len()].clone()).collect();
        self.rounds += 1;
        let eval = evaluate(&self.nucleus, net, view, self.uid, &batches, self.timeout, Routing::All).await?;
        self.copiers = if self.detect_copies {
            self.find_copies(view, from, &eval.responses, &eval.signed)
        } else {
            BTreeSet::new()
        };
        for (&u, per_batch) in &eval.per_batch {
            let misses = self.misses.entry(u).or_default();
            if eval.answered.contains(&u) {
                *misses = 0;
                let round = Score::of_round(per_batch);
                self.scores.entry(u).and_modify(|s| s.fold(&round)).or_insert(round);
                if self.copiers.iter().any(|c| c.copier == u) {
                    // Nothing of its own: its score starts over, and is 0 while it copies.
                    self.scores.insert(u, Score { mean: 0.0, var: 0.0 });
                }
            } else {
                *misses += 1;
                let s = self.scores.entry(u).or_insert(Score { mean: 0.0, var: 0.0 });
                if *misses >= MISSES_BEFORE_ZERO {
                    *s = Score { mean: 0.0, var: 0.0 };
                } else {
                    s.fold(&Score { mean: 0.0, var: s.var });
                }
            }
        }
        Ok(self.scores())
    }

    /// The copies among this round's answers to the held-out probes `from..` (and the earlier
    /// answers to them); a uid that changed hands is forgotten first.
    fn find_copies(
        &mut self,
        view: &MetagraphView,
        from: usize,
        responses: &[Responses],
        signed: &BTreeMap<u16, ModelVersion>,
    ) -> BTreeSet<Copy> {
        for (uid, hotkey) in view.info().hotkeys.iter().enumerate() {
            let uid = uid as u16;
            if self.hotkeys.insert(uid, hotkey.0).is_some_and(|old| old != hotkey.0) {
                self.copies.forget(uid);
                self.versions.forget(uid);
            }
        }
        let who = |uid: u16| Provenance {
            registered_at: view.registered_at(uid),
            signed: signed.get(&uid).copied(),
            published: view.model(uid),
        };
        let neurons = (0..view.n()).map(|u| (u, view.registered_at(u), view.model(u)));
        let mut found: BTreeSet<Copy> =
            self.versions.observe(neurons).into_iter().filter(|c| c.copier != self.uid).collect();
        for (k, batch) in responses.iter().enumerate() {
            let probe = (from + k) % self.held_out.len();
            let answers: Vec<(u16, &[f32])> =
                batch.iter().filter_map(|(u, r)| r.as_deref().map(|r| (*u, r))).collect();
            found.extend(self.copies.observe(probe, &answers, who));
        }
        for c in &found {
            *self.found.entry(*c).or_default() += 1;
        }
        found
    }

    /// The held-out loss on one batch with the neighbours the gate picks: a status line's.
    pub async fn held_out_loss(&self, net: &impl Neighbours, view: &MetagraphView) -> Result<f32, RunError> {
        let eval =
            evaluate(&self.nucleus, net, view, self.uid, &self.held_out[..1], self.timeout, Routing::Gate)
                .await?;
        Ok(eval.loss)
    }

    /// The last evaluation, on every held-out batch with every neighbour: the peer's own
    /// record of what each neighbour was worth to it (`final.json`).
    pub async fn final_report(
        &self,
        net: &impl Neighbours,
        view: &MetagraphView,
    ) -> Result<FinalReport, RunError> {
        let eval =
            evaluate(&self.nucleus, net, view, self.uid, &self.held_out, self.timeout, Routing::All).await?;
        let student_loss = {
            let n = read(&self.nucleus);
            let mut sum = 0.0;
            for b in &self.held_out {
                sum += n.student_loss(b)?;
            }
            sum / self.held_out.len() as f32
        };
        Ok(FinalReport {
            uid: self.uid,
            steps: self.steps,
            heldout_loss: f64::from(eval.loss),
            student_loss: Some(f64::from(student_loss)),
            ablation: eval.ablation.into_iter().map(|(u, d)| (u.to_string(), f64::from(d))).collect(),
            copies: self
                .found
                .iter()
                .map(|(c, &rounds)| FoundCopy { copier: c.copier, original: c.original, rounds })
                .collect(),
        })
    }
}

/// A smoothed score and the variance of that estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Score {
    mean: f32,
    var: f32,
}

impl Score {
    /// One round's estimate: the mean of its per-batch values and the variance of that mean
    /// (sample variance / batches).
    fn of_round(values: &[f32]) -> Score {
        let n = values.len().max(1) as f32;
        let mean = values.iter().sum::<f32>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / (n - 1.0) / n
        } else {
            0.0
        };
        Score { mean, var }
    }

    /// The exponential moving average with one more round: mean (1-a)m + a x, and the
    /// variance of that weighted sum of independent estimates, (1-a)^2 v + a^2 v_x.
    fn fold(&mut self, round: &Score) {
        let a = SCORE_SMOOTHING;
        self.mean = (1.0 - a) * self.mean + a * round.mean;
        self.var = (1.0 - a).powi(2) * self.var + a * a * round.var;
    }

    /// The weight this score earns: its mean if significantly above 0, else 0.
    fn weight(&self) -> f32 {
        if self.mean > SIGNIFICANCE * self.var.sqrt() {
            self.mean
        } else {
            0.0
        }
    }
}

/// Reads the shared nucleus; a poisoned lock (a panicked training thread) still yields the model.
pub fn read(nucleus: &RwLock<Nucleus>) -> std::sync::RwLockReadGuard<'_, Nucleus> {
    nucleus.read().unwrap_or_else(|e| e.into_inner())
}

/// The peers that can be queried: serving, not `me`, and inside the gate (`uid < slots`).
pub fn candidates(view: &MetagraphView, me: u16, slots: usize) -> BTreeMap<u16, Target> {
    view.serving()
        .into_iter()
        .filter(|(uid, _, _)| *uid != me && usize::from(*uid) < slots)
        .map(|(uid, hotkey, e)| {
            (uid, Target { hotkey: hotkey.0, addr: SocketAddr::new(e.ip.into(), e.port) })
        })
        .collect()
}

/// A batch's bytes as the wire's text tensor `[batch, seq]` of u8: what a Forward carries.
pub fn text_tensor(batch: &Batch) -> OwnedTensor {
    OwnedTensor {
        dtype: wire::DType::U8,
        modality: Modality::Text,
        shape: vec![batch.batch as u64, batch.seq as u64],
        data: batch.tokens.clone().into(),
    }
}

/// A response's values as f32 (other peers, in Python say, may answer in f16 or bf16).
pub fn as_f32(t: &OwnedTensor) -> Option<Vec<f32>> {
    wire::TensorView { dtype: t.dtype, modality: t.modality, shape: &t.shape, data: &t.data }.to_f32_vec()
}

/// The neighbours `routing` picks for `batch` (noisy top-k draws from the gate's generator).
fn choose(
    nucleus: &RwLock<Nucleus>,
    targets: &BTreeMap<u16, Target>,
    batch: &Batch,
    routing: Routing,
) -> Vec<u16> {
    let uids: Vec<u16> = targets.keys().copied().collect();
    match routing {
        Routing::Gate => nucleus.write().unwrap_or_else(|e| e.into_inner()).route(batch, &uids),
        Routing::All => uids,
    }
}

/// What [`ask`] returns: each chosen neighbour's answer (`None` for a failure), the model
/// version each answer was signed with, the targets queried, and the inputs sent.
type Asked = (Vec<(u16, Option<Vec<f32>>)>, Vec<(u16, ModelVersion)>, Vec<Target>, OwnedTensor);

/// Asks the `chosen` neighbours about `batch`.
async fn ask(
    net: &impl Neighbours,
    targets: &BTreeMap<u16, Target>,
    chosen: &[u16],
    batch: &Batch,
    timeout: Duration,
) -> Asked {
    let chosen_targets: Vec<Target> = chosen.iter().filter_map(|u| targets.get(u).copied()).collect();
    let inputs = text_tensor(batch);
    let results = net.forward_signed(&chosen_targets, &inputs, timeout).await;
    let mut versions = Vec::new();
    let mut responses = Vec::with_capacity(chosen.len());
    for (&uid, r) in chosen.iter().zip(results) {
        if let Some((_, v)) = &r {
            versions.push((uid, *v));
        }
        responses.push((uid, r.as_ref().and_then(|(t, _)| as_f32(t))));
    }
    (responses, versions, chosen_targets, inputs)
}

/// [`choose`] then [`ask`].
async fn query(
    nucleus: &RwLock<Nucleus>,
    net: &impl Neighbours,
    targets: &BTreeMap<u16, Target>,
    batch: &Batch,
    timeout: Duration,
    routing: Routing,
) -> Asked {
    let chosen = choose(nucleus, targets, batch, routing);
    ask(net, targets, &chosen, batch, timeout).await
}

/// What each neighbour answered to one batch (`None`: it failed), by uid.
pub type Responses = Vec<(u16, Option<Vec<f32>>)>;

/// An evaluation over some batches.
pub struct Evaluation {
    /// Mean loss.
    pub loss: f32,
    /// Mean increase of the loss when each neighbour is removed (0 for one that never answered).
    pub ablation: BTreeMap<u16, f32>,
    /// The same increase on each batch, in batch order.
    pub per_batch: BTreeMap<u16, Vec<f32>>,
    /// The neighbours that answered at least one batch.
    pub answered: BTreeSet<u16>,
    /// What each neighbour answered, batch by batch.
    pub responses: Vec<Responses>,
    /// The model version each neighbour signed its last answer with (issue 16).
    pub signed: BTreeMap<u16, ModelVersion>,
}

/// Mean loss over `batches` with the neighbours `routing` picks, and the mean increase of that
/// loss when each neighbour is removed (eq. 2 made empirical). Nothing is trained.
pub async fn evaluate(
    nucleus: &Arc<RwLock<Nucleus>>,
    net: &impl Neighbours,
    view: &MetagraphView,
    me: u16,
    batches: &[Batch],
    timeout: Duration,
    routing: Routing,
) -> Result<Evaluation, RunError> {
    let targets = candidates(view, me, read(nucleus).config().slots);
    let mut loss = 0.0;
    let mut ablation = BTreeMap::<u16, f32>::new();
    let mut per_batch = BTreeMap::<u16, Vec<f32>>::new();
    let mut answered = BTreeSet::new();
    // Every batch's question goes out at once: over a slow or lossy network a round costs one
    // deadline, not one per batch. The routing is drawn first, in batch order, so a seeded run
    // draws the same noise.
    let chosen: Vec<Vec<u16>> = batches.iter().map(|b| choose(nucleus, &targets, b, routing)).collect();
    let asked = futures_util::future::join_all(
        batches.iter().zip(&chosen).map(|(b, c)| ask(net, &targets, c, b, timeout)),
    )
    .await;
    let mut all = Vec::with_capacity(batches.len());
    let mut signed = BTreeMap::new();
    for (batch, (responses, versions, _, _)) in batches.iter().zip(asked) {
        signed.extend(versions);
        answered.extend(responses.iter().filter(|(_, r)| r.is_some()).map(|(u, _)| *u));
        let n = read(nucleus);
        loss += n.held_out_loss(batch, &responses)?;
        for (uid, delta) in n.ablation(batch, &responses)? {
            *ablation.entry(uid).or_default() += delta / batches.len() as f32;
            per_batch.entry(uid).or_default().push(delta);
        }
        all.push(responses);
    }
    Ok(Evaluation {
        loss: loss / batches.len().max(1) as f32,
        ablation,
        per_batch,
        answered,
        responses: all,
        signed,
    })
}

/// `steps` pretraining steps (f_i alone on its own training data, the student standing in for
/// the network; see [`Nucleus::pretrain_step`]) on batches drawn from `rng`. The mean loss of
/// the last step, or `None` when `steps` is 0.
pub fn pretrain_steps(
    nucleus: &mut Nucleus,
    corpus: &Corpus,
    steps: u64,
    rng: &mut ChaCha8Rng,
) -> Result<Option<f32>, RunError> {
    let (b, context) = (nucleus.config().batch, nucleus.config().model.context);
    let mut last = None;
    for _ in 0..steps {
        let batch = corpus.sample(Split::Train, b, context, rng)?;
        last = Some(nucleus.pretrain_step(&batch)?.loss);
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_score_becomes_a_weight_only_when_significantly_positive() {
        // Steady, consistent value: significant.
        let mut s = Score::of_round(&[0.05, 0.06, 0.04, 0.05]);
        for _ in 0..5 {
            s.fold(&Score::of_round(&[0.05, 0.055, 0.045, 0.05]));
        }
        assert!(s.weight() > 0.04, "{s:?}");
        // Noise around zero, as a noise peer's answers give: never a weight, even when its
        // mean happens to be positive.
        let mut n = Score::of_round(&[0.03, -0.02, 0.01, -0.015]);
        for k in 0..20 {
            let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
            n.fold(&Score::of_round(&[0.02 * sign, -0.025 * sign, 0.03 * sign, -0.01 * sign]));
        }
        assert_eq!(n.weight(), 0.0, "{n:?}");
        // One batch has no spread to judge by: its mean stands (0 only if not positive).
        assert_eq!(Score::of_round(&[0.2]).weight(), 0.2);
        assert_eq!(Score::of_round(&[-0.2]).weight(), 0.0);
    }

    #[test]
    fn folding_is_the_moving_average_and_its_variance() {
        let mut s = Score { mean: 1.0, var: 0.04 };
        s.fold(&Score { mean: 0.0, var: 0.01 });
        let a = SCORE_SMOOTHING;
        assert!((s.mean - (1.0 - a)).abs() < 1e-6);
        assert!((s.var - ((1.0 - a).powi(2) * 0.04 + a * a * 0.01)).abs() < 1e-7);
    }
}
