//! Faults on purpose (issue 13): a dendrite fans out to healthy axons and to axons behind
//! fault proxies (20% loss with 200 ms jitter, cut links, garbage, a slow answer, and a clean
//! proxy as the control). Every round returns within its deadline, the healthy axons answer,
//! and each faulty one fails with its own code without touching the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use wire::{
    serve, AxonConfig, AxonHandle, Caller, Dendrite, FaultConfig, FaultProxy, Handler, HandlerError,
    Modality, OwnedTensor, ReturnCode, StakeTable, Target, TensorView,
};

struct Double;

impl Handler for Double {
    fn forward(&self, _c: &Caller, x: &TensorView<'_>) -> Result<OwnedTensor, HandlerError> {
        let v = x.to_f32_vec().ok_or_else(|| HandlerError::NotImplemented("floats only".into()))?;
        Ok(OwnedTensor::from_f32(Modality::Tensor, x.shape, &v.iter().map(|a| 2.0 * a).collect::<Vec<_>>()))
    }
    fn backward(
        &self,
        _c: &Caller,
        _x: &TensorView<'_>,
        _g: &TensorView<'_>,
    ) -> Result<Option<OwnedTensor>, HandlerError> {
        Ok(None)
    }
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

async fn axon(seed: u8, stakes: &StakeTable) -> AxonHandle {
    serve(AxonConfig::default(), key(seed), Arc::new(Double), Arc::new(stakes.clone())).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_under_loss_and_jitter_returns_by_its_deadline_and_isolates_faulty_links() {
    let stakes = StakeTable::new();
    stakes.set(key(1).verifying_key().to_bytes(), 100);
    let mut axons = Vec::new();
    for seed in 10..19 {
        axons.push(axon(seed, &stakes).await);
    }
    let lossy = FaultConfig::lossy(7, 0.2, Duration::from_millis(200));
    let configs = [
        ("clean proxy", FaultConfig::none(1)),
        ("lossy a", FaultConfig { seed: 2, ..lossy }),
        ("lossy b", FaultConfig { seed: 3, ..lossy }),
        ("lossy c", FaultConfig { seed: 4, ..lossy }),
        ("cut links", FaultConfig { disconnect: 0.3, ..FaultConfig::none(5) }),
        ("garbage", FaultConfig { garbage: 1.0, ..FaultConfig::none(6) }),
        ("slow", FaultConfig { slow_response: Duration::from_secs(3), ..FaultConfig::none(7) }),
    ];
    let mut proxies = Vec::new();
    let mut targets = Vec::new();
    // Two axons answered directly, the others through their proxy.
    for (i, a) in axons.iter().enumerate() {
        let hotkey = a.hotkey();
        match configs.get(i.wrapping_sub(2)) {
            Some((_, config)) if i >= 2 => {
                let p = FaultProxy::start(a.local_addr(), *config).await.unwrap();
                targets.push(Target { hotkey, addr: p.local_addr() });
                proxies.push(p);
            }
            _ => targets.push(Target { hotkey, addr: a.local_addr() }),
        }
    }
    let d = Dendrite::new(key(1));
    let x = OwnedTensor::from_f32(Modality::Tensor, &[2, 4, 8], &[0.25; 64]);
    let deadline = Duration::from_millis(450);
    let rounds = 12;
    let mut lossy_codes = Vec::new();
    for round in 0..rounds {
        let started = Instant::now();
        let r = d.forward(&targets, &x, deadline).await;
        let took = started.elapsed();
        // The whole fan-out is bounded by the deadline, whatever the links do.
        assert!(took < deadline + Duration::from_millis(400), "round {round} took {took:?}");
        for (i, res) in r.iter().enumerate() {
            let what = if i < 2 { "direct" } else { configs[i - 2].0 };
            let code = res.code;
            match what {
                "direct" | "clean proxy" => {
                    assert_eq!(code, ReturnCode::Success, "round {round}, {what}: {}", res.message);
                    let y = wire::tensor::le_bytes_to_f32s(&res.tensor.as_ref().unwrap().data);
                    assert!(y.iter().all(|v| *v == 0.5), "{what}");
                    assert!(res.latency < deadline);
                }
                "lossy a" | "lossy b" | "lossy c" => {
                    assert!(
                        matches!(code, ReturnCode::Success | ReturnCode::Timeout | ReturnCode::Unavailable),
                        "round {round}, {what}: {code:?} {}",
                        res.message
                    );
                    lossy_codes.push(code);
                }
                "cut links" => assert!(
                    matches!(code, ReturnCode::Success | ReturnCode::Unavailable | ReturnCode::Timeout),
                    "round {round}, {what}: {code:?} {}",
                    res.message
                ),
                "garbage" => assert!(
                    matches!(code, ReturnCode::Unavailable | ReturnCode::InternalError | ReturnCode::Timeout),
                    "round {round}, {what}: {code:?} {}",
                    res.message
                ),
                "slow" => assert_eq!(code, ReturnCode::Timeout, "round {round}, {what}: {}", res.message),
                _ => unreachable!(),
            }
            if !res.is_success() {
                assert!(res.tensor.is_none() && !res.message.is_empty());
            }
        }
    }
    // The faults were real: the lossy links both delivered and failed, and each proxy did what
    // it was set to.
    let ok = lossy_codes.iter().filter(|c| **c == ReturnCode::Success).count();
    assert!(ok > 0 && ok < lossy_codes.len(), "lossy links: {ok} of {} succeeded", lossy_codes.len());
    let stats: Vec<_> = proxies.iter().map(|p| p.stats()).collect();
    assert_eq!((stats[0].lost, stats[0].disconnects, stats[0].garbled_connections), (0, 0, 0));
    assert!(stats[1..4].iter().all(|s| s.lost > 0), "{stats:?}");
    assert!(stats[4].disconnects > 0 && stats[5].garbled_connections > 0, "{stats:?}");
    eprintln!("lossy links: {ok} of {} calls succeeded; {stats:?}", lossy_codes.len());
    for p in proxies {
        p.shutdown();
    }
    for a in axons {
        a.shutdown().await.unwrap();
    }
}
