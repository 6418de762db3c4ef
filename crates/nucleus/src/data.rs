//! A peer's dataset D_i: text loaded from fortune files (entries separated by lines holding just
//! `%`, as in Debian's `fortunes` package), plain text files, or a directory of them; split into
//! train, held-out and test parts deterministically; sampled as byte batches from a seed.
//!
//! The three parts have three owners: a peer trains (and pretrains) on `Train`, scores its
//! neighbours on `HeldOut`, and never reads `Test`, which belongs to the market's independent
//! judge (DESIGN.md: value is judged from outside the market, on data no peer has seen).

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{DataError, NucleusError};

/// Topic files shipped in `crates/nucleus/data/` (first ~32 KB of the same-named `fortunes`
/// files, BSD licence, see `data/README.md`), for tests and machines without the package.
pub const BUILTIN_TOPICS: [&str; 4] = ["computers", "food", "science", "startrek"];

fn builtin_bytes(topic: &str) -> Option<&'static [u8]> {
    match topic {
        "computers" => Some(include_bytes!("../data/computers")),
        "food" => Some(include_bytes!("../data/food")),
        "science" => Some(include_bytes!("../data/science")),
        "startrek" => Some(include_bytes!("../data/startrek")),
        _ => None,
    }
}

/// Where fortunes topics are looked for, in order: `AGORA_FORTUNES_DIR` if set, then Debian's
/// `fortunes` package (`/usr/share/games/fortunes`); the built-in sample comes after them.
pub fn fortune_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("AGORA_FORTUNES_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("/usr/share/games/fortunes"));
    dirs
}

/// Entries are dealt in rounds of `HELD_OUT_EVERY` by their position in the source: the last of
/// each round is held out, the middle one is test, the rest train.
pub const HELD_OUT_EVERY: usize = 10;
/// Position within a round of the entry that goes to the test part.
const TEST_SLOT: usize = HELD_OUT_EVERY / 2 - 1;

/// Which part of a corpus to sample from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// What a peer trains and pretrains on.
    Train,
    /// What a peer scores its neighbours on (the weights it sets) and reports its loss on.
    HeldOut,
    /// Seen by no peer: the judge's measurements only.
    Test,
}

/// A text corpus as bytes (the tokenizer is the identity on bytes: vocabulary 256, nothing to
/// download). Entries are joined by a blank line.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// The topic or file it came from, for messages and reports.
    pub name: String,
    /// The bytes the peer trains f_i on (its dataset D_i).
    pub train: Vec<u8>,
    /// Bytes held out of training: what a peer scores its neighbours on (its weights) and reports its loss
    /// on.
    pub held_out: Vec<u8>,
    /// Bytes no peer reads: the independent judge's measurements only.
    pub test: Vec<u8>,
}

