//! Competitive masking (the intermodel paper, 001 §2.5, eqs. 7-8): a peer j answers caller i
//! with its output scaled by
//!
//! ```text
//! m_ij = σ((s_i w_ij − μ_j) / T),   μ_j = (1/n) Σ_k s_k w_kj,   σ(x) = 1 / (1 + e^−x)
//! ```
//!
//! so a caller that weights j below the network's mean hears a weakened answer, and one above
//! it a stronger one: "nodes that underweight are punished by having inputs from the network
//! masked to zero". Switched on per axon ([`crate::AxonConfig::competitive_masking`]); off, the
//! axon sends the handler's bytes untouched.
//!
//! What the terms mean here, precisely:
//! - k runs over **all n registered neurons** (the metagraph the [`crate::StakeLookup`] was fed),
//!   zeros included, as in the paper: a neuron with no stake, or that gives j no weight, or
//!   that has set no weights at all (its row of W is empty on chain), adds 0 to the sum and 1 to
//!   n. j's own self-weight counts like anyone's.
//! - s and w are the chain's: stake in base units, each row of W summing to 1. The caller's own
//!   term uses its row as the chain holds it too, so a caller that has set no weights has
//!   s_i w_ij = 0 (unlike the queue's priority, which ranks it by its stake alone: being served
//!   later is not being answered less).
//! - **Normalisation.** The paper's T is in the units of s·w, which would make a temperature mean
//!   something different on every chain. Both terms are measured instead in units of a uniform
//!   network's stake-weight: x_ij = n² s_i w_ij / Σ_k s_k, so x = 1 for a caller with the mean
//!   stake (Σs / n) giving j the uniform weight (1/n), and μ_j = n Σ_k s_k w_kj / Σ_k s_k, which
//!   is 1 when every neuron does so. That is a positive rescaling of the paper's argument (by
//!   n² / Σs), the same as choosing T in those units: T = 1 answers a caller at the mean with
//!   0.5, one at twice the mean with σ(1) = 0.73 and one that gives j nothing with σ(−μ_j).
//! - The exponent is clamped to ±30 so the mask stays strictly inside (0, 1) in f64 (σ(±30) is
//!   within 1e-13 of the bounds), as the paper's σ is.
//!
//! Backward: the caller's gradient is of its loss w.r.t. the answer it heard, m·f(x), and by the
//! chain rule the gradient w.r.t. the model's own output f(x) is m times it; the axon scales the
//! incoming gradient by the caller's current mask before the handler sees it, so
//! [`crate::Handler::backward`] still receives what its contract says. A weakly weighting caller
//! therefore also moves the callee's model less. The gradient the handler returns w.r.t. the
//! caller's inputs already carries the factor and is sent as is.

use crate::axon::StakeLookup;
use crate::tensor::{f32s_to_le_bytes, le_bytes_to_f32s, DType, OwnedTensor};

/// Why a masking configuration was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MaskingError {
    /// A temperature that is zero, negative or not finite (the value given).
    #[error("the masking temperature must be a positive finite number, got {0}")]
    Temperature(f64),
}

/// Competitive masking switched on, with its temperature T (in units of a uniform network's
/// stake-weight, see the module doc). Valid by construction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskingConfig {
    temperature: f64,
}

impl MaskingConfig {
    /// Masking at `temperature`; refuses one that is not positive and finite.
    pub fn new(temperature: f64) -> Result<MaskingConfig, MaskingError> {
        if temperature.is_finite() && temperature > 0.0 {
            Ok(MaskingConfig { temperature })
        } else {
            Err(MaskingError::Temperature(temperature))
        }
    }

    /// The temperature T.
    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// The factor `callee` answers `caller` with, from the lookup's standing of the two; `None`
    /// when the lookup cannot say ([`StakeLookup::competition`]), and the answer goes unmasked.
    pub fn factor(
        &self,
        lookup: &(impl StakeLookup + ?Sized),
        caller: &[u8; 32],
        callee: &[u8; 32],
    ) -> Option<f32> {
        lookup.competition(caller, callee).map(|c| self.mask(c) as f32)
    }

    /// Eqs. 7-8: m = σ((x_ij − μ_j) / T), strictly inside (0, 1), non-decreasing in x_ij.
    pub fn mask(&self, c: Competition) -> f64 {
        let z = ((c.stake_weight - c.mean) / self.temperature).clamp(-MAX_EXPONENT, MAX_EXPONENT);
        // NaN inputs (a feeder's mistake) give the neutral 0.5 rather than a NaN answer.
        let z = if z.is_nan() { 0.0 } else { z };
        1.0 / (1.0 + (-z).exp())
    }
}

/// |(x − μ) / T| beyond this is saturated: σ(30) = 1 − 9.4e-14.
const MAX_EXPONENT: f64 = 30.0;

/// A caller's standing with one callee, both terms in units of a uniform network's
/// stake-weight (module doc): what [`crate::StakeLookup::competition`] returns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Competition {
    /// x_ij = n² s_i w_ij / Σ_k s_k.
    pub stake_weight: f64,
    /// μ_j = (1/n) Σ_k x_kj over all n registered neurons.
    pub mean: f64,
}

