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

/// Integer weights carry 52 bits: shares below 2^-52 of the largest count as zero.
const WEIGHT_BITS: i32 = 52;

/// Splits `total` into `shares.len()` integer parts proportional to `shares`, summing to exactly
/// `total`. Returns `None` when no share is positive (nothing to split by); shares that are NaN,
/// infinite or negative count as zero, so no input can panic or produce a wrong sum.
pub fn apportion(total: u64, shares: &[f64]) -> Option<Vec<u64>> {
    let clean = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
    let max = shares.iter().copied().map(clean).fold(0.0f64, f64::max);
    if max <= 0.0 {
        return None;
    }
    let scale = libm_ldexp(1.0, WEIGHT_BITS);
    // Each weight is in [0, 2^52] and the max share maps to exactly 2^52.
    let weights: Vec<u64> = shares.iter().map(|&x| (clean(x) / max * scale).floor() as u64).collect();
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        return None;
    }
    let total128 = u128::from(total);
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut given: u128 = 0;
    for (i, &w) in weights.iter().enumerate() {
        // total < 2^64 and w <= 2^52, so the product fits in u128 with room to spare.
        let exact = total128 * u128::from(w);
        let q = exact / sum;
        given += q;
        // q <= total, so it fits in u64.
        parts.push(q as u64);
        let r = exact % sum;
        if r > 0 {
            remainders.push((r, i));
        }
    }
    // Sum of floors is within n of total: each floor loses less than one unit.
    let mut left = total128 - given;
    if left > 0 {
        remainders.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, i) in &remainders {
            if left == 0 {
                break;
            }
            parts[i] += 1;
            left -= 1;
        }
    }
    debug_assert_eq!(left, 0, "largest remainder left units unassigned");
    Some(parts)
}

/// `x * 2^e` without going through `powi` (whose accuracy is platform-defined).
fn libm_ldexp(x: f64, e: i32) -> f64 {
    // 2^52 is exactly representable; building it from bits avoids any libm dependency here.
    x * f64::from_bits(((1023 + e) as u64) << 52)
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
    }

    proptest! {
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
                    // Off by at most one unit plus the 2^-52 quantisation of the shares.
                    prop_assert!((*p as f64 - quota).abs() <= 1.0 + total as f64 * 1e-12 * shares.len() as f64);
                }
            } else {
                prop_assert!(shares.iter().all(|&x| x == 0.0));
            }
        }
    }
}
