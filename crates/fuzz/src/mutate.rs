//! Byte-level mutations, as AFL's havoc stage does them: flips, interesting integers at any
//! offset (length prefixes are where decoders go wrong), inserted, deleted and repeated runs,
//! dictionary tokens, and splices of two corpus entries.

use rand::Rng;

/// Integers that sit on boundaries: zero, one, sign bits, all ones, powers of two.
const INTERESTING: [u64; 12] =
    [0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 0x7fff_ffff_ffff_ffff, u64::MAX];

/// The largest input a mutation may grow to.
pub const MAX_LEN: usize = 64 * 1024;

/// Applies 1 to 8 random mutations to `data` in place; `other` is another corpus entry to
/// splice from, `dict` the target's tokens.
pub fn mutate(data: &mut Vec<u8>, other: &[u8], dict: &[&[u8]], rng: &mut impl Rng) {
    let rounds = 1 << rng.gen_range(0..4);
    for _ in 0..rounds {
        one(data, other, dict, rng);
    }
    data.truncate(MAX_LEN);
}

fn one(data: &mut Vec<u8>, other: &[u8], dict: &[&[u8]], rng: &mut impl Rng) {
    let len = data.len();
    let at = |rng: &mut dyn rand::RngCore, extra: usize| {
        if len > extra {
            rng.gen_range(0..=len - extra)
        } else {
            0
        }
    };
    match rng.gen_range(0..10) {
        0 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] ^= 1 << rng.gen_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] = rng.gen();
        }
        2 => {
            // An interesting integer, 1, 2, 4 or 8 bytes wide, little- or big-endian.
            let width = 1 << rng.gen_range(0..4);
            let v = INTERESTING[rng.gen_range(0..INTERESTING.len())];
            let v = if rng.gen_bool(0.5) { v } else { v.wrapping_neg() };
            let mut bytes = v.to_le_bytes()[..width].to_vec();
            if rng.gen_bool(0.3) {
                bytes.reverse();
            }
            let i = at(rng, width);
            splice_in(data, i, width.min(len.saturating_sub(i)), &bytes);
        }
        3 if len > 0 => {
            // Adds or subtracts a little from a 4-byte little-endian length.
            let i = at(rng, 4);
            if i + 4 <= len {
                let mut b = [0u8; 4];
                b.copy_from_slice(&data[i..i + 4]);
                let v = u32::from_le_bytes(b).wrapping_add(rng.gen_range(0..33u32).wrapping_sub(16));
                data[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        4 => {
            let n = rng.gen_range(1..=32);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            let i = at(rng, 0);
            splice_in(data, i, 0, &bytes);
        }
        5 if len > 0 => {
            let i = rng.gen_range(0..len);
            let n = rng.gen_range(1..=(len - i).min(64));
            data.drain(i..i + n);
        }
        6 if len > 0 => {
            // Repeats a run (long arrays, deep nesting).
            let i = rng.gen_range(0..len);
            let n = rng.gen_range(1..=(len - i).min(64));
            let run = data[i..i + n].to_vec();
            for _ in 0..rng.gen_range(1..=8) {
                splice_in(data, i, 0, &run);
            }
        }
        7 if !dict.is_empty() => {
            let token = dict[rng.gen_range(0..dict.len())];
            let i = at(rng, 0);
            let replace = if rng.gen_bool(0.5) { token.len().min(len.saturating_sub(i)) } else { 0 };
            splice_in(data, i, replace, token);
        }
        8 if !other.is_empty() => {
            // Splice: our head, the other's tail.
            let i = at(rng, 0);
            let j = rng.gen_range(0..other.len());
            data.truncate(i);
            data.extend_from_slice(&other[j..]);
        }
        9 if len > 0 => {
            let i = rng.gen_range(0..len);
            data.truncate(i);
        }
        _ => {
            let i = at(rng, 0);
            splice_in(data, i, 0, &[rng.gen()]);
        }
    }
}

/// Replaces `data[at..at + remove]` with `bytes`.
fn splice_in(data: &mut Vec<u8>, at: usize, remove: usize, bytes: &[u8]) {
    let at = at.min(data.len());
    let end = (at + remove).min(data.len());
    data.splice(at..end, bytes.iter().copied());
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mutations_stay_in_bounds_and_change_the_input() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut changed = 0;
        for k in 0..5_000 {
            let seed: Vec<u8> = (0..(k % 50) as u8).collect();
            let mut d = seed.clone();
            mutate(&mut d, b"other entry", &[b"null", b"{}"], &mut rng);
            assert!(d.len() <= MAX_LEN);
            changed += usize::from(d != seed);
        }
        assert!(changed > 4_000, "{changed} of 5,000 changed");
    }
}
