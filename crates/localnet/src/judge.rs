//! The independent judge: what each peer is worth, measured from outside the market.
//!
//! The judge is the orchestrator's code, not a peer's. It trains on nothing, scores nothing
//! and reads only the test split of each peer's topic, which no peer trains, pretrains or
//! scores on (`nucleus::Split::Test`). It asks every peer to answer every peer's test batches
//! (through the real dendrite in a process localnet, through the switchboard in an in-process
//! market) and measures, per peer j:
//! - **quality**: the mean next-byte cross-entropy of j's answers on its own topic's test
//!   batches, read back through the network standard with no learned reader
//!   ([`nucleus::StandardReader`], the maximum-entropy reading of the served projection); a
//!   peer that does not answer has none;
//! - **value**: its marginal value to the market, eq. (2) of the market paper measured on unseen
//!   data: for every consumer i (a peer whose model the judge can run: its checkpoint, or the
//!   live model in process), the increase of i's test loss when j's answers are shuffled
//!   between the sequences of i's batch (every answering peer joined by i's clean gate, j's
//!   term answering another sequence, as `Nucleus::ablation` does: permutation importance, so
//!   a peer whose answers say nothing about the input is worth 0), summed over the consumers.
//!
//! Measuring is split from asking: [`Judge::plan`] names the batches, the caller gathers the
//! answers with its transport, and [`Judge::measure`] is a pure computation over them.

use crate::error::LocalnetError;
use nucleus::{Batch, Corpus, Nucleus, Split, StandardReader};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Sequences per test batch and their length: the same for every peer, so every peer can
/// answer every batch (every preset reads a context of 64).
pub const TEST_BATCH: usize = 8;
/// Bytes per test sequence: the presets' shared context.
pub const TEST_CONTEXT: usize = peer::preset::CONTEXT;
/// The judge's batches are always the same (measurements through a run are comparable).
const JUDGE_SEED: u64 = 0x6a75_6467_6521;

/// How much the judge reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JudgeConfig {
    /// Test batches per peer topic.
    pub batches: usize,
    /// Positions per sequence (the last ones, with the most context) read through the standard
    /// for the quality column: the maximum-entropy reading costs far more than a forward pass.
    pub quality_positions: usize,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig { batches: 2, quality_positions: 8 }
    }
}

/// One peer as the judge sees it.
#[derive(Clone, Debug)]
pub struct Subject {
    /// Its uid on the metagraph.
    pub uid: u16,
    /// Its topic: the judge draws this peer's test batches from it.
    pub corpus: Corpus,
}

/// Every peer's answer to one batch: `(uid, Some(values))` or `None` for a failure.
pub type Answers = Vec<(u16, Option<Vec<f32>>)>;

/// The judge's measurement at one block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// The chain's head when the judge measured.
    pub block: u64,
    /// Uids the judge asked.
    pub uids: Vec<u16>,
    /// Per uid in `uids`: quality (nats/byte), `None` when it answered none of its batches.
    pub quality: Vec<Option<f64>>,
    /// Per uid in `uids`: the sum over consumers of their test-loss increase without it.
    pub value: Vec<f64>,
    /// The consumers whose loss was measured.
    pub consumers: Vec<u16>,
    /// `(consumer, provider) -> increase`: what each provider is worth to each consumer.
    pub matrix: BTreeMap<(u16, u16), f64>,
    /// Per consumer: its test loss with every answering peer.
    pub consumer_loss: BTreeMap<u16, f64>,
}

impl Judgement {
    /// The value of `uid` (0 for a uid the judge did not ask).
    pub fn value_of(&self, uid: u16) -> f64 {
        self.uids.iter().position(|&u| u == uid).map_or(0.0, |k| self.value[k])
    }

    /// Values for uids `0..n`, in uid order (0 for uids not asked).
    pub fn values(&self, n: usize) -> Vec<f64> {
        (0..n).map(|u| self.value_of(u as u16)).collect()
    }

