//! Models for tests, benchmarks and examples of an axon (feature `test-utils`): the known
//! function the interoperability tests check on both sides, and an echo.

use crate::{Caller, Handler, HandlerError, Modality, OwnedTensor, TensorView};

/// The floats of a float TENSOR; anything else is a [`HandlerError::NotImplemented`] that
/// says what to send.
fn floats(x: &TensorView<'_>) -> Result<Vec<f32>, HandlerError> {
    if x.modality != Modality::Tensor {
        return Err(HandlerError::NotImplemented(format!("modality {:?}; send a float TENSOR", x.modality)));
    }
    x.to_f32_vec().ok_or_else(|| HandlerError::NotImplemented(format!("dtype {:?}", x.dtype)))
}

/// y = 2x + 1 elementwise, in `x`'s shape.
pub fn affine(x: &TensorView<'_>) -> Result<OwnedTensor, HandlerError> {
    let y: Vec<f32> = floats(x)?.iter().map(|a| 2.0 * a + 1.0).collect();
    Ok(OwnedTensor::from_f32(Modality::Tensor, x.shape, &y))
}

/// The gradient of [`affine`] with respect to its input, given the output's `g`: 2g.
pub fn affine_grad(g: &TensorView<'_>) -> Result<OwnedTensor, HandlerError> {
    let dx: Vec<f32> = floats(g)?.iter().map(|a| 2.0 * a).collect();
    Ok(OwnedTensor::from_f32(Modality::Tensor, g.shape, &dx))
}

/// Serves [`affine`] and answers a Backward with [`affine_grad`]: the known function of the
/// interoperability tests (the Python peer computes the same).
pub struct Affine;

impl Handler for Affine {
    fn forward(&self, _caller: &Caller, inputs: &TensorView<'_>) -> Result<OwnedTensor, HandlerError> {
        affine(inputs)
    }

    fn backward(
        &self,
        _caller: &Caller,
        _inputs: &TensorView<'_>,
        grads: &TensorView<'_>,
    ) -> Result<Option<OwnedTensor>, HandlerError> {
        affine_grad(grads).map(Some)
    }
}

/// Answers a Forward with its inputs, unchanged (any modality and dtype), and a Backward with
/// a bare acknowledgement: the cheapest model, so a measurement sees only the transport.
pub struct Echo;

impl Handler for Echo {
    fn forward(&self, _caller: &Caller, inputs: &TensorView<'_>) -> Result<OwnedTensor, HandlerError> {
        Ok(inputs.to_owned())
    }

    fn backward(
        &self,
        _caller: &Caller,
        _inputs: &TensorView<'_>,
        _grads: &TensorView<'_>,
    ) -> Result<Option<OwnedTensor>, HandlerError> {
        Ok(None)
    }
}
