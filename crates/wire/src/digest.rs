//! A message's body digest (BLAKE3 of its bytes, [`BodyDigest`]) with the NaN/Inf scan of its
//! tensors in the same pass, on both cores when the message is large.
//!
//! With one call in flight the four BLAKE3 passes of a round trip (the request on each side,
//! the answer on each side) run one after another while the other core waits for the next
//! message. BLAKE3 is a tree: a subtree of 2^k chunks at an aligned offset hashes on its own to
//! a chaining value, and parents merge two of them. So a message of [`SPLIT_MIN`] bytes and
//! more is cut along its tree into subtrees of [`PIECE`] bytes that the caller and a helper
//! thread claim in turn, and the chaining values are merged as the tree says. The
//! caller starts at once and never waits for the helper to wake: it only waits for a piece the
//! helper has claimed and is hashing. Each piece's bytes are scanned for NaN/Inf while they are
//! in cache, as the one-core pass does block by block. Only one split digest runs at a time in
//! a process: when two calls are digesting, both cores are busy already.
//!
//! The digest is the same whichever way it is computed (the property tests compare both with
//! `blake3::hash`), so nothing on the wire changes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use bytes::Bytes;

use crate::auth::{BodyDigest, BodyHasher, DigestAlgorithm};
use crate::tensor::{may_be_non_finite, DType};

/// Messages from this size up are digested on two cores (1 MiB takes some 180 us on one core
/// of the reference machine, waking the helper some 40 us when a core is free; below this
/// splitting would gain little).
pub(crate) const SPLIT_MIN: usize = 256 << 10;

/// Bytes hashed and scanned at a time: small enough to stay in the L1/L2 cache between the two,
/// large enough for BLAKE3's SIMD (16 KiB and up), a multiple of every element size; a power of
/// two number of chunks, so that a piece is a subtree of BLAKE3's tree.
pub(crate) const PIECE: usize = 64 << 10;

/// How long the caller spins for a piece the helper is hashing (one takes some 12 us).
const SPIN: Duration = Duration::from_micros(40);

/// Set while a split digest runs in this process.
static SPLITTING: AtomicBool = AtomicBool::new(false);

/// A tensor to scan: its data (a slice of the message) and its float dtype.
pub(crate) type Scan<'a> = Option<(&'a [u8], DType)>;

