//! Copy detection (issue 16): a validator flags a neighbour whose answers to its probes are
//! (near) copies of another neighbour's, now or earlier, and weights it zero. A market that pays
//! for answers must not pay twice for one model: a peer that relays another's answers (the
//! localnet's `copycat`) adds nothing its original does not.
//!
//! The probes are the validator's held-out batches, asked again every few scoring rounds, so
//! an answer can be compared with every other neighbour's answer to the same probe in the same
//! round and with the last one they gave before (a copier that relays with a delay, or replays
//! what it recorded).
//!
//! Measure: the distance of two answers to the same probe relative to what they say,
//! `d(a, b) = ||a - b|| / max(||a - c||, ||b - c||)`, where c is the answer that says nothing:
//! the uniform next-byte distribution in the network standard (`B^T u`, [`neutral_answer`]),
//! at every position. Every peer serves a projected next-byte distribution in one shared
//! basis, so raw answers share a large common part (two untrained models of other seeds are
//! 0.013 apart in plain relative L2, two trained 30 steps on the same topic 0.06): measured from
//! c, what differs is what each model learned. Two honest tiny models of the same topic and
//! data from other seeds, trained alike, are measured (`cargo test -p peer honest_models --
//! --nocapture`, one probe of science): 1.40 apart untrained, 0.24 after 5 steps, 0.11 after
//! 10, 0.084 after 20, 0.063 after 30 (the closest: both have learned the topic's byte
//! frequencies and little else), 0.11 after 60, 0.28 after 100, 0.40 after 300 and 0.37 after
//! 1,000. A relay is exactly 0 from its original. [`COPY_DISTANCE`] is 0.01, six times below
//! the closest honest pair: a copy must move by 1% of what its original says to pass, which
//! the validators' ablation then measures as the worse answer it is.
//!
//! Which of a pair is the copier (issue 16: "the later-registered or the one whose version
//! appeared later"), decided pair by pair ([`Provenance::junior`]):
//! 1. the one whose answers contradict the model version it published on chain
//!    ([`VersionCheck::Contradicts`]: it signs no model, or an older step than it published,
//!    while it published one) and the other's do not: a relay signs for no model of its own;
//! 2. both signing the same model version: the one that published it on chain later (or not
//!    at all): whose version appeared later (publications within [`SIMULTANEOUS_BLOCKS`] of each
//!    other are a race, not an order: then the later registered);
//! 3. otherwise the one registered later (`registered_at`, ties to the higher uid): the
//!    incumbent keeps its place, whichever answered first in time.
//!
//! A neighbour that publishes on chain a model version another neuron published first (the
//! localnet's `duplicate`: it joins with a copy of its original's checkpoint, so both publish
//! the same parameter hash) serves that neuron's model: [`VersionBook`] remembers the first
//! publisher of every version seen and flags the later one as its copier for as long as it
//! holds its uid, whatever its answers become as it trains on top of the copy. A hash of all
//! parameters is equal only for equal models, so honest peers are never flagged this way.
//!
//! A copier that forwards with a delay answers a probe with what its original answered to it
//! rounds before: each neighbour's last [`HISTORY`] answers to each probe are kept, so a relay
//! delayed by up to that many of the probe's rounds is caught; memory is bounded by probes x
//! neighbours x [`HISTORY`] answers.

use ledger::PublishedModel;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use wire::ModelVersion;

/// Earlier answers kept per neighbour and probe: how many of a probe's rounds a delayed relay
/// may lag and still be caught. A held-out probe comes back every other scoring round
/// ([`crate::learner::HELD_OUT_BATCHES`] / [`crate::learner::SCORE_BATCHES`]), so 4 covers a lag
/// of up to 8 scoring rounds.
pub const HISTORY: usize = 4;

/// Two answers closer than this ([`relative_distance`] from the neutral answer) are one model's.
pub const COPY_DISTANCE: f32 = 0.01;

