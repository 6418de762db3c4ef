//! Axon and dendrite on loopback: real tonic servers on 127.0.0.1:0, real handshakes and MACs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use prost::Message;
use wire::metrics::Call;
use wire::proto::axon_client::AxonClient;
use wire::proto::{self, BackwardRequest, BackwardResponse, ForwardRequest, ForwardResponse};
use wire::test_utils::{affine, affine_grad};
use wire::{
    encode, serve, AxonConfig, AxonHandle, BodyDigest, Caller, DType, Dendrite, Handler, HandlerError,
    Initiator, Limits, Modality, Offer, OwnedTensor, ReturnCode, Session, StakeTable, Target, TensorView,
};

type Client = AxonClient<tonic::transport::Channel>;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn hotkey(seed: u8) -> [u8; 32] {
    key(seed).verifying_key().to_bytes()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Opens once, then stays open; a handler blocked on it holds its worker.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// The affine model, recording who it served in which order, optionally held at a gate or
/// slowed down.
#[derive(Default)]
struct Recorder {
    gate: Option<Arc<Gate>>,
    delay: Duration,
    served: Mutex<Vec<[u8; 32]>>,
    calls: AtomicUsize,
}

impl Handler for Recorder {
    fn forward(&self, caller: &Caller, inputs: &TensorView<'_>) -> Result<OwnedTensor, HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.served.lock().unwrap().push(caller.hotkey);
        if let Some(g) = &self.gate {
            g.wait();
        }
        std::thread::sleep(self.delay);
        affine(inputs)
    }

    fn backward(
        &self,
        _caller: &Caller,
        _inputs: &TensorView<'_>,
        grads: &TensorView<'_>,
    ) -> Result<Option<OwnedTensor>, HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        affine_grad(grads).map(Some)
    }
}

/// A model that misbehaves in a chosen way.
enum Broken {
    Nan,
    WrongShape,
    Panics,
    BareAck,
}

impl Handler for Broken {
    fn forward(&self, _c: &Caller, x: &TensorView<'_>) -> Result<OwnedTensor, HandlerError> {
        match self {
            Broken::Nan => {
                let n = x.shape.iter().product::<u64>() as usize;
                Ok(OwnedTensor::from_f32(Modality::Tensor, x.shape, &vec![f32::NAN; n]))
            }
            Broken::WrongShape => Ok(OwnedTensor::from_f32(Modality::Tensor, &[9, 9, 1], &[0.0; 81])),
            Broken::Panics => panic!("model exploded"),
            Broken::BareAck => affine(x),
        }
    }
    fn backward(
        &self,
        _c: &Caller,
        _x: &TensorView<'_>,
        _g: &TensorView<'_>,
    ) -> Result<Option<OwnedTensor>, HandlerError> {
        match self {
            Broken::BareAck => Ok(None),
            _ => Err(HandlerError::NotImplemented("no backward".into())),
        }
    }
}

fn stakes(entries: &[(u8, u64)]) -> StakeTable {
    let t = StakeTable::new();
    t.replace_all(entries.iter().map(|&(s, stake)| (hotkey(s), stake)));
    t
}

async fn start(config: AxonConfig, seed: u8, handler: Arc<dyn Handler>, table: &StakeTable) -> AxonHandle {
    serve(config, key(seed), handler, Arc::new(table.clone())).await.unwrap()
}

fn target(axon: &AxonHandle) -> Target {
    Target { hotkey: axon.hotkey(), addr: axon.local_addr() }
}

fn input(values: &[f32]) -> OwnedTensor {
    OwnedTensor::from_f32(Modality::Tensor, &[1, 1, values.len() as u64], values)
}

