//! How a peer reaches its neighbours' axons: one small trait, [`Neighbours`], implemented by the
//! wire's [`Dendrite`] (gRPC, the real network) and by [`InProcess`], which calls each
//! neighbour's [`Handler`] directly (the same handler its axon would run, without sockets).
//!
//! The in-process transport lets a whole market run in one process, in lockstep, from a seed:
//! what the peer loop does is the same code either way; only the wire is left out.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use wire::{
    Caller, Dendrite, Handler, MaskingConfig, ModelVersion, OwnedTensor, StakeLookup, StakeTable, Target,
    TensorView,
};

/// One neighbour's answer and the model version its authentication names (a MAC in protocol 5;
/// issue 16).
pub type Signed = (OwnedTensor, ModelVersion);

/// A peer's way to its neighbours.
///
/// Contract: `forward` returns one entry per target, in the targets' order, `None` for a
/// neighbour that failed, timed out or refused (the reason is the transport's business: the
/// wire counts it in its metrics). `backward` hands each target its gradient and returns
/// without waiting for the answers: a slow neighbour must not slow the sender's training.
pub trait Neighbours: Send + Sync {
    /// Sends `inputs` to every target; each answer within about `timeout`, with the model
    /// version its responder authenticated it with (a validator compares it with the version the
    /// responder published on chain: see [`crate::copies`]).
    fn forward_signed(
        &self,
        targets: &[Target],
        inputs: &OwnedTensor,
        timeout: Duration,
    ) -> impl Future<Output = Vec<Option<Signed>>> + Send;

    /// [`Neighbours::forward_signed`] without the versions.
    fn forward(
        &self,
        targets: &[Target],
        inputs: &OwnedTensor,
        timeout: Duration,
    ) -> impl Future<Output = Vec<Option<OwnedTensor>>> + Send {
        let signed = self.forward_signed(targets, inputs, timeout);
        async move { signed.await.into_iter().map(|a| a.map(|(t, _)| t)).collect() }
    }

    /// Sends `grads[i]`, the gradient of our loss w.r.t. `targets[i]`'s answer to `inputs`.
    fn backward(&self, targets: Vec<Target>, inputs: OwnedTensor, grads: Vec<OwnedTensor>, timeout: Duration);
}

impl Neighbours for Dendrite {
    async fn forward_signed(
        &self,
        targets: &[Target],
        inputs: &OwnedTensor,
        timeout: Duration,
    ) -> Vec<Option<Signed>> {
        Dendrite::forward(self, targets, inputs, timeout)
            .await
            .into_iter()
            .map(|r| {
                let model = r.model.unwrap_or(ModelVersion::UNVERSIONED);
                if r.is_success() {
                    r.tensor.map(|t| (t, model))
                } else {
                    None
                }
            })
            .collect()
    }

    fn backward(
        &self,
        targets: Vec<Target>,
        inputs: OwnedTensor,
        grads: Vec<OwnedTensor>,
        timeout: Duration,
    ) {
        if targets.is_empty() {
            return;
        }
        let dendrite = self.clone();
        tokio::spawn(async move { Dendrite::backward(&dendrite, &targets, &inputs, &grads, timeout).await });
    }
}

/// Handlers by hotkey.
type Handlers = HashMap<[u8; 32], Arc<dyn Handler>>;

/// Every axon handler of an in-process market, by hotkey: who is reachable. A peer that goes
/// offline is disconnected, and its neighbours' calls to it fail as they would on the wire.
#[derive(Clone, Default)]
pub struct Switchboard {
    handlers: Arc<RwLock<Handlers>>,
    /// Every caller's stake, as an axon reads it from the metagraph.
    stakes: StakeTable,
    /// Competitive masking as every axon of the market would apply it, and the callers it
    /// spares (an axon's trusted keys: the judge).
    masking: Option<(MaskingConfig, Arc<HashSet<[u8; 32]>>)>,
}

impl Switchboard {
    /// An empty switchboard: no handler connected, no stake known, no masking.
    pub fn new() -> Switchboard {
        Switchboard::default()
    }