/// `||a - b|| / max(||a - c||, ||b - c||)`, with `neutral` (c at one position: it repeats
/// along the answers; empty for zero) subtracted; `None` when the answers differ in length, or
/// their length is not a multiple of the neutral answer's (not comparable), or both say
/// nothing (`a = b = c`).
pub fn relative_distance(a: &[f32], b: &[f32], neutral: &[f32]) -> Option<f32> {
    if a.len() != b.len() || (!neutral.is_empty() && !a.len().is_multiple_of(neutral.len())) {
        return None;
    }
    let (mut diff, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let c = if neutral.is_empty() { 0.0 } else { f64::from(neutral[i % neutral.len()]) };
        let (x, y) = (f64::from(*x) - c, f64::from(*y) - c);
        diff += (x - y) * (x - y);
        na += x * x;
        nb += y * y;
    }
    let norm = na.max(nb).sqrt();
    (norm > 0.0).then(|| (diff.sqrt() / norm) as f32)
}

/// The answer that says nothing at one position: the uniform distribution over `vocab` symbols
/// projected on the network standard's basis ([`nucleus::model::standard_basis_values`]),
/// `c_d = (1/vocab) Σ_v B_vd`.
pub fn neutral_answer(vocab: usize, output_dim: usize) -> Vec<f32> {
    let basis = nucleus::model::standard_basis_values(vocab, output_dim);
    let mut c = vec![0.0f64; output_dim];
    for row in basis.chunks_exact(output_dim.max(1)) {
        for (c, b) in c.iter_mut().zip(row) {
            *c += f64::from(*b);
        }
    }
    c.into_iter().map(|x| (x / vocab.max(1) as f64) as f32).collect()
}

/// A neighbour found copying another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Copy {
    /// The uid whose answers repeat another's.
    pub copier: u16,
    /// The uid whose answers or published model it copies.
    pub original: u16,
}

/// What a validator knows of one neighbour when it judges who copied whom: when it registered,
/// the model version signed into its answers this round, and the version it published on chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Provenance {
    /// The block at which it registered: when nothing else decides, the later registered of a
    /// pair is the copier.
    pub registered_at: u64,
    /// `None`: it did not answer this round (or the transport carries no signature).
    pub signed: Option<ModelVersion>,
    /// The model version it published on chain, if any.
    pub published: Option<PublishedModel>,
}

/// How the version signed into a neighbour's answer stands to the one it published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionCheck {
    /// It answers with the model it published, or a later step of it (it trained since: the
    /// chain hears of a new version at most once per publication interval).
    Agrees,
    /// Nothing to compare: it published no model, or its answer carried no signature.
    Unknown,
    /// It published a model but signs its answers with none, or with an earlier step than it
    /// published: the answers are not its published model's.
    Contradicts,
}

/// Compares a signed answer's version with the published one.
pub fn check_version(signed: Option<ModelVersion>, published: Option<PublishedModel>) -> VersionCheck {
    let (Some(v), Some(p)) = (signed, published) else { return VersionCheck::Unknown };
    if v.id == p.version.0 || (!v.is_unversioned() && v.step >= p.step) {
        VersionCheck::Agrees
    } else {
        VersionCheck::Contradicts
    }
}

impl Provenance {
    /// How the version it signed stands to the one it published ([`check_version`]).
    pub fn check(&self) -> VersionCheck {
        check_version(self.signed, self.published)
    }

    /// Of `a` (uid, provenance) and `b`, which copies which (see the module doc).
    pub fn junior(a: (u16, &Provenance), b: (u16, &Provenance)) -> Copy {
        let copy = |copier: (u16, &Provenance), original: (u16, &Provenance)| Copy {
            copier: copier.0,
            original: original.0,
        };
        let contradicts = |p: &Provenance| p.check() == VersionCheck::Contradicts;
        match (contradicts(a.1), contradicts(b.1)) {
            (true, false) => return copy(a, b),
            (false, true) => return copy(b, a),
            _ => {}
        }
        // Both sign one model: whoever published it first is its owner.
        if let (Some(va), Some(vb)) = (a.1.signed, b.1.signed) {
            if va.id == vb.id && !va.is_unversioned() {
                let appeared = |p: &Provenance| {
                    p.published.filter(|m| m.version.0 == va.id).map_or(u64::MAX, |m| m.published_at)
                };
                let (pa, pb) = (appeared(a.1), appeared(b.1));
                if pa != pb {
                    let (ka, kb) = ((pa, a.1.registered_at, a.0), (pb, b.1.registered_at, b.0));
                    return if earlier(kb, ka) { copy(a, b) } else { copy(b, a) };
                }
            }
        }
        if (a.1.registered_at, a.0) > (b.1.registered_at, b.0) {
            copy(a, b)
        } else {
            copy(b, a)
        }
    }
}