fn floats(t: &OwnedTensor) -> Vec<f32> {
    wire::tensor::le_bytes_to_f32s(&t.data)
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_and_backward_return_the_handlers_numbers_and_metrics_count_them() {
    let table = stakes(&[(1, 10)]);
    let axon = start(AxonConfig::default(), 100, Arc::new(Recorder::default()), &table).await;
    let d = Dendrite::new(key(1));
    let x = OwnedTensor::from_f32(Modality::Tensor, &[2, 1, 3], &[0.0, 1.0, -2.5, 3.0, 0.5, 100.0]);

    let r = d.forward(&[target(&axon)], &x, SECOND).await;
    assert_eq!(r[0].code, ReturnCode::Success, "{}", r[0].message);
    let y = r[0].tensor.as_ref().unwrap();
    assert_eq!(y.shape, vec![2, 1, 3]);
    assert_eq!(floats(y), vec![1.0, 3.0, -4.0, 7.0, 2.0, 201.0]);

    let g = OwnedTensor::from_f32(Modality::Tensor, &[2, 1, 3], &[1.0, 0.0, -1.0, 0.5, 2.0, 3.0]);
    let r = d.backward(&[target(&axon)], &x, std::slice::from_ref(&g), SECOND).await;
    assert_eq!(r[0].code, ReturnCode::Success, "{}", r[0].message);
    assert_eq!(floats(r[0].tensor.as_ref().unwrap()), vec![2.0, 0.0, -2.0, 1.0, 4.0, 6.0]);

    let me = hex::encode(hotkey(1));
    let m = axon.metrics();
    assert_eq!(m.requests(&me, Call::Forward, ReturnCode::Success), 1);
    assert_eq!(m.requests(&me, Call::Backward, ReturnCode::Success), 1);
    let text = m.render_prometheus();
    assert!(
        text.contains(&format!(
            "agora_wire_axon_requests_total{{peer=\"{me}\",call=\"forward\",code=\"SUCCESS\"}} 1"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("agora_wire_axon_latency_seconds_count{{peer=\"{me}\"}} 2")), "{text}");
    let them = hex::encode(axon.hotkey());
    assert_eq!(d.metrics().requests(&them, Call::Forward, ReturnCode::Success), 1);
    axon.shutdown().await.unwrap();
}

/// Market paper §3: with the only worker busy, queued requests are served highest stake first,
/// equal stakes in arrival order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_requests_are_served_by_stake_then_arrival() {
    let gate = Arc::new(Gate::default());
    let model = Arc::new(Recorder { gate: Some(gate.clone()), ..Default::default() });
    // Callers 1..=5 with stakes: the blocker 1000, then low 1, low 1, high 50, mid 20.
    let table = stakes(&[(1, 1000), (2, 1), (3, 1), (4, 50), (5, 20)]);
    let config = AxonConfig { concurrency: 1, ..Default::default() };
    let axon = start(config, 100, model.clone(), &table).await;
    let served = serve_in_turns(&axon, &model, &gate, 1, &[2, 3, 4, 5]).await;
    assert_eq!(served, vec![hotkey(1), hotkey(4), hotkey(5), hotkey(2), hotkey(3)]);
    axon.shutdown().await.unwrap();
}

/// Caller `blocker` takes the axon's only worker (the model waits at `gate`), then each of
/// `queued` calls in turn and waits in the queue; the gate opens and every call must succeed.
/// Whom the model served, in order.
async fn serve_in_turns(
    axon: &AxonHandle,
    model: &Recorder,
    gate: &Gate,
    blocker: u8,
    queued: &[u8],
) -> Vec<[u8; 32]> {
    let t = target(axon);
    let call = move |seed: u8| {
        tokio::spawn(async move { Dendrite::new(key(seed)).forward(&[t], &input(&[1.0]), 10 * SECOND).await })
    };
    let first = call(blocker);
    until("the blocker to hold the worker", || model.calls.load(Ordering::SeqCst) == 1).await;
    let mut calls = Vec::new();
    for (n, &seed) in queued.iter().enumerate() {
        calls.push(call(seed));
        until("the request to queue", || axon.queued() == n + 1).await;
    }
    gate.open();
    assert_eq!(first.await.unwrap()[0].code, ReturnCode::Success);
    for c in calls {
        assert_eq!(c.await.unwrap()[0].code, ReturnCode::Success);
    }
    let served = model.served.lock().unwrap().clone();
    served
}

/// Market paper §3, issue 16: the queue orders by w_ij * s_i. Of callers with equal stake, the
/// one that weights this axon's neuron more on chain is served first under load; one that has
/// set no weights yet ranks by its stake alone, as if it weighted everyone equally (1/n: here
/// 1/4), and one that weights the axon not at all comes last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_requests_are_served_by_weight_times_stake() {
    let gate = Arc::new(Gate::default());
    let model = Arc::new(Recorder { gate: Some(gate.clone()), ..Default::default() });
    let table = stakes(&[(1, 1000), (2, 100), (3, 100), (4, 100)]);
    let me = hotkey(100);
    let elsewhere = hotkey(9);
    // Caller 2 gives the axon 0.1 of its weight, caller 3 gives it 0.6, caller 4 none at all
    // (it weights someone else); caller 1, the blocker, has set no weights.
    table.set_weights(hotkey(2), [(me, 0.1), (elsewhere, 0.9)]);
    table.set_weights(hotkey(3), [(me, 0.6), (elsewhere, 0.4)]);
    table.set_weights(hotkey(4), [(elsewhere, 1.0)]);
    let config = AxonConfig { concurrency: 1, ..Default::default() };
    let axon = start(config, 100, model.clone(), &table).await;
    use wire::StakeLookup;
    assert_eq!([2, 3, 4].map(|c| table.priority(&hotkey(c), &me)), [40, 240, 0]);
    assert_eq!(table.priority(&hotkey(1), &me), 1000, "no weights: the stake alone");

    // Arrival order 4, 2, 3: the opposite of what they earned.
    let served = serve_in_turns(&axon, &model, &gate, 1, &[4, 2, 3]).await;
    assert_eq!(served, vec![hotkey(1), hotkey(3), hotkey(2), hotkey(4)]);
    axon.shutdown().await.unwrap();
}

