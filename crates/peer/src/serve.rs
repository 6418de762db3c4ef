//! What this peer's axon answers: f_i(x) from the nucleus for Forward, and the bounded,
//! stake-weighted application of a caller's gradient for Backward (market paper §9 steps 2-4).

use nucleus::{Nucleus, NucleusError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use wire::{Caller, DType, Handler, HandlerError, Modality, ModelVersion, OwnedTensor, TensorView};

/// What the axon serves for Forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serving {
    /// The local model's representation f_i(x).
    Model,
    /// Gaussian noise of the right shape: the localnet's worthless peer. It still acknowledges
    /// Backward calls, and learns nothing from them.
    Noise,
    /// The local model as it is, never changed by Backward calls (acknowledged and dropped):
    /// the lazy peer's model frozen at initialisation.
    Frozen,
}

/// The axon handler of a running peer.
pub struct ModelHandler {
    nucleus: Arc<RwLock<Nucleus>>,
    serving: Serving,
    output_dim: usize,
    context: usize,
    /// Total stake of the metagraph, refreshed each sync: a caller's gradient is weighted by its
    /// share of it, so a sender with little stake moves the model little.
    total_stake: Arc<AtomicU64>,
    noise: Mutex<ChaCha8Rng>,
}

impl ModelHandler {
    /// Serves `nucleus` as `serving` says; a caller's gradient is weighted by its stake's share of
    /// `total_stake`.
    pub fn new(
        nucleus: Arc<RwLock<Nucleus>>,
        serving: Serving,
        total_stake: Arc<AtomicU64>,
        seed: u64,
    ) -> Self {
        let (output_dim, context) = {
            let n = read(&nucleus);
            (n.config().model.output_dim, n.config().model.context)
        };
        ModelHandler {
            nucleus,
            serving,
            output_dim,
            context,
            total_stake,
            noise: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// A caller's weight for its gradients: its share of the total stake, in [0, 1].
    fn stake_weight(&self, caller: &Caller) -> f32 {
        let total = self.total_stake.load(Ordering::Relaxed);
        if total == 0 {
            return 0.0;
        }
        (caller.stake as f64 / total as f64).clamp(0.0, 1.0) as f32
    }

    fn tokens(&self, inputs: &TensorView<'_>) -> Result<(Vec<u8>, usize, usize), HandlerError> {
        let (tokens, batch, seq) = text_tokens(inputs)?;
        if seq > self.context {
            return Err(HandlerError::BadRequest(format!(
                "sequence of {seq} tokens is longer than this model's context of {}",
                self.context
            )));
        }
        Ok((tokens, batch, seq))
    }
}

fn read(nucleus: &RwLock<Nucleus>) -> std::sync::RwLockReadGuard<'_, Nucleus> {
    nucleus.read().unwrap_or_else(|e| e.into_inner())
}

fn write(nucleus: &RwLock<Nucleus>) -> std::sync::RwLockWriteGuard<'_, Nucleus> {
    nucleus.write().unwrap_or_else(|e| e.into_inner())
}

/// TEXT `[batch, seq]` as bytes: u8 directly, i64 token ids when they are bytes (the nucleus
/// tokenizer is the identity on bytes, vocabulary 256).
pub fn text_tokens(inputs: &TensorView<'_>) -> Result<(Vec<u8>, usize, usize), HandlerError> {
    if inputs.modality != Modality::Text {
        return Err(HandlerError::NotImplemented(format!(
            "this peer serves TEXT inputs, not {:?}",
            inputs.modality
        )));
    }
    let &[batch, seq] = inputs.shape else {
        return Err(HandlerError::BadRequest(format!("TEXT must be [batch, seq], got {:?}", inputs.shape)));
    };
    let tokens = match inputs.dtype {
        DType::U8 => inputs.data.to_vec(),
        DType::I64 => inputs
            .data
            .chunks_exact(8)
            .map(|c| {
                let id = i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                u8::try_from(id).map_err(|_| {
                    HandlerError::BadRequest(format!("token id {id} is not a byte (vocabulary 256)"))
                })
            })
            .collect::<Result<Vec<u8>, _>>()?,
        other => {
            return Err(HandlerError::BadRequest(format!("TEXT tokens must be u8 or i64, got {other:?}")))
        }
    };
    Ok((tokens, batch as usize, seq as usize))
}

