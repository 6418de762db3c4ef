//! Splitting an integer amount by real-valued shares so the parts add up exactly.
//!
//! The mechanism returns emission as f64; the chain pays integers. Rounding each part on its own
//! would mint a little more or less than the schedule allows, so the chain uses the largest
//! remainder method (Hamilton's method): every part gets the floor of its exact quota, and the
//! units left over go one each to the largest fractional remainders, ties to the lower index
//! (the lower uid). The same rule quantises weight rows to integers summing to
//! [`crate::WEIGHT_SCALE`].
//!
//! Determinism: the only floating-point step is turning each share into an integer weight
//! relative to the largest share, `floor(share / max * 2^52)` (one IEEE division and one exact
//! scaling, identical on every machine). Quotas and remainders are then exact integer
//! arithmetic, so ties are exact ties and are broken by index, never by float noise.

/// Integer weights carry at most 52 bits (an f64 mantissa): shares below 2^-52 of the largest
/// count as zero.
const WEIGHT_BITS: u32 = 52;
/// When `total * 2^b` and the sum of n weights of b bits both fit in 63 bits for some b of at
/// least this many bits, the split runs in u64 arithmetic (several times faster than u128
/// division, and this runs once per `set_weights`); otherwise in u128 with 52 bits.
const FAST_MIN_BITS: u32 = 40;

/// Splits `total` into `shares.len()` integer parts proportional to `shares`, summing to exactly
/// `total`. Returns `None` when no share is positive (nothing to split by); shares that are NaN,
/// infinite or negative count as zero, so no input can panic or produce a wrong sum.
///
/// The weight precision `b` depends only on `total` and the number of shares, so every node
/// picks the same one.
pub fn apportion(total: u64, shares: &[f64]) -> Option<Vec<u64>> {
    let clean = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
    let max = shares.iter().copied().map(clean).fold(0.0f64, f64::max);
    if max <= 0.0 {
        return None;
    }
    let bits_total = u64::BITS - total.leading_zeros();
    let bits_n = usize::BITS - shares.len().leading_zeros();
    let fast_bits = 63u32.saturating_sub(bits_total + bits_n).min(WEIGHT_BITS);
    let bits = if fast_bits >= FAST_MIN_BITS { fast_bits } else { WEIGHT_BITS };
    let one = 1u64 << bits;
    let k = ldexp1(bits) / max;
    // Each weight is in [0, 2^bits]; the largest share maps to 2^bits (within one rounding).
    // Truncation is the floor for these non-negative values (and avoids a libm call).
    let weights: Vec<u64> = shares.iter().map(|&x| ((clean(x) * k) as u64).min(one)).collect();
    let mut parts = Vec::with_capacity(weights.len());
    if bits == fast_bits {
        // total < 2^bits_total, w <= 2^bits, n < 2^bits_n: products and sums stay below 2^63.
        let sum: u64 = weights.iter().sum();
        let inv = 1.0 / sum as f64;
        let mut remainders: Vec<(u64, u32)> = Vec::with_capacity(weights.len());
        let mut given: u64 = 0;
        for (i, &w) in weights.iter().enumerate() {
            let exact = total * w;
            // One float multiply estimates the quotient within one of the true floor (relative
            // error ~2^-51 on a quotient below 2^51); the integer correction below makes it exact,
            // so the float rounding never reaches the result. Cheaper than a 64-bit division.
            let mut q = (exact as f64 * inv) as u64;
            if q.saturating_mul(sum) > exact {
                q -= 1;
            } else if exact - q * sum >= sum {
                q += 1;
            }
            let r = exact - q * sum;
            debug_assert!(r < sum, "quotient estimate off by more than one");
            given += q;
            parts.push(q);
            if r > 0 {
                // n < 2^bits_n <= 2^23 here, so the index fits in u32.
                remainders.push((r, i as u32));
            }
        }
        give_leftovers(&mut parts, &mut remainders, total - given);
    } else {
        let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
        let mut remainders: Vec<(u128, u32)> = Vec::with_capacity(weights.len());
        let mut given: u128 = 0;
        for (i, &w) in weights.iter().enumerate() {
            // total < 2^64 and w <= 2^52: the product fits in u128 with room to spare.
            let exact = u128::from(total) * u128::from(w);
            let q = exact / sum;
            let r = exact - q * sum;
            given += q;
            // q <= total, so it fits in u64.
            parts.push(q as u64);
            if r > 0 {
                remainders.push((r, u32::try_from(i).unwrap_or(u32::MAX)));
            }
        }
        give_leftovers(&mut parts, &mut remainders, (u128::from(total) - given) as u64);
    }
    Some(parts)
}