/// A full queue admits a richer caller by evicting the poorest waiting one (BACKOFF), and
/// refuses a caller no richer than everyone waiting (BACKOFF).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_evicts_the_lowest_stake_or_refuses_the_newcomer() {
    let gate = Arc::new(Gate::default());
    let model = Arc::new(Recorder { gate: Some(gate.clone()), ..Default::default() });
    let table = stakes(&[(1, 1000), (2, 5), (3, 7), (4, 9), (5, 6)]);
    let config = AxonConfig { concurrency: 1, queue_capacity: 2, ..Default::default() };
    let axon = start(config, 100, model.clone(), &table).await;
    let t = target(&axon);
    let call = move |seed: u8| {
        tokio::spawn(async move { Dendrite::new(key(seed)).forward(&[t], &input(&[1.0]), 10 * SECOND).await })
    };
    let blocker = call(1);
    until("the blocker", || model.calls.load(Ordering::SeqCst) == 1).await;
    let low = call(2);
    until("queue 1", || axon.queued() == 1).await;
    let mid = call(3);
    until("queue 2", || axon.queued() == 2).await;
    // Stake 9 > 5: evicts caller 2. Then stake 6 < 7 and 9: refused at once.
    let high = call(4);
    let evicted = low.await.unwrap();
    assert_eq!(evicted[0].code, ReturnCode::Backoff, "{}", evicted[0].message);
    let refused = call(5).await.unwrap();
    assert_eq!(refused[0].code, ReturnCode::Backoff);
    assert!(refused[0].message.contains("queue full"), "{}", refused[0].message);
    gate.open();
    for c in [blocker, mid, high] {
        assert_eq!(c.await.unwrap()[0].code, ReturnCode::Success);
    }
    assert_eq!(*model.served.lock().unwrap(), vec![hotkey(1), hotkey(4), hotkey(3)]);
    axon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blacklisted_unregistered_and_low_stake_callers_are_refused_without_a_handler_call() {
    let model = Arc::new(Recorder::default());
    let table = stakes(&[(1, 100), (2, 100), (3, 2)]);
    let config = AxonConfig { min_stake: 10, blacklist: HashSet::from([hotkey(2)]), ..Default::default() };
    let axon = start(config, 100, model.clone(), &table).await;
    let t = [target(&axon)];
    let code = |seed: u8| async move {
        Dendrite::new(key(seed)).forward(&t, &input(&[1.0]), SECOND).await.remove(0)
    };
    assert_eq!(code(1).await.code, ReturnCode::Success);
    let two = code(2).await;
    assert_eq!(two.code, ReturnCode::Blacklisted, "{}", two.message);
    let low = code(3).await;
    assert_eq!(low.code, ReturnCode::Blacklisted, "{}", low.message);
    assert!(low.message.contains("below"), "{}", low.message);
    assert_eq!(code(4).await.code, ReturnCode::UnknownCaller);
    assert_eq!(model.calls.load(Ordering::SeqCst), 1);
    axon.shutdown().await.unwrap();

    // With allow_unregistered, an unknown hotkey is served at priority 0.
    let config = AxonConfig { allow_unregistered: true, ..Default::default() };
    let axon = start(config, 100, model.clone(), &table).await;
    let r = Dendrite::new(key(4)).forward(&[target(&axon)], &input(&[1.0]), SECOND).await;
    assert_eq!(r[0].code, ReturnCode::Success);
    axon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_waits_past_the_axons_deadline_answers_timeout() {
    let gate = Arc::new(Gate::default());
    let model = Arc::new(Recorder { gate: Some(gate.clone()), ..Default::default() });
    let table = stakes(&[(1, 10), (2, 10)]);
    let config = AxonConfig { concurrency: 1, deadline: Duration::from_millis(200), ..Default::default() };
    let axon = start(config, 100, model.clone(), &table).await;
    let t = target(&axon);
    let blocker =
        tokio::spawn(async move { Dendrite::new(key(1)).forward(&[t], &input(&[1.0]), 5 * SECOND).await });
    until("the blocker", || model.calls.load(Ordering::SeqCst) == 1).await;
    let waiting = Dendrite::new(key(2)).forward(&[t], &input(&[1.0]), 5 * SECOND).await;
    assert_eq!(waiting[0].code, ReturnCode::Timeout, "{}", waiting[0].message);
    assert!(waiting[0].latency >= Duration::from_millis(190) && waiting[0].latency < 2 * SECOND);
    // The blocker's handler outlives its 200 ms too: TIMEOUT, not a late SUCCESS.
    assert_eq!(blocker.await.unwrap()[0].code, ReturnCode::Timeout);
    gate.open();
    // The expired queued request never reached the handler.
    until("the worker to finish", || axon.queued() == 0).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(model.calls.load(Ordering::SeqCst), 1);
    let after = Dendrite::new(key(2)).forward(&[t], &input(&[1.0]), 5 * SECOND).await;
    assert_eq!(after[0].code, ReturnCode::Success);
    axon.shutdown().await.unwrap();
}

/// A foreign axon that lies: answers with whatever the test chose, bypassing our checks, as a
/// buggy or hostile peer in another language could. It opens sessions and MACs its lies
/// properly (protocol 5): what the dendrite must catch here is the content, not the MAC.
struct Liar(SigningKey, ForwardResponse, Mutex<Vec<Session>>);

#[tonic::async_trait]
impl proto::axon_server::Axon for Liar {
    async fn forward(
        &self,
        request: tonic::Request<ForwardRequest>,
    ) -> Result<tonic::Response<ForwardResponse>, tonic::Status> {
        let creds = wire::Credentials::from_headers(&request.metadata().clone().into_headers())
            .map_err(|e| tonic::Status::unauthenticated(e.to_string()))?;
        let session = self.2.lock().unwrap().iter().find(|s| s.id == creds.session).cloned();
        let session = session.ok_or_else(|| tonic::Status::unauthenticated("unknown session"))?;
        let body = BodyDigest::of_message(&self.1);
        let seal = wire::ResponseSeal::seal(
            &session,
            Call::Forward,
            &creds.request_hash(Call::Forward),
            body,
            Default::default(),
        );
        let mut headers = tonic::codegen::http::HeaderMap::new();
        seal.write_headers(&mut headers);
        let mut response = tonic::Response::new(self.1.clone());
        *response.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
        Ok(response)
    }
    async fn backward(
        &self,
        _: tonic::Request<BackwardRequest>,
    ) -> Result<tonic::Response<BackwardResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no"))
    }
    async fn handshake(
        &self,
        request: tonic::Request<proto::HandshakeRequest>,
    ) -> Result<tonic::Response<proto::HandshakeResponse>, tonic::Status> {
        let offer = Offer::from_proto(request.get_ref())
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let (answer, session) =
            offer.accept(&self.0).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        self.2.lock().unwrap().push(session);
        Ok(tonic::Response::new(answer))
    }
}

async fn start_liar(seed: u8, answer: ForwardResponse) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(proto::axon_server::AxonServer::new(Liar(key(seed), answer, Mutex::default())))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    addr
}