/// Versions remembered by [`VersionBook`] at most (the oldest publications are forgotten
/// first): 16 versions for each of 256 neurons.
pub const BOOK_CAPACITY: usize = 4096;

/// The first publication seen of each model version on chain, and who published a version
/// someone else had published before.
#[derive(Debug, Default)]
pub struct VersionBook {
    /// version -> (block, registered_at, uid) of its first publisher.
    first: BTreeMap<[u8; 32], (u64, u64, u16)>,
    /// copier -> the neuron whose version it published later.
    copied: BTreeMap<u16, u16>,
}

impl VersionBook {
    /// An empty book: no neighbour seen, no copy found.
    pub fn new() -> VersionBook {
        VersionBook::default()
    }

    /// Reads the chain's published versions (`(uid, registered_at, published)` per neuron) and
    /// returns every neighbour known to have published a version another published first
    /// ([`earlier`] decides who was first).
    pub fn observe(
        &mut self,
        neurons: impl IntoIterator<Item = (u16, u64, Option<PublishedModel>)>,
    ) -> BTreeSet<Copy> {
        for (uid, registered_at, published) in neurons {
            let Some(m) = published else { continue };
            let key = (m.published_at, registered_at, uid);
            let first = self.first.entry(m.version.0).or_insert(key);
            if first.2 == uid {
                continue;
            }
            if earlier(key, *first) {
                let later = std::mem::replace(first, key);
                self.copied.insert(later.2, uid);
            } else {
                self.copied.insert(uid, first.2);
            }
        }
        while self.first.len() > BOOK_CAPACITY {
            let oldest = self.first.iter().min_by_key(|(_, k)| k.0).map(|(v, _)| *v);
            if let Some(v) = oldest {
                self.first.remove(&v);
            }
        }
        self.copied.iter().map(|(&copier, &original)| Copy { copier, original }).collect()
    }

    /// Forgets a uid (it went to someone else): its publications and its verdicts.
    pub fn forget(&mut self, uid: u16) {
        self.first.retain(|_, k| k.2 != uid);
        self.copied.retain(|&c, &mut o| c != uid && o != uid);
    }
}

/// Publications of one version this many blocks apart or closer are simultaneous: peers that
/// start with the same model (the localnet's duplicate and its original) race each other to the
/// chain, and the block that wins says nothing about who had the model first.
pub const SIMULTANEOUS_BLOCKS: u64 = 10;

/// Whether the publication `a = (published_at, registered_at, uid)` of a version counts as
/// before `b`'s: clearly earlier (more than [`SIMULTANEOUS_BLOCKS`]), else by registration,
/// then uid.
pub fn earlier(a: (u64, u64, u16), b: (u64, u64, u16)) -> bool {
    if a.0.abs_diff(b.0) > SIMULTANEOUS_BLOCKS {
        a.0 < b.0
    } else {
        (a.1, a.2) < (b.1, b.2)
    }
}

/// Remembers each neighbour's last [`HISTORY`] answers to each probe, and finds copies among
/// new answers. Its memory is bounded by probes x neighbours x [`HISTORY`] answers.
#[derive(Debug, Default)]
pub struct CopyDetector {
    /// (probe, uid) -> that uid's last answers to that probe, oldest first.
    earlier: BTreeMap<(usize, u16), VecDeque<Vec<f32>>>,
    /// The answer that says nothing, at one position ([`neutral_answer`]; empty: zero).
    neutral: Vec<f32>,
}