    /// The quality of `uid`: its answers' test loss (nats/byte) read through the network standard; `None`
    /// when it was not asked or answered nothing.
    pub fn quality_of(&self, uid: u16) -> Option<f64> {
        self.uids.iter().position(|&u| u == uid).and_then(|k| self.quality[k])
    }
}

/// The judge of one market.
pub struct Judge {
    cfg: JudgeConfig,
    reader: StandardReader,
    /// Per subject, its test batches.
    batches: BTreeMap<u16, Vec<Batch>>,
}

impl Judge {
    /// Draws every subject's test batches (from its topic's test split, the judge's seed).
    pub fn plan(subjects: &[Subject], cfg: JudgeConfig) -> Result<Judge, LocalnetError> {
        let mut batches = BTreeMap::new();
        for s in subjects {
            let b = s
                .corpus
                .batches(Split::Test, TEST_BATCH, TEST_CONTEXT, cfg.batches.max(1), JUDGE_SEED)
                .map_err(|e| LocalnetError::Judge(format!("uid {}: {e}", s.uid)))?;
            batches.insert(s.uid, b);
        }
        Ok(Judge { cfg, reader: StandardReader::new(256, peer::preset::OUTPUT_DIM), batches })
    }

    /// Every `(owner uid, batch)` the peers must answer, in a fixed order.
    pub fn requests(&self) -> Vec<(u16, &Batch)> {
        self.batches.iter().flat_map(|(&u, bs)| bs.iter().map(move |b| (u, b))).collect()
    }

    /// Measures from `answers` (one [`Answers`] per entry of [`Judge::requests`], in order) and
    /// the consumers' models.
    pub fn measure(
        &self,
        block: u64,
        answers: &[Answers],
        consumers: &[(u16, &Nucleus)],
    ) -> Result<Judgement, LocalnetError> {
        let requests = self.requests();
        if answers.len() != requests.len() {
            return Err(LocalnetError::Judge(format!(
                "{} answer sets for {} requests",
                answers.len(),
                requests.len()
            )));
        }
        let uids: Vec<u16> = self.batches.keys().copied().collect();
        let err = |uid: u16, e: nucleus::NucleusError| LocalnetError::Judge(format!("uid {uid}: {e}"));

        // Quality: each peer's answers to its own batches, read through the standard.
        let mut quality = Vec::with_capacity(uids.len());
        for &j in &uids {
            let (mut sum, mut count) = (0.0, 0usize);
            for ((owner, batch), ans) in requests.iter().zip(answers) {
                if *owner != j {
                    continue;
                }
                let Some(Some(values)) = ans.iter().find(|(u, _)| *u == j).map(|(_, v)| v) else { continue };
                if let Some(ce) = self.quality_of(values, batch) {
                    sum += ce;
                    count += 1;
                }
            }
            quality.push((count > 0).then(|| sum / count as f64));
        }

        // Value: each consumer's loss on its own batches with every other peer's answer, and
        // its increase without each of them.
        let mut matrix = BTreeMap::new();
        let mut consumer_loss = BTreeMap::new();
        for &(i, model) in consumers {
            let mut loss = 0.0;
            let mut seen = 0usize;
            for ((owner, batch), ans) in requests.iter().zip(answers) {
                if *owner != i {
                    continue;
                }
                let others: Answers = ans.iter().filter(|(u, _)| *u != i).cloned().collect();
                loss += f64::from(model.held_out_loss(batch, &others).map_err(|e| err(i, e))?);
                for (j, inc) in model.ablation(batch, &others).map_err(|e| err(i, e))? {
                    *matrix.entry((i, j)).or_insert(0.0) += f64::from(inc);
                }
                seen += 1;
            }
            if seen > 0 {
                for ((c, _), v) in matrix.iter_mut() {
                    if *c == i {
                        *v /= seen as f64;
                    }
                }
                consumer_loss.insert(i, loss / seen as f64);
            }
        }
        let value =
            uids.iter().map(|&j| matrix.iter().filter(|((_, p), _)| *p == j).map(|(_, v)| v).sum()).collect();
        Ok(Judgement {
            block,
            uids,
            quality,
            value,
            consumers: consumer_loss.keys().copied().collect(),
            matrix,
            consumer_loss,
        })
    }