/// One fan-out over a good, a slow, a dead, a NaN-sending, a mis-shaping and a lying axon:
/// each gets its own code; the good one answers correctly and fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fan_out_isolates_slow_dead_and_broken_peers() {
    let table = stakes(&[(1, 10)]);
    let good = start(AxonConfig::default(), 101, Arc::new(Recorder::default()), &table).await;
    let slow_model = Recorder { delay: 3 * SECOND, ..Default::default() };
    let slow = start(AxonConfig::default(), 102, Arc::new(slow_model), &table).await;
    let nan = start(AxonConfig::default(), 103, Arc::new(Broken::Nan), &table).await;
    let shape = start(AxonConfig::default(), 104, Arc::new(Broken::WrongShape), &table).await;
    let dead_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let nan_bytes = wire::tensor::f32s_to_le_bytes(&[f32::NAN]);
    let liar_nan = start_liar(
        106,
        ForwardResponse {
            outputs: Some(encode(DType::F32, &[1, 1, 1], Modality::Tensor, nan_bytes)),
            code: ReturnCode::Success as i32,
            message: String::new(),
        },
    )
    .await;
    let liar_shape = start_liar(
        107,
        ForwardResponse {
            outputs: Some(encode(DType::F32, &[1, 1, 4], Modality::Tensor, vec![0; 12])),
            code: ReturnCode::Success as i32,
            message: String::new(),
        },
    )
    .await;
    let liar_code =
        start_liar(108, ForwardResponse { outputs: None, code: 999, message: String::new() }).await;

    let d = Dendrite::new(key(1));
    let targets = [
        target(&good),
        target(&slow),
        Target { hotkey: hotkey(105), addr: dead_addr },
        target(&nan),
        target(&shape),
        Target { hotkey: hotkey(106), addr: liar_nan },
        Target { hotkey: hotkey(107), addr: liar_shape },
        Target { hotkey: hotkey(108), addr: liar_code },
    ];
    let deadline = Duration::from_millis(500);
    let started = Instant::now();
    let r = d.forward(&targets, &input(&[1.0, 2.0]), deadline).await;
    let whole = started.elapsed();
    let codes: Vec<_> = r.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        vec![
            ReturnCode::Success,
            ReturnCode::Timeout,
            ReturnCode::Unavailable,
            ReturnCode::NonFinite,
            ReturnCode::ResponseShapeError,
            ReturnCode::NonFinite,
            ReturnCode::ResponseShapeError,
            ReturnCode::ResponseShapeError,
        ],
        "{r:#?}"
    );
    assert_eq!(floats(r[0].tensor.as_ref().unwrap()), vec![3.0, 5.0]);
    assert!(r[0].latency < Duration::from_millis(400), "good peer took {:?}", r[0].latency);
    assert!(whole < deadline + Duration::from_millis(400), "fan-out took {whole:?}");
    assert!(r.iter().skip(1).all(|r| r.tensor.is_none() && !r.message.is_empty()));
    for a in [good, slow, nan, shape] {
        a.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_an_internal_error_and_the_axon_keeps_serving() {
    let table = stakes(&[(1, 10)]);
    let axon = start(AxonConfig::default(), 100, Arc::new(Broken::Panics), &table).await;
    let d = Dendrite::new(key(1));
    for _ in 0..3 {
        let r = d.forward(&[target(&axon)], &input(&[1.0]), SECOND).await;
        assert_eq!(r[0].code, ReturnCode::InternalError, "{}", r[0].message);
    }
    axon.shutdown().await.unwrap();

    let axon = start(AxonConfig::default(), 100, Arc::new(Broken::BareAck), &table).await;
    let x = input(&[1.0]);
    let r = d.backward(&[target(&axon)], &x, std::slice::from_ref(&x), SECOND).await;
    assert_eq!((r[0].code, r[0].tensor.is_none()), (ReturnCode::Success, true));
    // Fewer gradients than targets: the extra target gets EMPTY_REQUEST, not a panic.
    let r = d.backward(&[target(&axon), target(&axon)], &x, std::slice::from_ref(&x), SECOND).await;
    assert_eq!((r[0].code, r[1].code), (ReturnCode::Success, ReturnCode::EmptyRequest));
    axon.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dendrite_reuses_one_connection_per_axon() {
    let table = stakes(&[(1, 10)]);
    let axon = start(AxonConfig::default(), 100, Arc::new(Recorder::default()), &table).await;
    let d = Dendrite::new(key(1));
    for _ in 0..10 {
        assert!(d.forward(&[target(&axon)], &input(&[1.0]), SECOND).await[0].is_success());
    }
    let parallel: Vec<_> = (0..16)
        .map(|_| {
            let d = d.clone();
            let t = target(&axon);
            tokio::spawn(async move { d.forward(&[t], &input(&[1.0]), 5 * SECOND).await })
        })
        .collect();
    for p in parallel {
        assert!(p.await.unwrap()[0].is_success());
    }
    assert_eq!(axon.metrics().connections(), 1);
    assert_eq!(d.metrics().connections(), 1);
    let t = target(&axon);
    axon.shutdown().await.unwrap();
    // After shutdown the same dendrite hears UNAVAILABLE, quickly.
    let r = d.forward(&[t], &input(&[1.0]), SECOND).await;
    assert_eq!(r[0].code, ReturnCode::Unavailable, "{}", r[0].message);
}

/// Opens a session with the axon as `caller`, as a dendrite does, for hand-built clients.
async fn open_session(client: &mut Client, caller: &SigningKey, axon: &[u8; 32]) -> Session {
    let initiator = Initiator::new(caller, axon, now_ms());
    let mut request = tonic::Request::new(initiator.request().clone());
    request.metadata_mut().insert(wire::auth::keys::VERSION, "5".parse().unwrap());
    let answer = client.handshake(request).await.unwrap().into_inner();
    let key = ed25519_dalek::VerifyingKey::from_bytes(axon).unwrap();
    initiator.finish(&key, &answer).unwrap()
}

/// Protocol 5: a connection opens one session, and a session the axon no longer holds (here
/// expired; or evicted, or the axon restarted) costs the next call one more handshake on the
/// same connection, never a failure. A session of a caller whose stake since left the
/// metagraph serves it no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_reopened_on_the_same_connection() {
    let table = stakes(&[(1, 10)]);
    let config = AxonConfig { session_lifetime: Duration::from_millis(300), ..Default::default() };
    let model = Arc::new(Recorder::default());
    let axon = start(config, 100, model.clone(), &table).await;
    let d = Dendrite::new(key(1));
    let t = target(&axon);
    for _ in 0..3 {
        let r = d.forward(&[t], &input(&[1.0]), SECOND).await;
        assert_eq!(r[0].code, ReturnCode::Success, "{}", r[0].message);
    }
    tokio::time::sleep(Duration::from_millis(350)).await;
    let r = d.forward(&[t], &input(&[1.0]), SECOND).await;
    assert_eq!(r[0].code, ReturnCode::Success, "{}", r[0].message);
    assert_eq!(model.calls.load(Ordering::SeqCst), 4, "the refused attempt never reached the handler");
    assert_eq!((axon.metrics().connections(), d.metrics().connections()), (1, 1));
    // The one UNAUTHENTICATED attempt, counted as unverified.
    assert_eq!(axon.metrics().requests("unverified", Call::Forward, ReturnCode::InvalidSignature), 1);
    table.replace_all([]);
    let r = d.forward(&[t], &input(&[1.0]), SECOND).await;
    assert_eq!(r[0].code, ReturnCode::UnknownCaller, "{}", r[0].message);
    axon.shutdown().await.unwrap();
}

/// A Forward MACed the way a dendrite MACs it, for hand-built clients.
fn sign_as(session: &Session, req: ForwardRequest, nonce: u64, ts: u64) -> tonic::Request<ForwardRequest> {
    let creds = session.credentials(Call::Forward, nonce, ts, BodyDigest::of_message(&req));
    let mut request = tonic::Request::new(req);
    creds.write_headers(request.metadata_mut().as_mut());
    request
}

fn signed(session: &Session, inputs: Option<proto::Tensor>, nonce: u64) -> tonic::Request<ForwardRequest> {
    sign_as(session, ForwardRequest { inputs, ..Default::default() }, nonce, now_ms())
}

/// Bad input from a hand-built client: every case gets its code, no handler call is spent on
/// any of them, and the axon serves a good request afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_codes_and_never_reach_the_handler() {
    let model = Arc::new(Recorder::default());
    let table = stakes(&[(1, 10)]);
    let limits = Limits { max_bytes: 1 << 16, max_batch: 4 };
    let axon = start(AxonConfig { limits, ..Default::default() }, 100, model.clone(), &table).await;
    let mut client = AxonClient::connect(format!("http://{}", axon.local_addr())).await.unwrap();
    let session = open_session(&mut client, &key(1), &axon.hotkey()).await;
    let f32s = |v: &[f32]| wire::tensor::f32s_to_le_bytes(v);
    let cases: Vec<(&str, Option<proto::Tensor>, ReturnCode)> = vec![
        ("missing tensor", None, ReturnCode::EmptyRequest),
        (
            "shape vs bytes",
            Some(encode(DType::F32, &[1, 1, 3], Modality::Tensor, f32s(&[1.0, 2.0]))),
            ReturnCode::RequestShapeError,
        ),
        (
            "dtype for modality",
            Some(encode(DType::I64, &[1, 1, 1], Modality::Tensor, vec![0; 8])),
            ReturnCode::RequestDtypeError,
        ),
        (
            "unknown dtype",
            Some(proto::Tensor { data: vec![0; 4].into(), dtype: 77, shape: vec![1, 1, 1], modality: 3 }),
            ReturnCode::RequestDtypeError,
        ),
        (
            "NaN",
            Some(encode(DType::F32, &[1, 1, 2], Modality::Tensor, f32s(&[1.0, f32::NAN]))),
            ReturnCode::NonFinite,
        ),
        (
            "Inf",
            Some(encode(DType::F32, &[1, 1, 1], Modality::Tensor, f32s(&[f32::INFINITY]))),
            ReturnCode::NonFinite,
        ),
        (
            "huge declared size",
            Some(encode(DType::F32, &[u64::MAX, u64::MAX, 2], Modality::Tensor, f32s(&[1.0]))),
            ReturnCode::RequestShapeError,
        ),
        (
            "batch over limit",
            Some(encode(DType::F32, &[5, 1, 1], Modality::Tensor, f32s(&[1.0; 5]))),
            ReturnCode::RequestShapeError,
        ),
        (
            "bytes over limit",
            Some(encode(DType::U8, &[1, 1 << 17], Modality::Text, vec![1; 1 << 17])),
            ReturnCode::RequestShapeError,
        ),
        (
            "wrong rank",
            Some(encode(DType::F32, &[1, 1], Modality::Tensor, f32s(&[1.0]))),
            ReturnCode::RequestShapeError,
        ),
    ];
    for (i, (what, tensor, want)) in cases.into_iter().enumerate() {
        let tensor: Option<proto::Tensor> = tensor;
        let r = client.forward(signed(&session, tensor, i as u64)).await.unwrap().into_inner();
        assert_eq!(r.code, want as i32, "{what}: {}", r.message);
        assert!(!r.message.is_empty() && r.outputs.is_none(), "{what}");
    }
    let good = || Some(input(&[1.0]).into_proto());
    let header = |r: &mut tonic::Request<ForwardRequest>, k: &'static str, v: String| {
        r.metadata_mut().insert(k, v.parse().unwrap());
    };
    // Tampered after its MAC (metadata, then body), replayed, MACed in another session, stale.
    let mut tampered = signed(&session, good(), 100);
    header(&mut tampered, wire::auth::keys::NONCE, "99999".into());
    let mut tampered_body = signed(&session, good(), 108);
    tampered_body.get_mut().inputs = Some(input(&[2.0]).into_proto());
    let ts = now_ms();
    let replay = || sign_as(&session, ForwardRequest { inputs: good(), ..Default::default() }, 101, ts);
    // A MAC of another session of the same caller, sent under this session's id.
    let other = open_session(&mut client, &key(1), &axon.hotkey()).await;
    let mut crossed = signed(&other, good(), 102);
    header(&mut crossed, wire::auth::keys::SESSION, hex::encode(session.id));
    let stale =
        sign_as(&session, ForwardRequest { inputs: good(), ..Default::default() }, 103, now_ms() - 120_000);
    let first = client.forward(replay()).await.unwrap().into_inner();
    assert_eq!(first.code, ReturnCode::Success as i32, "{}", first.message);
    for (what, req) in [
        ("tampered", tampered),
        ("tampered body", tampered_body),
        ("replay", replay()),
        ("another session's MAC", crossed),
        ("stale", stale),
    ] {
        let r = client.forward(req).await.unwrap().into_inner();
        assert_eq!(r.code, ReturnCode::InvalidSignature as i32, "{what}: {}", r.message);
    }
    // A session the axon never opened: UNAUTHENTICATED, so a dendrite opens a new one.
    let mut unknown = signed(&session, good(), 104);
    header(&mut unknown, wire::auth::keys::SESSION, "00".repeat(16));
    let status = client.forward(unknown).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    // A handshake addressed to another axon opens nothing.
    let initiator = Initiator::new(&key(1), &hotkey(9), now_ms());
    let mut request = tonic::Request::new(initiator.request().clone());
    request.metadata_mut().insert(wire::auth::keys::VERSION, "5".parse().unwrap());
    let refused = client.handshake(request).await.unwrap().into_inner();
    assert_eq!(refused.code, ReturnCode::InvalidSignature as i32, "{}", refused.message);
    assert!(refused.session.is_empty());
    // A declared body over the limit (2 * max_bytes + envelope) is refused before it is read.
    let huge =
        signed(&session, Some(encode(DType::U8, &[1, 200_000], Modality::Text, vec![0; 200_000])), 105);
    let r = client.forward(huge).await.unwrap().into_inner();
    assert_eq!(r.code, ReturnCode::RequestShapeError as i32, "{}", r.message);
    assert!(r.message.contains("declares"), "{}", r.message);
    // A body longer than its signed length is cut off with a gRPC status.
    let mut lying = signed(&session, good(), 109);
    header(&mut lying, wire::auth::keys::BODY_LEN, "3".into());
    let r = client.forward(lying).await;
    assert!(r.is_err() || r.unwrap().into_inner().code != ReturnCode::Success as i32);
    // Garbage and truncated protobuf frames without any metadata: refused unread.
    let valid = ForwardRequest { inputs: good(), ..Default::default() }.encode_to_vec();
    for frame in [vec![0xff; 40], valid[..valid.len() / 2].to_vec(), vec![]] {
        let r = raw_forward(axon.local_addr(), frame).await.unwrap();
        assert_eq!(r.code, ReturnCode::UnsupportedVersion as i32, "{}", r.message);
    }
    assert_eq!(model.calls.load(Ordering::SeqCst), 1, "only the one valid request reached the model");
    let ok = client.forward(signed(&session, good(), 107)).await.unwrap().into_inner();
    assert_eq!(ok.code, ReturnCode::Success as i32);
    let unverified = axon.metrics().requests("unverified", Call::Forward, ReturnCode::InvalidSignature);
    // tampered, another session's MAC, stale, the unknown session, the handshake elsewhere;
    // the replay and the tampered body came from a proven key and are counted under it.
    assert!(unverified >= 5, "{unverified}");
    axon.shutdown().await.unwrap();
}