fn model_error(e: NucleusError) -> HandlerError {
    match e {
        // The request's fault: its shape or its values.
        e @ (NucleusError::Shape { .. }
        | NucleusError::EmptyBatch { .. }
        | NucleusError::Context { .. }
        | NucleusError::NonFinite { .. }) => HandlerError::BadRequest(e.to_string()),
        other => HandlerError::Internal(other.to_string()),
    }
}

/// The nucleus's version as the axon signs it.
fn version_of(nucleus: &Nucleus) -> Result<ModelVersion, HandlerError> {
    let (id, step) = nucleus.model_version().map_err(model_error)?;
    Ok(ModelVersion { id, step })
}

impl Handler for ModelHandler {
    fn forward(&self, caller: &Caller, inputs: &TensorView<'_>) -> Result<OwnedTensor, HandlerError> {
        self.forward_versioned(caller, inputs).map(|(t, _)| t)
    }

    /// The output and the version of the model that computed it, read under the same lock: a
    /// training step in between cannot make the signature name another model. Noise names no
    /// model ([`ModelVersion::UNVERSIONED`]).
    fn forward_versioned(
        &self,
        _caller: &Caller,
        inputs: &TensorView<'_>,
    ) -> Result<(OwnedTensor, ModelVersion), HandlerError> {
        let (tokens, batch, seq) = self.tokens(inputs)?;
        let len = batch * seq * self.output_dim;
        let (values, version) = match self.serving {
            Serving::Model | Serving::Frozen => {
                let nucleus = read(&self.nucleus);
                let values = nucleus.serve_forward(&tokens, batch, seq).map_err(model_error)?;
                (values, version_of(&nucleus)?)
            }
            Serving::Noise => {
                let mut rng = self.noise.lock().unwrap_or_else(|e| e.into_inner());
                // Standard normal by Box-Muller: enough for noise, no extra dependency.
                let noise = (0..len)
                    .map(|_| {
                        let (u, v): (f32, f32) = (rng.gen_range(f32::EPSILON..1.0), rng.gen());
                        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
                    })
                    .collect();
                (noise, ModelVersion::UNVERSIONED)
            }
        };
        let shape = [batch as u64, seq as u64, self.output_dim as u64];
        Ok((OwnedTensor::from_f32(Modality::Tensor, &shape, &values), version))
    }

    fn backward(
        &self,
        caller: &Caller,
        inputs: &TensorView<'_>,
        grads: &TensorView<'_>,
    ) -> Result<Option<OwnedTensor>, HandlerError> {
        self.backward_versioned(caller, inputs, grads).map(|(t, _)| t)
    }

    /// Applies the gradient (see the module doc); the version is the model's as it received it.
    fn backward_versioned(
        &self,
        caller: &Caller,
        inputs: &TensorView<'_>,
        grads: &TensorView<'_>,
    ) -> Result<(Option<OwnedTensor>, ModelVersion), HandlerError> {
        let (tokens, batch, seq) = self.tokens(inputs)?;
        let expected = [batch as u64, seq as u64, self.output_dim as u64];
        if grads.shape != expected {
            return Err(HandlerError::BadRequest(format!(
                "gradient shape {:?} does not match this peer's output {expected:?}",
                grads.shape
            )));
        }
        let Some(values) = grads.to_f32_vec() else {
            return Err(HandlerError::BadRequest(format!("gradients must be floats, got {:?}", grads.dtype)));
        };
        let weight = self.stake_weight(caller);
        if self.serving == Serving::Noise {
            return Ok((None, ModelVersion::UNVERSIONED));
        }
        if self.serving != Serving::Model || weight == 0.0 {
            return Ok((None, version_of(&read(&self.nucleus))?));
        }
        let mut nucleus = write(&self.nucleus);
        let version = version_of(&nucleus)?;
        nucleus.apply_remote_gradient(&tokens, batch, seq, &values, weight).map_err(model_error)?;
        Ok((None, version))
    }
}