/// Multiplies every element of a float tensor by `mask`, in its own dtype. Integer tensors
/// are returned unchanged (an axon's outputs are validated as floats afterwards; a gradient is
/// always float). A mask of exactly 1 leaves the bytes as they were.
pub fn scale(tensor: OwnedTensor, mask: f32) -> OwnedTensor {
    if mask == 1.0 {
        return tensor;
    }
    let data: Vec<u8> = match tensor.dtype {
        DType::F32 => {
            let v: Vec<f32> = le_bytes_to_f32s(&tensor.data).into_iter().map(|x| x * mask).collect();
            f32s_to_le_bytes(&v)
        }
        DType::F16 => scale_halves(
            &tensor.data,
            mask,
            |b| half::f16::from_le_bytes(b).to_f32(),
            |x| half::f16::from_f32(x).to_le_bytes(),
        ),
        DType::BF16 => scale_halves(
            &tensor.data,
            mask,
            |b| half::bf16::from_le_bytes(b).to_f32(),
            |x| half::bf16::from_f32(x).to_le_bytes(),
        ),
        DType::I64 | DType::U8 => return tensor,
    };
    OwnedTensor { data: data.into(), ..tensor }
}

/// A 16-bit float tensor's bytes times `mask`, widened to f32 for the product.
fn scale_halves(data: &[u8], mask: f32, widen: fn([u8; 2]) -> f32, narrow: fn(f32) -> [u8; 2]) -> Vec<u8> {
    data.chunks_exact(2).flat_map(|c| narrow(widen([c[0], c[1]]) * mask)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Modality;
    use proptest::prelude::*;

    fn sigma(z: f64) -> f64 {
        1.0 / (1.0 + (-z).exp())
    }

    #[test]
    fn bad_temperatures_are_refused_with_their_value() {
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = MaskingConfig::new(t).unwrap_err();
            assert!(e.to_string().contains("positive finite"), "{e}");
        }
        assert_eq!(MaskingConfig::new(0.5).unwrap().temperature(), 0.5);
    }

    #[test]
    fn the_mask_is_the_temperature_scaled_sigmoid_of_the_distance_to_the_mean() {
        let m = MaskingConfig::new(2.0).unwrap();
        let c = |x, mu| Competition { stake_weight: x, mean: mu };
        assert_eq!(m.mask(c(1.0, 1.0)), 0.5);
        assert!((m.mask(c(3.0, 1.0)) - sigma(1.0)).abs() < 1e-15);
        assert!((m.mask(c(0.0, 1.0)) - sigma(-0.5)).abs() < 1e-15);
        // Saturated, yet strictly inside (0, 1).
        let low = m.mask(c(0.0, 1e9));
        let high = m.mask(c(1e9, 0.0));
        assert!(low > 0.0 && low < 1e-12, "{low}");
        assert!(high < 1.0 && high > 1.0 - 1e-12, "{high}");
        assert_eq!(m.mask(c(f64::NAN, 1.0)), 0.5);
    }

    #[test]
    fn scaling_multiplies_floats_in_their_dtype_and_leaves_integers() {
        let t = OwnedTensor::from_f32(Modality::Tensor, &[1, 1, 3], &[2.0, -4.0, 0.5]);
        let s = scale(t.clone(), 0.25);
        assert_eq!(le_bytes_to_f32s(&s.data), vec![0.5, -1.0, 0.125]);
        assert_eq!((s.shape, s.dtype, s.modality), (t.shape.clone(), t.dtype, t.modality));
        assert_eq!(scale(t.clone(), 1.0).data, t.data, "a mask of 1 changes no byte");
        let h: Vec<u8> = [2.0f32, -4.0].iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
        let h = OwnedTensor {
            dtype: DType::F16,
            modality: Modality::Tensor,
            shape: vec![1, 1, 2],
            data: h.into(),
        };
        let hs = scale(h, 0.5);
        let back: Vec<f32> =
            hs.data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
        assert_eq!(back, vec![1.0, -2.0]);
        let b: Vec<u8> = [8.0f32].iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect();
        let b = OwnedTensor {
            dtype: DType::BF16,
            modality: Modality::Tensor,
            shape: vec![1, 1, 1],
            data: b.into(),
        };
        assert_eq!(
            half::bf16::from_le_bytes([scale(b.clone(), 0.5).data[0], scale(b, 0.5).data[1]]).to_f32(),
            4.0
        );
        let i = OwnedTensor {
            dtype: DType::U8,
            modality: Modality::Text,
            shape: vec![1, 2],
            data: vec![7, 9].into(),
        };
        assert_eq!(scale(i.clone(), 0.5).data, i.data);
    }

    proptest! {
        /// Eq. 8's σ has range (0, 1): so has the mask, whatever the standing and temperature,
        /// and it never falls as the caller's stake-weight grows.
        #[test]
        fn the_mask_is_inside_the_unit_interval_and_monotone_in_the_stake_weight(
            t in 1e-3f64..1e3,
            mean in 0.0f64..1e4,
            x in 0.0f64..1e4,
            dx in 0.0f64..1e4,
        ) {
            let m = MaskingConfig::new(t).unwrap();
            let lo = m.mask(Competition { stake_weight: x, mean });
            let hi = m.mask(Competition { stake_weight: x + dx, mean });
            prop_assert!(lo > 0.0 && lo < 1.0, "{lo}");
            prop_assert!(hi > 0.0 && hi < 1.0, "{hi}");
            prop_assert!(hi >= lo, "{lo} > {hi}");
            // Strictly, where the exponent is not saturated.
            if dx > 0.0 && ((x + dx - mean) / t).abs() < 20.0 && ((x - mean) / t).abs() < 20.0 && dx / t > 1e-5 {
                prop_assert!(hi > lo, "{lo} == {hi}");
            }
        }
    }
}