/// Sends raw bytes as a Forward request's gRPC message.
async fn raw_forward(addr: std::net::SocketAddr, frame: Vec<u8>) -> Result<ForwardResponse, tonic::Status> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/agora.v1.Axon/Forward");
    grpc.unary(tonic::Request::new(frame), path, RawCodec).await.map(|r| r.into_inner())
}

struct RawCodec;
struct RawEncoder;
struct ProstDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ForwardResponse;
    type Encoder = RawEncoder;
    type Decoder = ProstDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ProstDecoder {
        ProstDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for ProstDecoder {
    type Item = ForwardResponse;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<ForwardResponse>, tonic::Status> {
        ForwardResponse::decode(src).map(Some).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// Issue 13: an unknown caller's 100 MB upload is refused from its metadata before the axon
/// reads it. The axon takes in no more than the HTTP/2 stream window (8 MiB) of the 100 MB
/// (before the fix it read and decoded all of it) and its handlers read none; a staked caller
/// is served right after on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_callers_100_mb_upload_is_refused_before_it_is_read() {
    let table = stakes(&[(1, 1000), (66, 1)]);
    let model = Arc::new(Recorder::default());
    let axon = start(AxonConfig::default(), 100, model.clone(), &table).await;
    let mut client = AxonClient::connect(format!("http://{}", axon.local_addr()))
        .await
        .unwrap()
        .max_encoding_message_size(usize::MAX);
    let n = 100_000_000;
    let req = ForwardRequest {
        inputs: Some(encode(DType::U8, &[1, n as u64], Modality::Text, vec![7; n])),
        ..Default::default()
    };
    // A caller with a session whose stake then left the metagraph: its MAC is checked from the
    // metadata, its standing again, and the 100 MB are never hashed.
    let session = open_session(&mut client, &key(66), &axon.hotkey()).await;
    table.replace_all([(hotkey(1), 1000)]);
    let fake = BodyDigest { len: req.encoded_len() as u64, ..BodyDigest::of_bytes(&[]) };
    let creds = session.credentials(Call::Forward, 1, now_ms(), fake);
    let mut request = tonic::Request::new(req);
    creds.write_headers(request.metadata_mut().as_mut());
    let started = Instant::now();
    let r = client.forward(request).await.unwrap().into_inner();
    assert_eq!(r.code, ReturnCode::UnknownCaller as i32, "{}", r.message);
    let took = started.elapsed();
    let received = axon.metrics().received_bytes();
    assert!(received < 24 << 20, "the axon read {received} bytes of a refused 100 MB upload");
    assert_eq!(axon.metrics().body_bytes(), 0);
    let mine = open_session(&mut client, &key(1), &axon.hotkey()).await;
    let ok = client.forward(signed(&mine, Some(input(&[1.0]).into_proto()), 2)).await.unwrap().into_inner();
    assert_eq!(ok.code, ReturnCode::Success as i32, "{}", ok.message);
    assert_eq!(model.calls.load(Ordering::SeqCst), 1);
    eprintln!("refused in {took:?}, {received} bytes read from the socket");
    axon.shutdown().await.unwrap();
}

/// Issue 13: each caller's bytes in flight are bounded before its body is read. With two
/// large calls of one caller held by the handler, its third is told to back off (the budget is
/// one largest message: two maximal Forwards), while another caller is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_in_flight_are_bounded_per_caller() {
    let gate = Arc::new(Gate::default());
    let model = Arc::new(Recorder { gate: Some(gate.clone()), ..Default::default() });
    let table = stakes(&[(1, 10), (2, 10)]);
    let limits = Limits { max_bytes: 1 << 20, max_batch: 4 };
    let per_caller = wire::axon::max_message_bytes(&limits) as u64;
    let config = AxonConfig {
        limits,
        concurrency: 3,
        max_inflight_bytes_per_caller: per_caller,
        max_inflight_bytes: 4 * per_caller,
        ..Default::default()
    };
    let axon = start(config, 100, model.clone(), &table).await;
    let t = target(&axon);
    let n = (1 << 20) / 4;
    let call = move |seed: u8| {
        tokio::spawn(async move {
            let big = OwnedTensor::from_f32(Modality::Tensor, &[1, 1, n], &vec![0.5; n as usize]);
            Dendrite::new(key(seed)).forward(&[t], &big, 10 * SECOND).await.remove(0)
        })
    };
    let held = [call(1), call(1)];
    let both_held =
        tokio::time::timeout(10 * SECOND, until("two calls", || model.calls.load(Ordering::SeqCst) == 2));
    let both_held = both_held.await.is_ok();
    let third = call(1).await.unwrap();
    let other = call(2);
    let other_admitted = tokio::time::timeout(
        10 * SECOND,
        until("the other caller", || model.calls.load(Ordering::SeqCst) == 3),
    );
    let other_admitted = other_admitted.await.is_ok();
    // Open before asserting: a failed assertion must not leave handlers blocked forever.
    gate.open();
    assert!(both_held && other_admitted, "both held {both_held}, other admitted {other_admitted}");
    assert_eq!(third.code, ReturnCode::Backoff, "{}", third.message);
    assert!(third.message.contains("per caller"), "{}", third.message);
    for c in held.into_iter().chain([other]) {
        let r = c.await.unwrap();
        assert_eq!(r.code, ReturnCode::Success, "{}", r.message);
    }
    // Released: the same caller is served again.
    assert_eq!(call(1).await.unwrap().code, ReturnCode::Success);
    axon.shutdown().await.unwrap();
}

/// Issue 13, the exact attack over the wire: a registered hotkey with zero stake floods the
/// axon's replay cache with future-dated empty requests (as far ahead as it accepts) while a
/// caller with 1,000 stake keeps calling. Before per-caller floors the staked caller got
/// BACKOFF on every request once the cache was full; now it is never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_dated_flood_from_a_zero_stake_key_does_not_lock_out_a_staked_caller() {
    let table = stakes(&[(1, 1000), (2, 0)]);
    let config = AxonConfig { replay_cache: 100, ..Default::default() };
    let ahead = config.freshness.max_future_ms;
    let axon = start(config, 100, Arc::new(Recorder::default()), &table).await;
    let addr = format!("http://{}", axon.local_addr());
    let flooder = {
        let mut client = AxonClient::connect(addr.clone()).await.unwrap();
        let session = open_session(&mut client, &key(2), &axon.hotkey()).await;
        tokio::spawn(async move {
            let mut codes = std::collections::HashMap::<i32, usize>::new();
            for nonce in 0..300 {
                let req = sign_as(&session, ForwardRequest::default(), nonce, now_ms() + ahead);
                let r = client.forward(req).await.unwrap().into_inner();
                *codes.entry(r.code).or_default() += 1;
            }
            codes
        })
    };
    let honest = Dendrite::new(key(1));
    let t = target(&axon);
    let mut results = Vec::new();
    while !flooder.is_finished() {
        results.push(honest.forward(&[t], &input(&[1.0]), SECOND).await.remove(0));
    }
    let codes = flooder.await.unwrap();
    // The flood went through authentication into the cache (EMPTY_REQUEST), past its size.
    assert!(codes.get(&(ReturnCode::EmptyRequest as i32)).copied().unwrap_or(0) > 200, "{codes:?}");
    assert!(axon.metrics().requests(&hex::encode(hotkey(1)), Call::Forward, ReturnCode::Success) >= 5);
    assert!(results.len() >= 5, "only {} honest calls during the flood", results.len());
    let refused: Vec<_> = results.iter().filter(|r| !r.is_success()).collect();
    assert!(
        refused.is_empty(),
        "{} of {} staked calls refused: {:?}",
        refused.len(),
        results.len(),
        refused[0]
    );
    axon.shutdown().await.unwrap();
}