/// How a copycat fetches another peer's answer to the inputs it was sent.
pub type Relay = dyn Fn(&Caller, &TensorView<'_>) -> Result<OwnedTensor, HandlerError> + Send + Sync;

/// The axon handler of the localnet's `copycat` (issue 16): a dishonest peer that answers
/// Forward with another peer's answer to the same inputs, fetched when asked (through the real
/// dendrite in `agora peer run`, through the switchboard in process), and signs it as its own.
/// Its signature names no model ([`ModelVersion::UNVERSIONED`]): it has none that answered.
/// Gradients sent to it are acknowledged and dropped. Copy detection
/// ([`crate::copies`]) is what must keep it from being paid.
pub struct RelayHandler {
    relay: Box<Relay>,
}

impl RelayHandler {
    /// Serves `relay`'s answers as its own.
    pub fn new(relay: Box<Relay>) -> RelayHandler {
        RelayHandler { relay }
    }
}

impl Handler for RelayHandler {
    fn forward(&self, caller: &Caller, inputs: &TensorView<'_>) -> Result<OwnedTensor, HandlerError> {
        (self.relay)(caller, inputs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use nucleus::NucleusConfig;

    fn handler(serving: Serving) -> (ModelHandler, Arc<RwLock<Nucleus>>) {
        let nucleus = Arc::new(RwLock::new(Nucleus::new(NucleusConfig::tiny(1)).expect("tiny config")));
        let h = ModelHandler::new(nucleus.clone(), serving, Arc::new(AtomicU64::new(100)), 7);
        (h, nucleus)
    }

    fn text<'a>(shape: &'a [u64; 2], data: &'a [u8]) -> TensorView<'a> {
        TensorView { dtype: DType::U8, modality: Modality::Text, shape, data }
    }

    const CALLER: Caller = Caller { hotkey: [1; 32], stake: 50, priority: 50 };

    #[test]
    fn forward_serves_the_nucleus_representation() {
        let (h, nucleus) = handler(Serving::Model);
        let tokens = b"hello world, hello".to_vec();
        let out = h.forward(&CALLER, &text(&[2, 9], &tokens)).expect("forward");
        let d = nucleus.read().unwrap().config().model.output_dim as u64;
        assert_eq!(out.shape, vec![2, 9, d]);
        let direct = nucleus.read().unwrap().serve_forward(&tokens, 2, 9).expect("serve");
        assert_eq!(wire::tensor::le_bytes_to_f32s(&out.data), direct);
    }

    /// Issue 16: the version signed with an answer is the nucleus's, and it changes when a
    /// caller's gradient changes the model; noise names no model.
    #[test]
    fn answers_name_the_model_version_that_computed_them() {
        let (h, nucleus) = handler(Serving::Model);
        let tokens = b"abcdefgh".to_vec();
        let (out, v) = h.forward_versioned(&CALLER, &text(&[1, 8], &tokens)).expect("forward");
        let (id, step) = nucleus.read().unwrap().model_version().unwrap();
        assert_eq!(v, ModelVersion { id, step });
        assert!(!v.is_unversioned());
        let grads = wire::tensor::f32s_to_le_bytes(&vec![0.5; out.data.len() / 4]);
        let g = TensorView { dtype: DType::F32, modality: Modality::Tensor, shape: &out.shape, data: &grads };
        let (_, received) = h.backward_versioned(&CALLER, &text(&[1, 8], &tokens), &g).expect("backward");
        assert_eq!(received, v, "the model as it received the gradient");
        let (_, after) = h.forward_versioned(&CALLER, &text(&[1, 8], &tokens)).expect("forward");
        assert_ne!(after.id, v.id);
        let (noise, _) = handler(Serving::Noise);
        let (_, nv) = noise.forward_versioned(&CALLER, &text(&[1, 8], &tokens)).expect("forward");
        assert!(nv.is_unversioned());
    }

    #[test]
    fn i64_tokens_are_bytes_and_out_of_vocabulary_ids_are_refused() {
        let (h, _) = handler(Serving::Model);
        let ids: Vec<u8> = [104i64, 105].iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView { dtype: DType::I64, modality: Modality::Text, shape: &[1, 2], data: &ids };
        assert!(h.forward(&CALLER, &view).is_ok());
        let bad: Vec<u8> = [104i64, 300].iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView { dtype: DType::I64, modality: Modality::Text, shape: &[1, 2], data: &bad };
        assert!(matches!(h.forward(&CALLER, &view), Err(HandlerError::BadRequest(_))));
    }

    #[test]
    fn long_sequences_and_other_modalities_are_refused() {
        let (h, _) = handler(Serving::Model);
        let long = vec![b'a'; 1000];
        assert!(matches!(h.forward(&CALLER, &text(&[1, 1000], &long)), Err(HandlerError::BadRequest(_))));
        let image =
            TensorView { dtype: DType::U8, modality: Modality::Image, shape: &[1, 1, 1, 1, 1], data: &[0] };
        assert!(matches!(h.forward(&CALLER, &image), Err(HandlerError::NotImplemented(_))));
    }

    #[test]
    fn noise_is_not_the_model() {
        let (h, nucleus) = handler(Serving::Noise);
        let tokens = b"abcdefgh".to_vec();
        let out = h.forward(&CALLER, &text(&[1, 8], &tokens)).expect("forward");
        let direct = nucleus.read().unwrap().serve_forward(&tokens, 1, 8).expect("serve");
        let noise = wire::tensor::le_bytes_to_f32s(&out.data);
        assert_eq!(noise.len(), direct.len());
        assert_ne!(noise, direct);
        let var = noise.iter().map(|v| v * v).sum::<f32>() / noise.len() as f32;
        assert!((0.3..3.0).contains(&var), "noise variance {var}");
    }

    #[test]
    fn a_frozen_model_serves_itself_and_ignores_gradients() {
        let (h, nucleus) = handler(Serving::Frozen);
        let tokens = b"abcdefgh".to_vec();
        let before = nucleus.read().unwrap().serve_forward(&tokens, 1, 8).expect("serve");
        let out = h.forward(&CALLER, &text(&[1, 8], &tokens)).expect("forward");
        assert_eq!(wire::tensor::le_bytes_to_f32s(&out.data), before);
        let grads = wire::tensor::f32s_to_le_bytes(&vec![0.5; before.len()]);
        let g = TensorView {
            dtype: DType::F32,
            modality: Modality::Tensor,
            shape: &[1, 8, (before.len() / 8) as u64],
            data: &grads,
        };
        assert_eq!(h.backward(&CALLER, &text(&[1, 8], &tokens), &g), Ok(None));
        assert_eq!(nucleus.read().unwrap().serve_forward(&tokens, 1, 8).expect("serve"), before);
    }

    #[test]
    fn backward_moves_the_model_and_unstaked_callers_do_not() {
        let (h, nucleus) = handler(Serving::Model);
        let tokens = b"abcdefgh".to_vec();
        let before = nucleus.read().unwrap().serve_forward(&tokens, 1, 8).expect("serve");
        let d = before.len() / 8;
        let grads: Vec<u8> = wire::tensor::f32s_to_le_bytes(&vec![0.5; before.len()]);
        let g = TensorView {
            dtype: DType::F32,
            modality: Modality::Tensor,
            shape: &[1, 8, d as u64],
            data: &grads,
        };
        let nobody = Caller { hotkey: [2; 32], stake: 0, priority: 0 };
        assert_eq!(h.backward(&nobody, &text(&[1, 8], &tokens), &g), Ok(None));
        assert_eq!(nucleus.read().unwrap().serve_forward(&tokens, 1, 8).expect("serve"), before);
        assert_eq!(h.backward(&CALLER, &text(&[1, 8], &tokens), &g), Ok(None));
        assert_ne!(nucleus.read().unwrap().serve_forward(&tokens, 1, 8).expect("serve"), before);
        let wrong = TensorView {
            dtype: DType::F32,
            modality: Modality::Tensor,
            shape: &[1, 8, 1],
            data: &grads[..32],
        };
        assert!(matches!(
            h.backward(&CALLER, &text(&[1, 8], &tokens), &wrong),
            Err(HandlerError::BadRequest(_))
        ));
    }
}