/// Gives one unit to each of the `left` largest remainders, ties to the lower index.
fn give_leftovers<R: Ord + Copy>(parts: &mut [u64], remainders: &mut [(R, u32)], left: u64) {
    // Each floor loses less than one unit, so fewer units are left than there are remainders.
    let left = usize::try_from(left).unwrap_or(usize::MAX).min(remainders.len());
    if left == 0 {
        return;
    }
    // Largest remainder first, then lowest index: a strict total order, so after partitioning
    // the first `left` elements are exactly the winners, whatever their order among themselves.
    if left < remainders.len() {
        remainders.select_nth_unstable_by(left - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    }
    for &(_, i) in &remainders[..left] {
        if let Some(p) = parts.get_mut(i as usize) {
            *p += 1;
        }
    }
}

/// `2^e` built from its bits (exact; `powi`'s accuracy is platform-defined).
fn ldexp1(e: u32) -> f64 {
    f64::from_bits((1023 + u64::from(e)) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_checked_splits() {
        // 10 by [1, 1, 1]: quotas 3.33 each, one unit left, lowest index wins the tie.
        assert_eq!(apportion(10, &[1.0, 1.0, 1.0]), Some(vec![4, 3, 3]));
        // 100 by [0.5, 0.3, 0.2]: exact.
        assert_eq!(apportion(100, &[0.5, 0.3, 0.2]), Some(vec![50, 30, 20]));
        // 7 by [2, 1]: quotas 4.67, 2.33: the larger remainder (0.67) takes the unit.
        assert_eq!(apportion(7, &[2.0, 1.0]), Some(vec![5, 2]));
        // zero and bad shares get nothing; the rest is split exactly.
        assert_eq!(apportion(5, &[0.0, f64::NAN, 1.0, -3.0]), Some(vec![0, 0, 5, 0]));
        assert_eq!(apportion(5, &[0.0, 0.0]), None);
        assert_eq!(apportion(5, &[]), None);
        assert_eq!(apportion(0, &[1.0, 2.0]), Some(vec![0, 0]));
        assert_eq!(apportion(u64::MAX, &[1.0, 1.0]), Some(vec![u64::MAX / 2 + 1, u64::MAX / 2]));
        // Both paths (u64 for small totals, u128 for large ones) agree on exact splits.
        assert_eq!(apportion(65_535, &[0.25, 0.25, 0.5]), Some(vec![16_384, 16_384, 32_767]));
        assert_eq!(apportion(1 << 50, &[1.0, 3.0]), Some(vec![1 << 48, 3 << 48]));
    }

    /// The same rule written the slow, obvious way: u128 division and a full sort.
    fn reference(total: u64, shares: &[f64]) -> Option<Vec<u64>> {
        let clean = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
        let max = shares.iter().copied().map(clean).fold(0.0f64, f64::max);
        if max <= 0.0 {
            return None;
        }
        let bits_total = u64::BITS - total.leading_zeros();
        let bits_n = usize::BITS - shares.len().leading_zeros();
        let fast = 63u32.saturating_sub(bits_total + bits_n).min(WEIGHT_BITS);
        let bits = if fast >= FAST_MIN_BITS { fast } else { WEIGHT_BITS };
        let k = ldexp1(bits) / max;
        let w: Vec<u128> = shares.iter().map(|&x| ((clean(x) * k).floor() as u128).min(1 << bits)).collect();
        let sum: u128 = w.iter().sum();
        let mut parts: Vec<u64> = w.iter().map(|&wi| (u128::from(total) * wi / sum) as u64).collect();
        let mut rem: Vec<(u128, usize)> =
            w.iter().enumerate().map(|(i, &wi)| (u128::from(total) * wi % sum, i)).collect();
        rem.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let left = total - parts.iter().sum::<u64>();
        for &(_, i) in rem.iter().take(left as usize) {
            parts[i] += 1;
        }
        Some(parts)
    }

    proptest! {
        #[test]
        fn fast_paths_equal_the_reference(
            total in prop_oneof![0u64..70_000, 0u64..=u64::MAX],
            shares in proptest::collection::vec(prop_oneof![Just(0.0), 0.0f64..1.0, 1e-9f64..1e9], 1..300),
        ) {
            prop_assert_eq!(apportion(total, &shares), reference(total, &shares));
        }

        #[test]
        fn parts_sum_exactly_and_stay_near_quota(
            total in 0u64..=u64::MAX,
            shares in proptest::collection::vec(0.0f64..1e6, 1..50),
        ) {
            if let Some(parts) = apportion(total, &shares) {
                let sum: u128 = parts.iter().map(|&p| u128::from(p)).sum();
                prop_assert_eq!(sum, u128::from(total));
                let s: f64 = shares.iter().sum();
                for (p, x) in parts.iter().zip(&shares) {
                    let quota = total as f64 * (x / s);
                    // Off by at most one unit plus the (>= 2^-40) quantisation of the shares.
                    prop_assert!((*p as f64 - quota).abs() <= 1.0 + total as f64 * 2e-12 * shares.len() as f64);
                }
            } else {
                prop_assert!(shares.iter().all(|&x| x == 0.0));
            }
        }
    }
}