/// Issue 12: a trusted hotkey the stake lookup does not know is served, at the lowest
/// priority, and still signature- and replay-checked; the blacklist still wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_callers_are_served_last_and_still_checked() {
    let gate = Arc::new(Gate::default());
    let model = Arc::new(Recorder { gate: Some(gate.clone()), ..Default::default() });
    let table = stakes(&[(1, 1000), (2, 1)]);
    let judge = 9u8;
    let config = AxonConfig {
        concurrency: 1,
        trusted: HashSet::from([hotkey(judge), hotkey(8)]),
        blacklist: HashSet::from([hotkey(8)]),
        ..Default::default()
    };
    let axon = start(config, 100, model.clone(), &table).await;
    let t = target(&axon);
    let call = move |seed: u8| {
        tokio::spawn(async move { Dendrite::new(key(seed)).forward(&[t], &input(&[1.0]), 10 * SECOND).await })
    };
    let blocker = call(1);
    until("the blocker", || model.calls.load(Ordering::SeqCst) == 1).await;
    let trusted = call(judge);
    until("the judge to queue", || axon.queued() == 1).await;
    let low = call(2);
    until("the low-stake caller to queue", || axon.queued() == 2).await;
    gate.open();
    for c in [blocker, trusted, low] {
        let r = c.await.unwrap().remove(0);
        assert_eq!(r.code, ReturnCode::Success, "{}", r.message);
    }
    // Stake 1 before the judge, who queued first: trusted callers never crowd out staked ones.
    assert_eq!(*model.served.lock().unwrap(), vec![hotkey(1), hotkey(2), hotkey(judge)]);
    let mut client = AxonClient::connect(format!("http://{}", axon.local_addr())).await.unwrap();
    let session = open_session(&mut client, &key(judge), &axon.hotkey()).await;
    let ts = now_ms();
    let req = || {
        sign_as(
            &session,
            ForwardRequest { inputs: Some(input(&[1.0]).into_proto()), ..Default::default() },
            7,
            ts,
        )
    };
    assert_eq!(client.forward(req()).await.unwrap().into_inner().code, ReturnCode::Success as i32);
    let replay = client.forward(req()).await.unwrap().into_inner();
    assert_eq!(replay.code, ReturnCode::InvalidSignature as i32, "{}", replay.message);
    let mut forged = signed(&session, Some(input(&[1.0]).into_proto()), 8);
    forged.metadata_mut().insert(wire::auth::keys::MAC, "00".repeat(32).parse().unwrap());
    assert_eq!(client.forward(forged).await.unwrap().into_inner().code, ReturnCode::InvalidSignature as i32);
    let banned = Dendrite::new(key(8)).forward(&[t], &input(&[1.0]), SECOND).await;
    assert_eq!(banned[0].code, ReturnCode::Blacklisted);
    axon.shutdown().await.unwrap();

    // Negative control: without the trust entry the same judge is an unknown caller.
    let axon = start(AxonConfig::default(), 100, model.clone(), &table).await;
    let r = Dendrite::new(key(judge)).forward(&[target(&axon)], &input(&[1.0]), SECOND).await;
    assert_eq!(r[0].code, ReturnCode::UnknownCaller);
    axon.shutdown().await.unwrap();
}