    /// A switchboard whose every neighbour masks its answers as an axon with
    /// [`wire::AxonConfig::competitive_masking`] does: Forward answers scaled by the caller's
    /// factor, Backward gradients likewise before the handler; `trusted` callers are spared.
    pub fn with_masking(masking: MaskingConfig, trusted: impl IntoIterator<Item = [u8; 32]>) -> Switchboard {
        Switchboard {
            masking: Some((masking, Arc::new(trusted.into_iter().collect()))),
            ..Switchboard::default()
        }
    }

    /// The factor `callee` answers `caller` with; `None`: unmasked.
    fn mask(&self, caller: &[u8; 32], callee: &[u8; 32]) -> Option<f32> {
        let (masking, trusted) = self.masking.as_ref()?;
        if trusted.contains(caller) {
            return None;
        }
        masking.factor(&self.stakes, caller, callee)
    }

    /// `to`'s handler answering `caller`, masked as its axon would, with the model version its
    /// axon would sign into the response.
    fn ask(&self, to: &[u8; 32], caller: &Caller, inputs: &TensorView<'_>) -> Option<Signed> {
        let (answer, version) = self.handler(to)?.forward_versioned(caller, inputs).ok()?;
        let answer = match self.mask(&caller.hotkey, to) {
            Some(m) => wire::masking::scale(answer, m),
            None => answer,
        };
        Some((answer, version))
    }

    /// Makes `hotkey`'s handler reachable (replacing any earlier one).
    pub fn connect(&self, hotkey: [u8; 32], handler: Arc<dyn Handler>) {
        self.handlers.write().unwrap_or_else(|e| e.into_inner()).insert(hotkey, handler);
    }

    /// Takes `hotkey` off the network: calls to it fail from now on.
    pub fn disconnect(&self, hotkey: &[u8; 32]) {
        self.handlers.write().unwrap_or_else(|e| e.into_inner()).remove(hotkey);
    }

    /// The stake table handlers are told callers' stake from; refresh it after each block.
    pub fn stakes(&self) -> &StakeTable {
        &self.stakes
    }

    /// The transport of the peer with `hotkey`.
    pub fn caller(&self, hotkey: [u8; 32]) -> InProcess {
        InProcess { board: self.clone(), hotkey }
    }

    /// `from` asks `to` about `inputs` at once, in this thread: what a handler that relays
    /// another's answers calls (the localnet's copycat). `None` when `to` is offline or refuses.
    pub fn forward_now(&self, from: [u8; 32], to: &[u8; 32], inputs: &TensorView<'_>) -> Option<OwnedTensor> {
        let caller = self.caller(from).caller(to);
        self.ask(to, &caller, inputs).map(|(answer, _)| answer)
    }

    fn handler(&self, hotkey: &[u8; 32]) -> Option<Arc<dyn Handler>> {
        self.handlers.read().unwrap_or_else(|e| e.into_inner()).get(hotkey).cloned()
    }
}

/// One peer's calls on a [`Switchboard`]: each neighbour's handler runs in the caller's thread,
/// one after another, so a market of them is deterministic.
#[derive(Clone)]
pub struct InProcess {
    board: Switchboard,
    hotkey: [u8; 32],
}

impl InProcess {
    /// Who calls `callee`, as its axon would see us.
    fn caller(&self, callee: &[u8; 32]) -> Caller {
        let stakes = &self.board.stakes;
        Caller {
            hotkey: self.hotkey,
            stake: stakes.stake(&self.hotkey).unwrap_or(0),
            priority: stakes.priority(&self.hotkey, callee),
        }
    }
}

impl Neighbours for InProcess {
    async fn forward_signed(
        &self,
        targets: &[Target],
        inputs: &OwnedTensor,
        _timeout: Duration,
    ) -> Vec<Option<Signed>> {
        let view = inputs.view();
        targets.iter().map(|t| self.board.ask(&t.hotkey, &self.caller(&t.hotkey), &view)).collect()
    }