    /// Cross-entropy of `values` (`[batch, seq, output_dim]`) at the last
    /// `quality_positions` positions of each sequence; `None` if the shape is wrong or the
    /// values cannot be read.
    fn quality_of(&self, values: &[f32], batch: &Batch) -> Option<f64> {
        let d = self.reader.output_dim();
        if values.len() != batch.batch * batch.seq * d || self.cfg.quality_positions == 0 {
            return None;
        }
        let from = batch.seq.saturating_sub(self.cfg.quality_positions);
        let mut reps = Vec::new();
        let mut targets = Vec::new();
        for s in 0..batch.batch {
            for t in from..batch.seq {
                let k = s * batch.seq + t;
                reps.extend_from_slice(&values[k * d..(k + 1) * d]);
                targets.push(batch.targets[k]);
            }
        }
        self.reader.cross_entropy(&reps, &targets).ok()
    }
}

/// `judge.csv`: one row per peer per judgement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeRow {
    /// The chain's head at the judgement.
    pub block: u64,
    /// The peer's uid.
    pub uid: u16,
    /// Its answers' test loss in nats/byte (empty when it answered none of its batches).
    pub quality: Option<f64>,
    /// What it was worth to the consumers: the sum of their test-loss increases without it.
    pub value: f64,
}

/// The rows of a judgement for `judge.csv`.
pub fn rows(j: &Judgement) -> Vec<JudgeRow> {
    j.uids
        .iter()
        .enumerate()
        .map(|(k, &uid)| JudgeRow { block: j.block, uid, quality: j.quality[k], value: j.value[k] })
        .collect()
}

/// Appends judgements to `DIR/judge.csv` (flushed each time) and writes the last one's
/// consumer-by-provider matrix to `DIR/judge_matrix.csv`.
pub struct JudgeLog {
    dir: std::path::PathBuf,
    writer: csv::Writer<std::fs::File>,
}

/// The judge's measurements in the run directory, one [`JudgeRow`] per peer per judgement.
pub const JUDGE_FILE: &str = "judge.csv";
/// The last judgement's consumer-by-provider values in the run directory.
pub const JUDGE_MATRIX_FILE: &str = "judge_matrix.csv";

impl JudgeLog {
    /// Creates `DIR/judge.csv` (truncating an old one).
    pub fn create(dir: &std::path::Path) -> Result<JudgeLog, LocalnetError> {
        let path = dir.join(JUDGE_FILE);
        let writer = csv::Writer::from_path(&path).map_err(|e| crate::monitor::csv_err(&path, e))?;
        Ok(JudgeLog { dir: dir.to_path_buf(), writer })
    }

    /// Appends a judgement's rows to `judge.csv` and flushes them.
    pub fn write(&mut self, j: &Judgement) -> Result<(), LocalnetError> {
        let path = self.dir.join(JUDGE_FILE);
        for r in rows(j) {
            self.writer.serialize(r).map_err(|e| crate::monitor::csv_err(&path, e))?;
        }
        self.writer.flush().map_err(|e| LocalnetError::io(&path, e))
    }

    /// `consumer,consumer_name,provider,provider_name,increase,consumer_loss`.
    pub fn write_matrix(&self, j: &Judgement, names: &[(String, crate::Role)]) -> Result<(), LocalnetError> {
        let name = |u: u16| names.get(usize::from(u)).map_or(format!("uid{u}"), |n| n.0.clone());
        let mut text = String::from("consumer,consumer_name,provider,provider_name,increase,consumer_loss\n");
        for (&(c, p), v) in &j.matrix {
            let loss = j.consumer_loss.get(&c).copied().unwrap_or(f64::NAN);
            text.push_str(&format!("{c},{},{p},{},{v},{loss}\n", name(c), name(p)));
        }
        let path = self.dir.join(JUDGE_MATRIX_FILE);
        std::fs::write(&path, text).map_err(|e| LocalnetError::io(&path, e))
    }
}