impl CopyDetector {
    /// Distances measured from zero.
    pub fn new() -> CopyDetector {
        CopyDetector::default()
    }

    /// Distances measured from `neutral`, the answer that says nothing at one position.
    pub fn with_neutral(neutral: Vec<f32>) -> CopyDetector {
        CopyDetector { earlier: BTreeMap::new(), neutral }
    }

    /// Compares this round's `answers` to `probe` with each other and with every other
    /// neighbour's earlier answers to it (its last [`HISTORY`]), records them, and returns the
    /// copies found (each pair once). `who(uid)` is what is known of a neighbour's provenance:
    /// [`Provenance::junior`] decides which of a pair is the copier.
    pub fn observe(
        &mut self,
        probe: usize,
        answers: &[(u16, &[f32])],
        who: impl Fn(u16) -> Provenance,
    ) -> BTreeSet<Copy> {
        let mut found = BTreeSet::new();
        let junior = |a: u16, b: u16| Provenance::junior((a, &who(a)), (b, &who(b)));
        let neutral = &self.neutral;
        let close =
            |a: &[f32], b: &[f32]| relative_distance(a, b, neutral).is_some_and(|d| d < COPY_DISTANCE);
        for (i, &(a, answer)) in answers.iter().enumerate() {
            // Now: every pair of this round.
            for &(b, other) in &answers[i + 1..] {
                if a != b && close(answer, other) {
                    found.insert(junior(a, b));
                }
            }
            // Before: what the others answered in earlier rounds (a delayed relay of them). Now
            // `a` answers what `b` said before, so `a` is the copier whatever the provenance:
            // the original said it first.
            for (&(p, b), earlier) in self.earlier.range((probe, 0)..=(probe, u16::MAX)) {
                debug_assert_eq!(p, probe);
                if a != b && earlier.iter().any(|e| close(answer, e)) {
                    let now_alike = answers.iter().any(|&(u, x)| u == b && close(answer, x));
                    // Both still alike now: the pair was judged above.
                    if !now_alike {
                        found.insert(Copy { copier: a, original: b });
                    }
                }
            }
        }
        for &(uid, answer) in answers {
            let kept = self.earlier.entry((probe, uid)).or_default();
            if kept.len() == HISTORY {
                kept.pop_front();
            }
            kept.push_back(answer.to_vec());
        }
        found
    }