    fn backward(
        &self,
        targets: Vec<Target>,
        inputs: OwnedTensor,
        grads: Vec<OwnedTensor>,
        _timeout: Duration,
    ) {
        let view = inputs.view();
        for (t, g) in targets.iter().zip(&grads) {
            if let Some(h) = self.board.handler(&t.hotkey) {
                let caller = self.caller(&t.hotkey);
                // A refused gradient is the neighbour's business, as on the wire.
                let _ = match self.board.mask(&self.hotkey, &t.hotkey) {
                    Some(m) => h.backward(&caller, &view, &wire::masking::scale(g.clone(), m).view()),
                    None => h.backward(&caller, &view, &g.view()),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{DType, HandlerError, Modality};

    /// Answers its caller's stake as the single value of a `[1, 1, 1]` tensor, and counts
    /// Backward calls.
    struct Echo(std::sync::atomic::AtomicU32);

    impl Handler for Echo {
        fn forward(&self, caller: &Caller, _: &TensorView<'_>) -> Result<OwnedTensor, HandlerError> {
            Ok(OwnedTensor::from_f32(Modality::Tensor, &[1, 1, 1], &[caller.stake as f32]))
        }
        fn backward(
            &self,
            _: &Caller,
            _: &TensorView<'_>,
            _: &TensorView<'_>,
        ) -> Result<Option<OwnedTensor>, HandlerError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(None)
        }
    }

    fn target(k: u8) -> Target {
        Target { hotkey: [k; 32], addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)) }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_switchboard_calls_handlers_as_the_caller_and_forgets_the_disconnected() {
        let board = Switchboard::new();
        let echo = Arc::new(Echo(Default::default()));
        board.connect([1; 32], echo.clone());
        board.stakes().replace_all([([9; 32], 42u64)]);
        let me = board.caller([9; 32]);
        let inputs = OwnedTensor {
            dtype: DType::U8,
            modality: Modality::Text,
            shape: vec![1, 1],
            data: vec![7].into(),
        };
        let got = me.forward(&[target(1), target(2)], &inputs, Duration::from_secs(1)).await;
        let first = got[0].as_ref().expect("a connected handler answers");
        assert_eq!(wire::tensor::le_bytes_to_f32s(&first.data), vec![42.0], "called with the caller's stake");
        assert!(got[1].is_none(), "nobody at hotkey 2");
        me.backward(vec![target(1)], inputs.clone(), vec![first.clone()], Duration::from_secs(1));
        assert_eq!(echo.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        board.disconnect(&[1; 32]);
        assert!(me.forward(&[target(1)], &inputs, Duration::from_secs(1)).await[0].is_none());
    }

    /// In process, neighbours mask as their axons would (001 §2.5): four neurons of stake 100,
    /// caller 8 gives the callee all its weight, caller 9 none, the judge (7) set no weights and
    /// is trusted. μ = 4 · 100 / 400 = 1, x_8 = 16 · 100 / 400 = 4, x_9 = 0: with T = 1 the
    /// callee's answer (the caller's stake, 100) is heard as 100 σ(3) and 100 σ(−1), and as 100
    /// by the judge.
    #[tokio::test(flavor = "current_thread")]
    async fn a_masking_switchboard_weakens_answers_to_callers_below_the_mean() {
        let judge = [7; 32];
        let board = Switchboard::with_masking(MaskingConfig::new(1.0).unwrap(), [judge]);
        board.connect([1; 32], Arc::new(Echo(Default::default())));
        board.stakes().replace_all_with_weights(
            [([1; 32], 100), ([8; 32], 100), ([9; 32], 100), (judge, 100)],
            [([8; 32], vec![([1; 32], 1.0)]), ([9; 32], vec![([2; 32], 1.0)])],
        );
        let inputs = OwnedTensor {
            dtype: DType::U8,
            modality: Modality::Text,
            shape: vec![1, 1],
            data: vec![7].into(),
        };
        let sigma = |z: f32| 1.0 / (1.0 + (-z).exp());
        for (caller, want) in [([8; 32], 100.0 * sigma(3.0)), ([9; 32], 100.0 * sigma(-1.0)), (judge, 100.0)]
        {
            let got = board.caller(caller).forward(&[target(1)], &inputs, Duration::from_secs(1)).await;
            let v = wire::tensor::le_bytes_to_f32s(&got[0].as_ref().expect("answered").data)[0];
            assert!((v - want).abs() < 1e-4, "caller {}: {v} != {want}", caller[0]);
            let relayed = board.forward_now(caller, &[1; 32], &inputs.view()).expect("answered");
            assert_eq!(
                wire::tensor::le_bytes_to_f32s(&relayed.data)[0],
                v,
                "a relay hears what a caller hears"
            );
        }
    }
}