/// A protocol-1 request (authentication inside the message, no metadata) is refused with
/// UNSUPPORTED_VERSION and a message that says what changed, without reaching the handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(deprecated)]
async fn an_old_format_request_gets_unsupported_version() {
    let model = Arc::new(Recorder::default());
    let axon = start(AxonConfig::default(), 100, model.clone(), &stakes(&[(1, 10)])).await;
    let mut client = AxonClient::connect(format!("http://{}", axon.local_addr())).await.unwrap();
    let v1 = ForwardRequest {
        inputs: Some(input(&[1.0]).into_proto()),
        caller: hotkey(1).to_vec(),
        callee: axon.hotkey().to_vec(),
        nonce: 1,
        timestamp_ms: now_ms(),
        signature: vec![0; 64],
    };
    let r = client.forward(v1).await.unwrap().into_inner();
    assert_eq!(r.code, ReturnCode::UnsupportedVersion as i32, "{}", r.message);
    assert!(r.message.contains("protocol 5") && r.message.contains("metadata"), "{}", r.message);
    // Protocol 2 (a sha256 digest), 3 (unsigned answers), 4 (a signature per call) and a
    // version from the future are refused with their reason.
    let session = open_session(&mut client, &key(1), &axon.hotkey()).await;
    for (version, says) in [
        ("2", "sha256"),
        ("3", "unsigned answers"),
        ("4", "ed25519 signature on every call"),
        ("6", "protocol 5"),
    ] {
        let mut other = signed(&session, Some(input(&[1.0]).into_proto()), 2);
        other.metadata_mut().insert(wire::auth::keys::VERSION, version.parse().unwrap());
        let r = client.forward(other).await.unwrap().into_inner();
        assert_eq!(r.code, ReturnCode::UnsupportedVersion as i32, "{}", r.message);
        assert!(r.message.contains(says), "{}", r.message);
    }
    assert_eq!(model.calls.load(Ordering::SeqCst), 0);
    axon.shutdown().await.unwrap();
}