/// The digest of the message `parts` (its bytes in order), and for each tensor in `scans`
/// whether it may hold NaN or Inf. A tensor that lies inside one part (it arrived as its own
/// DATA frame, the usual case, or is the chunk an answer sends as it is) is scanned piece by
/// piece as it is hashed; one split across parts (decoded into a copy) or copied into the
/// envelope (a small one) is scanned on its own.
pub(crate) fn digest_and_scan(parts: &[Bytes], scans: [Scan<'_>; 2]) -> (BodyDigest, [bool; 2]) {
    let len: usize = parts.iter().map(Bytes::len).sum();
    if len >= SPLIT_MIN && !SPLITTING.swap(true, Ordering::Acquire) {
        let out = split(parts, scans, PIECE, true);
        SPLITTING.store(false, Ordering::Release);
        return out;
    }
    one_core(parts, scans)
}

/// The digest of the concatenation of `parts`, on two cores when large.
pub(crate) fn digest(parts: &[Bytes]) -> BodyDigest {
    digest_and_scan(parts, [None, None]).0
}

/// Where a scanned tensor lies: its offsets in the message, and its part.
#[derive(Clone, Copy, Debug)]
struct Located {
    start: usize,
    end: usize,
    part: usize,
    dtype: DType,
}

/// Each scan that lies inside one part, located in the message.
fn locate(parts: &[Bytes], scans: &[Scan<'_>; 2]) -> [Option<Located>; 2] {
    let mut offset = 0;
    let mut found = [None; 2];
    for (p, part) in parts.iter().enumerate() {
        let base = part.as_ptr() as usize;
        for (i, s) in scans.iter().enumerate() {
            let Some((data, dtype)) = *s else { continue };
            let Some(at) = (data.as_ptr() as usize).checked_sub(base) else { continue };
            if found[i].is_none() && !data.is_empty() && at + data.len() <= part.len() {
                found[i] =
                    Some(Located { start: offset + at, end: offset + at + data.len(), part: p, dtype });
            }
        }
        offset += part.len();
    }
    found
}

/// Scans the elements of `t` that start in the message range `from..to`.
fn scan_range(parts: &[Bytes], part_start: &[usize], t: &Located, from: usize, to: usize) -> bool {
    let size = t.dtype.size();
    let whole_end = t.start + (t.end - t.start) / size * size;
    let first = from.max(t.start);
    let last = to.min(whole_end);
    if first >= last {
        return false;
    }
    // Round both up to element starts: an element belongs to the range its first byte is in.
    let up = |x: usize| t.start + (x - t.start).div_ceil(size) * size;
    let (a, b) = (up(first), up(last).min(whole_end));
    let base = part_start[t.part];
    a < b && may_be_non_finite(t.dtype, &parts[t.part][a - base..b - base])
}

/// The sequential pass: hash blocks end on multiples of [`PIECE`] in the message, so that
/// BLAKE3 sees whole, aligned runs of chunks (its widest SIMD path); the scan follows.
fn one_core(parts: &[Bytes], scans: [Scan<'_>; 2]) -> (BodyDigest, [bool; 2]) {
    let located = locate(parts, &scans);
    let part_start = starts(parts);
    let mut hasher = BodyHasher::new(DigestAlgorithm::Blake3);
    let mut suspect = [false; 2];
    for (p, part) in parts.iter().enumerate() {
        let mut pos = 0;
        while pos < part.len() {
            let at = part_start[p] + pos;
            let q = part.len().min(pos + PIECE - at % PIECE);
            hasher.update(&part[pos..q]);
            for (i, t) in located.iter().enumerate() {
                if let Some(t) = t.filter(|t| t.part == p) {
                    suspect[i] |= scan_range(parts, &part_start, &t, at, part_start[p] + q);
                }
            }
            pos = q;
        }
    }
    scan_the_rest(&scans, &located, &mut suspect);
    (hasher.finish(), suspect)
}

/// Scans on their own the tensors that lie in no one part.
fn scan_the_rest(scans: &[Scan<'_>; 2], located: &[Option<Located>; 2], suspect: &mut [bool; 2]) {
    for (i, s) in scans.iter().enumerate() {
        if let (Some((data, dtype)), None) = (s, located[i]) {
            suspect[i] = may_be_non_finite(*dtype, data);
        }
    }
}

fn starts(parts: &[Bytes]) -> Vec<usize> {
    let mut at = 0;
    parts
        .iter()
        .map(|p| {
            let s = at;
            at += p.len();
            s
        })
        .collect()
}

/// The pieces of the subtree `start..start + len` of a message's BLAKE3 tree, in order: each
/// subtree of at most `piece` bytes whole, larger ones cut where BLAKE3 cuts them.
fn pieces(start: usize, len: usize, piece: usize, out: &mut Vec<(usize, usize)>) {
    if len <= piece {
        out.push((start, len));
    } else {
        let left = left_subtree_len(len as u64) as usize;
        pieces(start, left, piece, out);
        pieces(start + left, len - left, piece, out);
    }
}

/// The chaining value of the subtree `len` bytes long, from its pieces' values in order.
fn merge(len: usize, piece: usize, values: &mut impl Iterator<Item = ChainingValue>) -> ChainingValue {
    if len <= piece {
        return values.next().unwrap_or_default();
    }
    let left_len = left_subtree_len(len as u64) as usize;
    let left = merge(left_len, piece, values);
    let right = merge(len - left_len, piece, values);
    merge_subtrees_non_root(&left, &right, Mode::Hash)
}

/// One split digest's shared state: the helper holds it too, so it owns its bytes (`Bytes`
/// clones, no copy) and may outlive the call when the helper wakes after the caller is done.
struct Job {
    parts: Vec<Bytes>,
    part_start: Vec<usize>,
    pieces: Vec<(usize, usize)>,
    located: [Option<Located>; 2],
    next: AtomicUsize,
    done: Vec<OnceLock<(ChainingValue, [bool; 2])>>,
}

impl Job {
    /// Claims and hashes pieces until none is left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&(start, len)) = self.pieces.get(i) else { return };
            let _ = self.done[i].set(self.piece(start, len));
        }
    }

    /// The chaining value of the piece `start..start + len`, and whether its share of each
    /// tensor may hold NaN or Inf.
    fn piece(&self, start: usize, len: usize) -> (ChainingValue, [bool; 2]) {
        let end = start + len;
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(start as u64);
        for (p, part) in self.parts.iter().enumerate() {
            let (a, b) = (self.part_start[p], self.part_start[p] + part.len());
            if a < end && start < b {
                hasher.update(&part[start.max(a) - a..end.min(b) - a]);
            }
        }
        let suspect = self
            .located
            .map(|t| t.is_some_and(|t| scan_range(&self.parts, &self.part_start, &t, start, end)));
        (hasher.finalize_non_root(), suspect)
    }
}

/// The thread that helps with split digests: parked until handed a job (one at a time, see
/// [`SPLITTING`]), then it claims pieces like the caller until none is left.
struct Helper {
    job: Mutex<Option<Arc<Job>>>,
    thread: OnceLock<Thread>,
}

impl Helper {
    /// The process's helper, started on first use.
    fn get() -> &'static Helper {
        static HELPER: Helper = Helper { job: Mutex::new(None), thread: OnceLock::new() };
        HELPER.thread.get_or_init(|| {
            let spawned = std::thread::Builder::new().name("agora-digest".into()).spawn(|| loop {
                let job = HELPER.job.lock().unwrap_or_else(|e| e.into_inner()).take();
                match job {
                    Some(job) => job.work(),
                    None => std::thread::park(),
                }
            });
            // Without a helper (no thread could be started) the caller hashes every piece.
            spawned.map_or_else(|_| std::thread::current(), |h| h.thread().clone())
        });
        &HELPER
    }

    fn hand(&self, job: Arc<Job>) {
        *self.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// The digest cut into subtrees of `piece` bytes (a power of two number of chunks), hashed by
/// this thread and, if `helper`, the [`Helper`]; the message must be longer than one piece.
fn split(parts: &[Bytes], scans: [Scan<'_>; 2], piece: usize, helper: bool) -> (BodyDigest, [bool; 2]) {
    let len: usize = parts.iter().map(Bytes::len).sum();
    debug_assert!(len > piece && piece.is_power_of_two() && piece >= blake3::CHUNK_LEN);
    let mut cut = Vec::with_capacity(len / piece + 2);
    pieces(0, len, piece, &mut cut);
    let located = locate(parts, &scans);
    let job = Arc::new(Job {
        parts: parts.to_vec(),
        part_start: starts(parts),
        done: (0..cut.len()).map(|_| OnceLock::new()).collect(),
        pieces: cut,
        located,
        next: AtomicUsize::new(0),
    });
    if helper {
        Helper::get().hand(job.clone());
    }
    job.work();
    let mut suspect = [false; 2];
    let mut values = job.done.iter().map(|d| {
        // Claimed by the helper and still being hashed: a piece's time at most.
        let since = Instant::now();
        let (value, s) = loop {
            match d.get() {
                Some(v) => break *v,
                // Spinning is cheaper than a sleep and a wake-up for a piece's few microseconds;
                // past that the helper was preempted, and may share this core.
                None if since.elapsed() < SPIN => std::hint::spin_loop(),
                None => std::thread::yield_now(),
            }
        };
        suspect[0] |= s[0];
        suspect[1] |= s[1];
        value
    });
    let left_len = left_subtree_len(len as u64) as usize;
    let left = merge(left_len, piece, &mut values);
    let right = merge(len - left_len, piece, &mut values);
    drop(values);
    let hash = merge_subtrees_root(&left, &right, Mode::Hash);
    scan_the_rest(&scans, &located, &mut suspect);
    (BodyDigest { algorithm: DigestAlgorithm::Blake3, len: len as u64, hash: hash.into() }, suspect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `bytes` cut at `cuts` (taken modulo its length).
    fn cut(bytes: &[u8], cuts: &[usize]) -> Vec<Bytes> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.extend([0, bytes.len()]);
        points.sort_unstable();
        points.windows(2).map(|w| Bytes::copy_from_slice(&bytes[w[0]..w[1]])).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Split or not, with or without the helper, at any piece size and however the message
        /// is cut into parts, the digest is BLAKE3's of the whole message.
        #[test]
        fn the_split_digest_is_blake3s(
            len in prop_oneof![1025usize..5_000, 5_000usize..70_000, 260_000usize..300_000],
            seed in any::<u8>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..5),
            piece_log in 10u32..17,
            helper in any::<bool>(),
        ) {
            let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let parts = cut(&bytes, &cuts);
            let want = BodyDigest::of_bytes(&bytes);
            let piece = 1usize << piece_log;
            if len > piece {
                prop_assert_eq!(split(&parts, [None, None], piece, helper).0, want);
            }
            prop_assert_eq!(one_core(&parts, [None, None]).0, want);
            prop_assert_eq!(digest(&parts), want);
        }

        /// A NaN or Inf anywhere in a tensor is found by every path, whichever piece holds it
        /// and however the piece boundaries fall across its elements; a finite tensor passes.
        #[test]
        fn every_path_finds_every_non_finite(
            n in prop_oneof![1usize..40, 300usize..5_000],
            head in 0usize..40,
            bad in proptest::option::of((any::<prop::sample::Index>(), 0usize..3)),
            dtype_i in 0usize..3,
            piece_log in 10u32..13,
            helper in any::<bool>(),
        ) {
            let dtype = [DType::F32, DType::F16, DType::BF16][dtype_i];
            let mut message = vec![9u8; head];
            let at = message.len();
            for k in 0..n {
                let v = match bad {
                    Some((i, kind)) if i.index(n) == k => [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][kind],
                    _ => k as f32 * 0.25 - 3.0,
                };
                match dtype {
                    DType::F32 => message.extend_from_slice(&v.to_le_bytes()),
                    DType::F16 => message.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                    _ => message.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                }
            }
            let data_len = message.len() - at;
            message.extend_from_slice(&[3; 7]);
            let parts = vec![Bytes::from(message.clone())];
            let data = &parts[0][at..at + data_len];
            let want = BodyDigest::of_bytes(&message);
            let piece = 1usize << piece_log;
            let mut results = vec![one_core(&parts, [None, Some((data, dtype))])];
            if message.len() > piece {
                results.push(split(&parts, [None, Some((data, dtype))], piece, helper));
            }
            for (digest, suspect) in results {
                prop_assert_eq!(digest, want);
                prop_assert_eq!(suspect, [false, bad.is_some()]);
            }
        }
    }
}