/// Reads `judge.csv` back: the judgements in block order, each as its rows.
pub fn read_judge_csv(path: &std::path::Path) -> Result<Vec<(u64, Vec<JudgeRow>)>, LocalnetError> {
    let mut r = csv::Reader::from_path(path).map_err(|e| crate::monitor::csv_err(path, e))?;
    let mut out: BTreeMap<u64, Vec<JudgeRow>> = BTreeMap::new();
    for row in r.deserialize::<JudgeRow>() {
        let row = row.map_err(|e| crate::monitor::csv_err(path, e))?;
        out.entry(row.block).or_default().push(row);
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nucleus::NucleusConfig;

    fn subjects() -> Vec<Subject> {
        ["computers", "food", "science"]
            .iter()
            .enumerate()
            .map(|(u, t)| Subject { uid: u as u16, corpus: Corpus::builtin(t).unwrap() })
            .collect()
    }

    fn tiny(seed: u64) -> Nucleus {
        let mut cfg = NucleusConfig::tiny(seed);
        cfg.model.context = TEST_CONTEXT;
        cfg.student.context = TEST_CONTEXT;
        cfg.model.output_dim = peer::preset::OUTPUT_DIM;
        cfg.student.output_dim = peer::preset::OUTPUT_DIM;
        Nucleus::new(cfg).unwrap()
    }

    #[test]
    fn the_judge_reads_only_the_test_split_and_the_same_batches_every_time() {
        let s = subjects();
        let a = Judge::plan(&s, JudgeConfig { batches: 2, quality_positions: 2 }).unwrap();
        let b = Judge::plan(&s, JudgeConfig { batches: 2, quality_positions: 2 }).unwrap();
        assert_eq!(a.requests().len(), 6);
        let texts: Vec<&Batch> = a.requests().into_iter().map(|(_, x)| x).collect();
        assert_eq!(texts, b.requests().into_iter().map(|(_, x)| x).collect::<Vec<_>>());
        for (owner, batch) in a.requests() {
            let test = &s[usize::from(owner)].corpus.test;
            let window = &batch.tokens[..TEST_CONTEXT];
            assert!(
                test.windows(TEST_CONTEXT).any(|w| w == window),
                "uid {owner}: a batch not from its test split"
            );
        }
    }

    #[test]
    fn values_sum_what_each_provider_is_worth_to_each_consumer() {
        let s = subjects();
        let judge = Judge::plan(&s, JudgeConfig { batches: 1, quality_positions: 2 }).unwrap();
        let models: Vec<Nucleus> = (0..3).map(tiny).collect();
        // Uid 2 never answers; uids 0 and 1 answer with their models.
        let answers: Vec<Answers> = judge
            .requests()
            .into_iter()
            .map(|(_, batch)| {
                (0..3u16)
                    .map(|u| {
                        let v = (u < 2).then(|| {
                            models[usize::from(u)]
                                .serve_forward(&batch.tokens, batch.batch, batch.seq)
                                .unwrap()
                        });
                        (u, v)
                    })
                    .collect()
            })
            .collect();
        let consumers: Vec<(u16, &Nucleus)> = models.iter().enumerate().map(|(u, m)| (u as u16, m)).collect();
        let j = judge.measure(7, &answers, &consumers).unwrap();
        assert_eq!((j.block, j.uids.clone(), j.consumers.clone()), (7, vec![0, 1, 2], vec![0, 1, 2]));
        for (k, &p) in j.uids.iter().enumerate() {
            let column: f64 = j.matrix.iter().filter(|((_, q), _)| *q == p).map(|(_, v)| v).sum();
            assert!((column - j.value[k]).abs() < 1e-12);
            assert!(!j.matrix.contains_key(&(p, p)), "nobody is its own consumer");
        }
        assert_eq!(j.value_of(2), 0.0, "a peer that never answers is worth nothing");
        assert!(j.quality_of(0).is_some() && j.quality_of(1).is_some());
        assert_eq!(j.quality_of(2), None);
        assert!(judge.measure(7, &answers[..1], &consumers).is_err(), "answers must match the requests");
    }
}