    /// Forgets a neighbour (it left, or its uid went to someone else).
    pub fn forget(&mut self, uid: u16) {
        self.earlier.retain(|&(_, u), _| u != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A neighbour known only by its registration block (no versions signed or published).
    fn registered_at(block: u64) -> Provenance {
        Provenance { registered_at: block, ..Provenance::default() }
    }

    fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }

    proptest! {
        /// The distance is symmetric, zero exactly for equal answers, scale-free, and in [0, 2].
        #[test]
        fn the_distance_is_a_relative_metric(
            a in proptest::collection::vec(-10.0f32..10.0, 1..50),
            seed in any::<u64>(),
            scale in 0.1f32..10.0,
        ) {
            let b = gaussian(a.len(), seed);
            let (ab, ba) = (relative_distance(&a, &b, &[]), relative_distance(&b, &a, &[]));
            prop_assert_eq!(ab, ba);
            if let Some(d) = ab {
                prop_assert!((0.0..=2.0 + 1e-6).contains(&d), "{}", d);
                let scaled: Vec<f32> = a.iter().map(|x| x * scale).collect();
                let sb: Vec<f32> = b.iter().map(|x| x * scale).collect();
                let ds = relative_distance(&scaled, &sb, &[]).unwrap();
                prop_assert!((ds - d).abs() < 1e-4, "{} vs {}", ds, d);
                // Measured from a neutral answer c, it is the same as the distance of a - c and
                // b - c from zero.
                let c = [0.5f32];
                let (ac, bc): (Vec<f32>, Vec<f32>) = (a.iter().map(|x| x - 0.5).collect(), b.iter().map(|x| x - 0.5).collect());
                if let (Some(x), Some(y)) = (relative_distance(&a, &b, &c), relative_distance(&ac, &bc, &[])) {
                    prop_assert!((x - y).abs() < 1e-3, "{} vs {}", x, y);
                }
            }
            if a.iter().any(|x| *x != 0.0) {
                prop_assert_eq!(relative_distance(&a, &a, &[]), Some(0.0));
            }
        }
    }

    #[test]
    fn answers_of_other_lengths_or_all_zero_are_not_compared() {
        assert_eq!(relative_distance(&[1.0, 2.0], &[1.0], &[]), None);
        assert_eq!(relative_distance(&[0.0; 3], &[0.0; 3], &[]), None);
        assert_eq!(relative_distance(&[1.0; 3], &[1.0; 3], &[1.0]), None, "both say nothing");
        assert_eq!(relative_distance(&[1.0; 3], &[1.0; 3], &[1.0, 1.0]), None, "3 positions of 2?");
    }

    #[test]
    fn a_relay_now_or_later_is_caught_and_the_later_registered_is_the_copier() {
        let registered = |uid: u16| registered_at([10u64, 20, 30, 5][usize::from(uid)]);
        let original = gaussian(512, 1);
        let other = gaussian(512, 2);
        // Relayed with noise of 0.2% of its norm: still a copy.
        let noisy: Vec<f32> = original.iter().zip(gaussian(512, 3)).map(|(o, n)| o + 0.002 * n).collect();
        let mut d = CopyDetector::new();
        let found = d.observe(0, &[(0, &original), (1, &other), (2, &noisy)], registered);
        assert_eq!(found, BTreeSet::from([Copy { copier: 2, original: 0 }]));
        // Uid 3 registered first: the copier is uid 0, whichever of them answers first.
        let found = d.observe(1, &[(0, &original), (3, &original)], registered);
        assert_eq!(found, BTreeSet::from([Copy { copier: 0, original: 3 }]));
        // A delayed relay: uid 2 now answers probe 0 with what uid 1 said a round ago, and uid 1
        // has moved on (it trained). Another probe's answer is never compared.
        let moved = gaussian(512, 4);
        let found = d.observe(0, &[(1, &moved), (2, &other)], registered);
        assert_eq!(found, BTreeSet::from([Copy { copier: 2, original: 1 }]));
        let found = d.observe(5, &[(2, &original)], registered);
        assert!(found.is_empty(), "{found:?}");
        // Its own earlier answer is no copy (a frozen model repeats itself).
        let found = d.observe(0, &[(1, &moved)], registered);
        assert!(found.is_empty(), "{found:?}");
        d.forget(1);
        let found = d.observe(0, &[(2, &moved)], registered);
        assert!(found.is_empty(), "forgotten: {found:?}");
    }

    /// A copier that relays with a delay: at each round it answers the probe with what its
    /// original answered `delay` rounds before, while the original trains (answers anew each
    /// round). Caught for every delay the history covers; one round beyond, it is not (the
    /// bound of [`HISTORY`]).
    #[test]
    fn a_relay_delayed_by_up_to_the_history_is_caught() {
        let registered = |uid: u16| registered_at(u64::from(uid));
        for delay in 1..=HISTORY + 1 {
            let original: Vec<Vec<f32>> = (0..12).map(|r| gaussian(256, 100 + r)).collect();
            let mut d = CopyDetector::new();
            let mut caught = BTreeSet::new();
            for round in 0..original.len() {
                // Uid 0 the copier (registered first even), uid 1 the original, uid 2 honest.
                let mut answers: Vec<(u16, &[f32])> = vec![(1, &original[round])];
                let honest = gaussian(256, 1_000 + round as u64);
                answers.push((2, &honest));
                if round >= delay {
                    answers.push((0, &original[round - delay]));
                }
                caught.extend(d.observe(7, &answers, registered));
            }
            if delay <= HISTORY {
                assert_eq!(caught, BTreeSet::from([Copy { copier: 0, original: 1 }]), "delay {delay}");
            } else {
                assert!(caught.is_empty(), "delay {delay} is beyond the history: {caught:?}");
            }
        }
    }

    fn version(id: u8, step: u64) -> ModelVersion {
        ModelVersion { id: [id; 32], step }
    }

    fn published(id: u8, step: u64, at: u64) -> Option<PublishedModel> {
        Some(PublishedModel { version: ledger::Hash([id; 32]), step, published_at: at })
    }

    #[test]
    fn a_signed_version_agrees_with_the_published_one_or_a_later_step_of_it() {
        let p = published(1, 10, 5);
        assert_eq!(check_version(Some(version(1, 10)), p), VersionCheck::Agrees);
        assert_eq!(check_version(Some(version(2, 12)), p), VersionCheck::Agrees, "trained since");
        assert_eq!(check_version(Some(version(2, 9)), p), VersionCheck::Contradicts, "an older model");
        assert_eq!(check_version(Some(ModelVersion::UNVERSIONED), p), VersionCheck::Contradicts);
        assert_eq!(check_version(Some(version(2, 9)), None), VersionCheck::Unknown);
        assert_eq!(check_version(None, p), VersionCheck::Unknown);
    }

    /// Issue 16's orderings: the one whose answers contradict its published version copies,
    /// whenever it registered; of two signing one version, the later publisher copies; with
    /// nothing to tell them apart, the later registered.
    #[test]
    fn the_copier_is_told_by_versions_before_registration() {
        let answer = gaussian(256, 5);
        let pair = |a: Provenance, b: Provenance| {
            let mut d = CopyDetector::new();
            let found = d.observe(0, &[(0, &answer), (1, &answer)], |u| if u == 0 { a } else { b });
            assert_eq!(found.len(), 1);
            found.into_iter().next().unwrap()
        };
        // Uid 0 registered first but relays: it signs no model though it published one.
        let relay = Provenance {
            registered_at: 1,
            signed: Some(ModelVersion::UNVERSIONED),
            published: published(3, 4, 2),
        };
        let honest =
            Provenance { registered_at: 9, signed: Some(version(4, 40)), published: published(4, 30, 12) };
        assert_eq!(pair(relay, honest), Copy { copier: 0, original: 1 });
        // Both sign version 5: uid 1 published it at block 20, uid 0 at 40 (or never).
        let early =
            Provenance { registered_at: 9, signed: Some(version(5, 50)), published: published(5, 50, 20) };
        let late =
            Provenance { registered_at: 1, signed: Some(version(5, 50)), published: published(5, 50, 40) };
        assert_eq!(pair(late, early), Copy { copier: 0, original: 1 });
        let never = Provenance { published: published(6, 10, 3), ..late };
        assert_eq!(pair(never, early), Copy { copier: 0, original: 1 });
        // Published 5 blocks apart: a race; the later registered (uid 1) copies.
        let close = Provenance { published: published(5, 50, 25), ..late };
        assert_eq!(pair(close, early), Copy { copier: 1, original: 0 });
        // Nothing on chain: the later registered copies.
        assert_eq!(pair(registered_at(5), registered_at(3)), Copy { copier: 0, original: 1 });
    }

    /// The duplicate's case: it publishes the version its original published first (the same
    /// checkpoint), and stays flagged after both trained on; two neurons publishing other
    /// versions are not flagged, nor is one republishing its own; a uid that changed hands
    /// starts afresh.
    #[test]
    fn a_neuron_publishing_a_version_published_before_by_another_is_its_copier() {
        let mut book = VersionBook::new();
        // Block 5: uid 0 publishes version 1; uid 2 version 2.
        let found = book.observe([(0, 1, published(1, 0, 5)), (1, 2, None), (2, 3, published(2, 0, 5))]);
        assert!(found.is_empty(), "{found:?}");
        // Block 6: uid 1 publishes version 1 too.
        let found = book.observe([
            (0, 1, published(1, 0, 5)),
            (1, 2, published(1, 0, 6)),
            (2, 3, published(2, 0, 5)),
        ]);
        assert_eq!(found, BTreeSet::from([Copy { copier: 1, original: 0 }]));
        // Both trained: new versions of their own, and uid 2 republishes. Still a copy.
        let found = book.observe([
            (0, 1, published(3, 9, 50)),
            (1, 2, published(4, 9, 51)),
            (2, 3, published(5, 9, 50)),
        ]);
        assert_eq!(found, BTreeSet::from([Copy { copier: 1, original: 0 }]));
        // Within SIMULTANEOUS_BLOCKS: a race, the later registered copies, whichever landed
        // first; clearly earlier, the first publisher owns it.
        let found = book.observe([(3, 9, published(7, 0, 60)), (4, 8, published(7, 0, 65))]);
        assert!(found.contains(&Copy { copier: 3, original: 4 }), "{found:?}");
        let found = book.observe([(5, 9, published(8, 0, 60)), (6, 8, published(8, 0, 71))]);
        assert!(found.contains(&Copy { copier: 6, original: 5 }), "{found:?}");
        book.forget(1);
        assert!(!book.observe([]).iter().any(|c| c.copier == 1));
    }

    /// The other side: two honest peers on the same topic, trained alike from other seeds, are
    /// never taken for copies, at 30 steps (the closest the measurements in the module doc
    /// found) or 300, nor untrained; pretrained alike from the same seed (the localnet's
    /// duplicate) they are one model. `COPY_STEPS=N` measures another point (printed with
    /// --nocapture).
    #[test]
    fn honest_models_of_the_same_topic_are_far_apart() {
        let points: Vec<usize> = match std::env::var("COPY_STEPS").ok().and_then(|s| s.parse().ok()) {
            Some(n) => vec![n],
            None => vec![0, 30, 300],
        };
        for steps in points {
            honest_models_after(steps);
        }
    }

    fn honest_models_after(steps: usize) {
        use nucleus::{Corpus, Nucleus, NucleusConfig, Split};
        let corpus = Corpus::builtin("science").unwrap();
        let trained = |seed: u64| {
            let mut n = Nucleus::new(NucleusConfig::tiny(seed)).unwrap();
            let c = n.config().clone();
            for b in corpus.batches(Split::Train, c.batch, c.model.context, steps, 5).unwrap() {
                n.pretrain_step(&b).unwrap();
            }
            n
        };
        let (a, b, twin) = (trained(1), trained(2), trained(1));
        let c = a.config().clone();
        let neutral = neutral_answer(256, c.model.output_dim);
        let probe = &corpus.batches(Split::HeldOut, c.batch, c.model.context, 1, 9).unwrap()[0];
        let answer = |n: &Nucleus| n.serve_forward(&probe.tokens, probe.batch, probe.seq).unwrap();
        let d = relative_distance(&answer(&a), &answer(&b), &neutral).unwrap();
        let raw = relative_distance(&answer(&a), &answer(&b), &[]).unwrap();
        eprintln!("two honest models of the same topic, {steps} steps: {d:.3} apart from the neutral answer, {raw:.3} in plain relative L2");
        assert!(d > 5.0 * COPY_DISTANCE, "{steps} steps: {d}");
        assert_eq!(relative_distance(&answer(&a), &answer(&twin), &neutral), Some(0.0));
        let mut detector = CopyDetector::with_neutral(neutral);
        let (x, y) = (answer(&a), answer(&b));
        assert!(detector.observe(0, &[(0, &x), (1, &y)], |u| registered_at(u64::from(u))).is_empty());
    }

    #[test]
    fn unrelated_answers_are_far_apart() {
        let mut d = CopyDetector::new();
        let answers: Vec<Vec<f32>> = (0..8).map(|s| gaussian(256, s)).collect();
        let refs: Vec<(u16, &[f32])> =
            answers.iter().enumerate().map(|(u, a)| (u as u16, a.as_slice())).collect();
        assert!(d.observe(0, &refs, |u| registered_at(u64::from(u))).is_empty());
    }
}