/// The intermodel paper's competitive masking (001 §2.5) through the real axon and dendrite.
/// The metagraph of `competition_is_weight_times_stake_against_the_mean_over_all_neurons`:
/// stakes 1: 100, 2: 300, 3: 0, the axon 100: 600; 1 gives the axon 0.5 of its weight, 2 gives
/// it 0.25, 3 all of it: μ = 0.5, x = 0.8, 1.2 and 0, so with T = 0.5 the masks are σ(0.6),
/// σ(1.4) and σ(−1). Every answer verifies: the signature covers the masked bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competitive_masking_scales_answers_by_weight_times_stake_against_the_mean() {
    let me = hotkey(100);
    let elsewhere = hotkey(7);
    let table = stakes(&[(1, 100), (2, 300), (3, 0), (100, 600)]);
    table.set_weights(hotkey(1), [(me, 0.5), (elsewhere, 0.5)]);
    table.set_weights(hotkey(2), [(me, 0.25), (elsewhere, 0.75)]);
    table.set_weights(hotkey(3), [(me, 1.0)]);
    let judge = hotkey(9);
    let config = AxonConfig {
        competitive_masking: Some(wire::MaskingConfig::new(0.5).unwrap()),
        trusted: HashSet::from([judge]),
        ..Default::default()
    };
    let masked = start(config, 100, Arc::new(Recorder::default()), &table).await;
    let plain = start(AxonConfig::default(), 100, Arc::new(Recorder::default()), &table).await;
    let x = input(&[1.0, 2.0]);
    let sigma = |z: f64| (1.0 / (1.0 + (-z).exp())) as f32;
    let mut heard = Vec::new();
    for (caller, mask) in [(1, sigma(0.6)), (2, sigma(1.4)), (3, sigma(-1.0)), (9, 1.0)] {
        let d = Dendrite::new(key(caller));
        let r = d.forward(&[target(&masked)], &x, SECOND).await;
        assert_eq!(r[0].code, ReturnCode::Success, "caller {caller}: {}", r[0].message);
        let y = floats(r[0].tensor.as_ref().unwrap());
        assert_eq!(
            y,
            vec![3.0 * mask, 5.0 * mask],
            "caller {caller}: the affine answer [3, 5] times its mask"
        );
        heard.push(y[0]);
        // Backward: the gradient [1, 1] reaches the handler times the mask (chain rule), which
        // returns 2g.
        let g = input(&[1.0, 1.0]);
        let r = d.backward(&[target(&masked)], &x, std::slice::from_ref(&g), SECOND).await;
        assert_eq!(r[0].code, ReturnCode::Success, "caller {caller}: {}", r[0].message);
        assert_eq!(floats(r[0].tensor.as_ref().unwrap()), vec![2.0 * mask, 2.0 * mask]);

        // Off (the default): the handler's bytes, exactly.
        if caller != 9 {
            let r = d.forward(&[target(&plain)], &x, SECOND).await;
            assert_eq!(r[0].code, ReturnCode::Success, "{}", r[0].message);
            let bytes = &r[0].tensor.as_ref().unwrap().data;
            assert_eq!(&bytes[..], &wire::tensor::f32s_to_le_bytes(&[3.0, 5.0])[..], "caller {caller}");
        }
    }
    // Above the mean (2) hears more than at 0.8 (1), which hears more than nothing (3); the
    // trusted judge hears the model itself.
    assert!(heard[1] > heard[0] && heard[0] > 1.5 && heard[2] < 1.5, "{heard:?}");
    assert_eq!(heard[3], 3.0);
    masked.shutdown().await.unwrap();
    plain.shutdown().await.unwrap();
}

/// Messages of 256 KiB and more are digested on two cores (`wire::digest`): a 1 MiB call and
/// its 1 MiB answer pass every MAC and come back bit for bit, several at once (one digest
/// splits at a time, the others run on one core); a NaN in the very last element of a large
/// input, or everywhere in a large output, is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_are_digested_and_scanned_on_two_cores() {
    let table = stakes(&[(1, 10)]);
    let limits = Limits { max_bytes: 1 << 20, max_batch: 4 };
    let config = AxonConfig { limits, ..Default::default() };
    let echo = start(config.clone(), 100, Arc::new(wire::test_utils::Echo), &table).await;
    let nan = start(config, 101, Arc::new(Broken::Nan), &table).await;
    let n = (1 << 20) / 4;
    let values: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 7.0).collect();
    let big = input(&values);
    let dendrite = Dendrite::new(key(1));
    let calls = (0..4).map(|_| {
        let (d, x, t) = (dendrite.clone(), big.clone(), target(&echo));
        tokio::spawn(async move { d.forward(&[t], &x, 10 * SECOND).await.remove(0) })
    });
    for call in calls.collect::<Vec<_>>() {
        let r = call.await.unwrap();
        assert_eq!(r.code, ReturnCode::Success, "{}", r.message);
        assert_eq!(floats(r.tensor.as_ref().unwrap()), values);
    }
    let mut last_nan = values.clone();
    last_nan[n - 1] = f32::NAN;
    let r = dendrite.forward(&[target(&echo)], &input(&last_nan), 10 * SECOND).await.remove(0);
    assert_eq!(r.code, ReturnCode::NonFinite, "{}", r.message);
    let r = dendrite.forward(&[target(&nan)], &big, 10 * SECOND).await.remove(0);
    assert_eq!(r.code, ReturnCode::NonFinite, "{}", r.message);
    echo.shutdown().await.unwrap();
    nan.shutdown().await.unwrap();
}