/// Splits fortune-file text into entries: blocks separated by lines holding just `%`.
pub fn fortune_entries(text: &str) -> Vec<String> {
    let mut entries = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim_end() == "%" {
            if !current.trim().is_empty() {
                entries.push(std::mem::take(&mut current));
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    if !current.trim().is_empty() {
        entries.push(current);
    }
    entries
}

/// Splits plain text into entries at blank lines (paragraphs).
pub fn paragraph_entries(text: &str) -> Vec<String> {
    text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()).map(|p| format!("{p}\n")).collect()
}

fn is_fortune_text(text: &str) -> bool {
    text.lines().any(|l| l.trim_end() == "%")
}

impl Corpus {
    /// Builds a corpus from entries: entry `i` is held out when `i % HELD_OUT_EVERY ==
    /// HELD_OUT_EVERY - 1`, test when `i % HELD_OUT_EVERY == 4`, train otherwise, so the split
    /// depends only on the source order.
    pub fn from_entries(name: &str, entries: &[String]) -> Result<Self, NucleusError> {
        let mut train = Vec::new();
        let mut held_out = Vec::new();
        let mut test = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let part = match i % HELD_OUT_EVERY {
                r if r == HELD_OUT_EVERY - 1 => &mut held_out,
                TEST_SLOT => &mut test,
                _ => &mut train,
            };
            part.extend_from_slice(e.as_bytes());
            part.push(b'\n');
        }
        if train.is_empty() || held_out.is_empty() || test.is_empty() {
            return Err(DataError::TooFewEntries {
                corpus: name.to_string(),
                entries: entries.len(),
                needed: HELD_OUT_EVERY,
            }
            .into());
        }
        Ok(Corpus { name: name.to_string(), train, held_out, test })
    }

    /// Parses text as fortune entries if it has `%` separator lines, else as paragraphs.
    pub fn from_text(name: &str, text: &str) -> Result<Self, NucleusError> {
        let entries = if is_fortune_text(text) { fortune_entries(text) } else { paragraph_entries(text) };
        Self::from_entries(name, &entries)
    }

    /// One of [`BUILTIN_TOPICS`].
    pub fn builtin(topic: &str) -> Result<Self, NucleusError> {
        let bytes =
            builtin_bytes(topic).ok_or_else(|| DataError::NoBuiltinTopic { topic: topic.to_string() })?;
        Self::from_text(topic, &String::from_utf8_lossy(bytes))
    }

    /// A fortune file, a plain text file, or a directory of them (files sorted by name; the
    /// `.dat` and `.u8` index files of the fortunes package and hidden files are skipped).
    pub fn from_path(path: &Path) -> Result<Self, NucleusError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let io = |source| NucleusError::Io { path: path.to_path_buf(), source };
        if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(path)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .filter(|p| {
                    let n = p.file_name().map(|n| n.to_string_lossy().into_owned());
                    let n = n.unwrap_or_default();
                    !n.starts_with('.') && !n.ends_with(".dat") && !n.ends_with(".u8")
                })
                .collect();
            files.sort();
            let mut entries = Vec::new();
            for f in files {
                let text = std::fs::read(&f).map_err(io)?;
                let text = String::from_utf8_lossy(&text);
                if is_fortune_text(&text) {
                    entries.extend(fortune_entries(&text));
                } else {
                    entries.extend(paragraph_entries(&text));
                }
            }
            Self::from_entries(&name, &entries)
        } else {
            let text = std::fs::read(path).map_err(io)?;
            Self::from_text(&name, &String::from_utf8_lossy(&text))
        }
    }

    /// A fortunes topic: the file of that name in the first of [`fortune_dirs`] that has one,
    /// else the built-in sample.
    pub fn fortune_topic(topic: &str) -> Result<Self, NucleusError> {
        for dir in fortune_dirs() {
            let path = dir.join(topic);
            if path.is_file() {
                return Self::from_path(&path);
            }
        }
        Self::builtin(topic)
            .map_err(|_| DataError::NoTopic { topic: topic.to_string(), searched: fortune_dirs() }.into())
    }

    /// A dataset as users name it: `+`-separated parts, each an existing file or directory
    /// (see [`Corpus::from_path`]) or a fortunes topic ([`Corpus::fortune_topic`]). Several
    /// parts make a mixture ([`Corpus::mixture`]): `science+computers`.
    pub fn resolve(spec: &str) -> Result<Self, NucleusError> {
        let parts: Vec<&str> = spec.split('+').map(str::trim).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(DataError::EmptyPart { spec: spec.to_string() }.into());
        }
        let corpora = parts
            .iter()
            .map(|p| {
                let path = Path::new(p);
                if path.exists() {
                    Self::from_path(path)
                } else {
                    Self::fortune_topic(p)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        match corpora.len() {
            1 => Ok(corpora.into_iter().next().expect("one part")),
            _ => Ok(Self::mixture(spec, &corpora)),
        }
    }

    /// Several corpora as one: each split is the concatenation of the parts' same split, so
    /// a mixture's test text is still text none of its parts trains on.
    pub fn mixture(name: &str, parts: &[Corpus]) -> Self {
        let cat = |f: fn(&Corpus) -> &Vec<u8>| parts.iter().flat_map(|c| f(c).iter().copied()).collect();
        Corpus {
            name: name.to_string(),
            train: cat(|c| &c.train),
            held_out: cat(|c| &c.held_out),
            test: cat(|c| &c.test),
        }
    }

    fn part(&self, split: Split) -> &[u8] {
        match split {
            Split::Train => &self.train,
            Split::HeldOut => &self.held_out,
            Split::Test => &self.test,
        }
    }

    /// `batch` windows of `context + 1` bytes at uniformly random offsets drawn from `rng`.
    pub fn sample(
        &self,
        split: Split,
        batch: usize,
        context: usize,
        rng: &mut impl Rng,
    ) -> Result<Batch, NucleusError> {
        let text = self.part(split);
        if text.len() < context + 2 {
            return Err(DataError::TooShort {
                what: format!("corpus {} {split:?} part", self.name),
                found: text.len(),
                needed: context + 2,
            }
            .into());
        }
        let mut tokens = Vec::with_capacity(batch * context);
        let mut targets = Vec::with_capacity(batch * context);
        for _ in 0..batch {
            let start = rng.gen_range(0..text.len() - context - 1);
            tokens.extend_from_slice(&text[start..start + context]);
            targets.extend_from_slice(&text[start + 1..start + context + 1]);
        }
        Batch::new(tokens, targets, batch, context)
    }

    /// A fixed list of batches: the same `seed` gives the same batches.
    pub fn batches(
        &self,
        split: Split,
        batch: usize,
        context: usize,
        count: usize,
        seed: u64,
    ) -> Result<Vec<Batch>, NucleusError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..count).map(|_| self.sample(split, batch, context, &mut rng)).collect()
    }
}

/// Input bytes `[batch, seq]` and their next-byte targets `[batch, seq]`, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Input bytes, `batch · seq` of them.
    pub tokens: Vec<u8>,
    /// Each input byte's successor, the next-byte targets.
    pub targets: Vec<u8>,
    /// Rows (sequences).
    pub batch: usize,
    /// Positions per row.
    pub seq: usize,
}

impl Batch {
    /// A batch of `batch` rows of `seq` bytes; refuses an empty one or buffers of another length.
    pub fn new(tokens: Vec<u8>, targets: Vec<u8>, batch: usize, seq: usize) -> Result<Self, NucleusError> {
        if batch == 0 || seq == 0 {
            return Err(NucleusError::EmptyBatch { batch, seq });
        }
        for (what, found) in [("tokens", tokens.len()), ("targets", targets.len())] {
            if found != batch * seq {
                return Err(NucleusError::Shape { what, expected: batch * seq, found });
            }
        }
        Ok(Batch { tokens, targets, batch, seq })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortune_entries_split_on_percent_lines() {
        let text = "one\nline two\n%\n%\nthree\n%\nfour";
        let e = fortune_entries(text);
        assert_eq!(e, vec!["one\nline two\n", "three\n", "four\n"]);
    }

    #[test]
    fn builtin_topics_load_and_differ() {
        for t in BUILTIN_TOPICS {
            let c = Corpus::builtin(t).unwrap();
            assert!(c.train.len() > 20_000, "{t}: {}", c.train.len());
            assert!(c.held_out.len() > 1_000, "{t}: {}", c.held_out.len());
            assert!(c.test.len() > 1_000, "{t}: {}", c.test.len());
            // No part shares an entry with another (the sources repeat the odd quotation, so
            // 20 probes spread over each part, of which at most two may be found elsewhere).
            for (a, b) in [(&c.held_out, &c.train), (&c.test, &c.train), (&c.test, &c.held_out)] {
                let found = (0..20)
                    .map(|k| &a[k * (a.len() - 40) / 20..][..40])
                    .filter(|probe| b.windows(40).any(|w| w == *probe))
                    .count();
                assert!(found <= 2, "{t}: {found} of 20 probes found in another part");
            }
        }
        let a = Corpus::builtin("food").unwrap();
        let b = Corpus::builtin("science").unwrap();
        assert_ne!(a.train[..100], b.train[..100]);
        let e = Corpus::builtin("nope");
        assert!(
            matches!(&e, Err(NucleusError::Data(DataError::NoBuiltinTopic { topic })) if topic == "nope"),
            "{e:?}"
        );
    }

    #[test]
    fn sampling_is_seeded_and_targets_shift_by_one() {
        let c = Corpus::builtin("food").unwrap();
        let a = c.batches(Split::Train, 3, 16, 2, 7).unwrap();
        let b = c.batches(Split::Train, 3, 16, 2, 7).unwrap();
        let other = c.batches(Split::Train, 3, 16, 2, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, other);
        let x = &a[0];
        assert_eq!(x.tokens[1..16], x.targets[..15]);
    }

    #[test]
    fn directory_loading_skips_index_files() {
        let dir = std::env::temp_dir().join(format!("nucleus-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let entries: String = (0..30).map(|i| format!("entry number {i}\n%\n")).collect();
        std::fs::write(dir.join("topic"), &entries).unwrap();
        std::fs::write(dir.join("topic.dat"), [0u8, 1, 2, 255]).unwrap();
        std::fs::write(dir.join("notes.txt"), "para one\n\npara two\n").unwrap();
        let c = Corpus::from_path(&dir).unwrap();
        let all = [c.train.clone(), c.held_out.clone(), c.test.clone()].concat();
        assert!(!all.contains(&255));
        assert!(String::from_utf8_lossy(&all).contains("para two"));
        assert!(String::from_utf8_lossy(&c.held_out).contains("entry number 7\n")); // 2 paragraphs of notes.txt come first
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn datasets_resolve_to_topics_paths_and_mixtures() {
        let one = Corpus::resolve("food").unwrap();
        assert_eq!(one.train, Corpus::fortune_topic("food").unwrap().train);
        let mix = Corpus::resolve("food+science").unwrap();
        let (f, s) = (Corpus::fortune_topic("food").unwrap(), Corpus::fortune_topic("science").unwrap());
        assert_eq!(mix.test.len(), f.test.len() + s.test.len());
        assert_eq!(mix.train.len(), f.train.len() + s.train.len());
        let err = Corpus::resolve("food+no-such-topic").unwrap_err().to_string();
        assert!(err.contains("no-such-topic") && err.contains("AGORA_FORTUNES_DIR"), "{err}");
        let e = Corpus::resolve("food+");
        assert!(
            matches!(&e, Err(NucleusError::Data(DataError::EmptyPart { spec })) if spec == "food+"),
            "{e:?}"
        );
    }

    #[test]
    fn short_batches_are_refused() {
        let e = Batch::new(vec![1, 2], vec![2, 3, 4], 1, 3);
        assert!(matches!(e, Err(NucleusError::Shape { what: "tokens", expected: 3, found: 2 })), "{e:?}");
        let e = Batch::new(vec![1, 2, 3], vec![2, 3], 1, 3);
        assert!(matches!(e, Err(NucleusError::Shape { what: "targets", expected: 3, found: 2 })), "{e:?}");
        let e = Batch::new(vec![], vec![], 0, 3);
        assert!(matches!(e, Err(NucleusError::EmptyBatch { batch: 0, seq: 3 })), "{e:?}");
        let food = Corpus::builtin("food").unwrap();
        let len = food.test.len();
        match food.batches(Split::Test, 1, len, 1, 0) {
            Err(NucleusError::Data(DataError::TooShort { found, needed, .. })) => {
                assert_eq!((found, needed), (len, len + 2))
            }
            other => panic!("{other:?}"),
        }
    }
}
