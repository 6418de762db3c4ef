"""The Python axon and dendrite against each other, and against what cannot answer: every
failure is a return code, never an exception out of a call. (Against the Rust axon and
dendrite: crates/wire/python/interop.sh.)"""

from __future__ import annotations

import socket
import threading
import time
from concurrent import futures
from typing import Any, Callable, Iterator

import grpc
import numpy as np
import pytest

from agora import wire
from agora.keys import Keypair
from agora.standard import standard_basis

AXON_KEY = Keypair(bytes([0x55] * 32))
CALLER = Keypair(bytes([0x33] * 32))


def affine(x: np.ndarray, caller: wire.Caller) -> np.ndarray:
    return 2 * x.astype(np.float32) + 1


@pytest.fixture
def axon() -> Iterator[wire.Axon]:
    a = wire.serve(AXON_KEY, affine, lambda x, g, caller: 2 * g)
    yield a
    a.stop(0)


def endpoint(a: wire.Axon) -> str:
    return f"127.0.0.1:{a.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_forward_and_backward_carry_the_numbers(axon: wire.Axon) -> None:
    d = wire.Dendrite(CALLER)
    x = (np.arange(24, dtype=np.float32) * 0.5 - 4).reshape(2, 3, 4)
    r = d.forward(endpoint(axon), AXON_KEY.public, x)
    assert r.ok and np.array_equal(r.tensor, 2 * x + 1), r
    g = np.ones((2, 3, 4), dtype=np.float32)
    r = d.backward(endpoint(axon), AXON_KEY.public, x, g)
    assert r.ok and np.array_equal(r.tensor, 2 * g)
    text = np.frombuffer(b"hello world, hello market" * 2, dtype=np.uint8)[:48].reshape(2, 24)
    # The handler answers [2, 24] to TEXT: the axon checks its own model's output first.
    r = d.forward(endpoint(axon), AXON_KEY.public, text)
    assert r.code == wire.INTERNAL_ERROR and "expected [2, 24, dim]" in r.message, r
    assert axon.stats.count("Forward") >= 1 and CALLER.public in axon.stats.callers


def test_refusals_have_the_rust_codes(axon: wire.Axon) -> None:
    d = wire.Dendrite(CALLER)
    x = np.ones((1, 2, 3), dtype=np.float32)
    assert d.forward(endpoint(axon), AXON_KEY.public, np.array([[[1.0, np.nan]]], dtype=np.float32)).code == wire.NON_FINITE
    body = wire.pb.ForwardRequest(inputs=wire.to_wire(x)).SerializeToString()
    digest = wire.blake3(body).digest()
    session = d.session(endpoint(axon), AXON_KEY.public)

    def creds(**change: Any) -> list[tuple[str, str]]:
        """The metadata of a call in the session, with `change`d fields (nonce, timestamp_ms)."""
        args = dict(nonce=d.next_nonce(), timestamp_ms=int(time.time() * 1000)) | change
        return session.credentials(wire.PATH_FORWARD, args["nonce"], args["timestamp_ms"], len(body), digest)[0]

    def call(md: list[tuple[str, str]], payload: bytes = body, check: bool = True) -> Any:
        return d.call(endpoint(axon), AXON_KEY.public, wire.PATH_FORWARD, payload, metadata=md, check=check)

    # Calling an axon under another hotkey: its signed handshake is not that hotkey's.
    assert d.forward(endpoint(axon), bytes(32), x).code == wire.INVALID_RESPONSE_SIGNATURE
    short = wire.pb.ForwardRequest(inputs=wire.pb.Tensor(data=b"\0" * 8, dtype=wire.pb.DTYPE_F32, shape=[1, 1, 3],
                                                         modality=wire.pb.MODALITY_TENSOR))
    assert d.call(endpoint(axon), AXON_KEY.public, wire.PATH_FORWARD, short).code == wire.REQUEST_SHAPE_ERROR
    md = creds()
    assert call(md).code == wire.SUCCESS
    replay = call(md)
    assert replay.code == wire.INVALID_SIGNATURE and "replay" in replay.message
    bad_mac = [(k, v[:10] + format(int(v[10], 16) ^ 1, "x") + v[11:] if k == "agora-mac" else v) for k, v in creds()]
    assert call(bad_mac).code == wire.INVALID_SIGNATURE
    # A MAC of another session of the same caller, under this session's id.
    other = wire.Dendrite(CALLER).session(endpoint(axon), AXON_KEY.public)
    crossed = [(k, session.id.hex() if k == "agora-session" else v)
               for k, v in other.credentials(wire.PATH_FORWARD, d.next_nonce(), int(time.time() * 1000), len(body), digest)[0]]
    assert call(crossed).code == wire.INVALID_SIGNATURE
    # A session the axon never opened: UNAUTHENTICATED (a dendrite then opens a new one).
    unknown = [(k, "00" * 16 if k == "agora-session" else v) for k, v in creds()]
    with pytest.raises(grpc.RpcError) as e:
        call(unknown)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Old protocols: answered without a MAC (the axon cannot tie them to a session).
    assert call([], check=False).code == wire.UNSUPPORTED_VERSION
    with pytest.raises(wire.BadTensor) as bad:
        call([])
    assert bad.value.code == wire.INVALID_RESPONSE_SIGNATURE
    for version, says in (("2", "sha256"), ("3", "unsigned"), ("4", "signed every call")):
        r = call([(k, version if k == "agora-version" else v) for k, v in creds()], check=False)
        assert r.code == wire.UNSUPPORTED_VERSION and says in r.message, r
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    assert call(creds(), tampered).code == wire.INVALID_SIGNATURE
    assert call(creds(timestamp_ms=int(time.time() * 1000) - 60_000)).code == wire.INVALID_SIGNATURE


def test_a_session_the_axon_dropped_is_reopened(axon: wire.Axon) -> None:
    d = wire.Dendrite(CALLER)
    x = np.ones((1, 1, 2), dtype=np.float32)
    assert d.forward(endpoint(axon), AXON_KEY.public, x).ok
    first = d.session(endpoint(axon), AXON_KEY.public)
    axon.sessions = wire.SessionTable()  # as after a restart: the axon holds no session
    r = d.forward(endpoint(axon), AXON_KEY.public, x)
    assert r.ok, r
    assert d.session(endpoint(axon), AXON_KEY.public) != first
    # A handshake to an axon that is not there, or for another axon's hotkey, opens nothing.
    refused = wire.Dendrite(CALLER).forward(endpoint(axon), Keypair(bytes([0x44] * 32)).public, x)
    assert refused.code == wire.INVALID_RESPONSE_SIGNATURE and refused.model is None, refused


def test_the_session_table_is_bounded_per_caller_and_in_all() -> None:
    t = wire.SessionTable(capacity=6)
    session = lambda caller, n: wire.Session(bytes([n] * 16), bytes([caller] * 32), AXON_KEY.public, bytes(32), bytes(32))  # noqa: E731
    for n in range(6):
        t.insert(session(1, n))
    assert len(t) == wire.SESSIONS_PER_CALLER and t.get(bytes([0] * 16)) is None and t.get(bytes([5] * 16)) is not None
    for n in range(10, 14):
        t.insert(session(n, n))
    assert len(t) == 6 and t.get(bytes([2] * 16)) is None and t.get(bytes([13] * 16)) is not None
    expired = wire.SessionTable(lifetime_s=0.0)
    expired.insert(session(1, 1))
    assert expired.get(bytes([1] * 16)) is None and len(expired) == 0


def test_the_preimages_are_the_rust_layout() -> None:
    """Each field of `wire::auth::request_message`, `response::response_message` and the
    handshake's two messages, in order."""
    u64 = lambda n: n.to_bytes(8, "little")  # noqa: E731
    f = lambda b: u64(len(b)) + b  # noqa: E731
    pre = wire.response_message(wire.PATH_BACKWARD, bytes([2] * 32), 7, bytes([4] * 32), MODEL)
    assert pre == (f(b"agora/5/response") + f(b"/agora.v1.Axon/Backward") + f(bytes([2] * 32))
                   + f(b"blake3") + u64(7) + f(bytes([4] * 32)) + f(bytes([3] * 32)) + u64(41))
    assert wire.request_message(wire.PATH_FORWARD, 1, 2, 3, bytes(32)) == (
        f(b"agora/5/request") + f(b"/agora.v1.Axon/Forward") + u64(1) + u64(2) + f(b"blake3") + u64(3) + f(bytes(32)))
    assert wire.handshake_request_message(bytes([1] * 32), bytes([2] * 32), bytes([3] * 32), 9) == (
        f(b"agora/5/handshake") + f(bytes([1] * 32)) + f(bytes([2] * 32)) + f(bytes([3] * 32)) + u64(9))
    assert wire.handshake_response_message(bytes([1] * 32), bytes([2] * 32), 11, "no", b"", b"") == (
        f(b"agora/5/handshake/axon") + f(bytes([1] * 32)) + f(bytes([2] * 32)) + u64(11) + f(b"no") + f(b"") + f(b""))


def test_unregistered_callers_are_refused_unless_trusted() -> None:
    stakes = wire.StakeTable()
    judge = Keypair(bytes([0x77] * 32))
    stakes.replace({CALLER.public: 5})
    seen: list[wire.Caller] = []
    a = wire.serve(AXON_KEY, lambda x, c: seen.append(c) or x, stakes=stakes, trusted=[judge.public])
    try:
        x = np.ones((1, 1, 2), dtype=np.float32)
        assert wire.Dendrite(CALLER).forward(endpoint(a), AXON_KEY.public, x).ok
        assert wire.Dendrite(judge).forward(endpoint(a), AXON_KEY.public, x).ok
        stranger = wire.Dendrite(Keypair(bytes([0x99] * 32))).forward(endpoint(a), AXON_KEY.public, x)
        assert stranger.code == wire.UNKNOWN_CALLER, stranger
        assert [c.stake for c in seen] == [5, 0]
        assert wire.Dendrite(CALLER).backward(endpoint(a), AXON_KEY.public, x, x).code == wire.NOT_IMPLEMENTED
    finally:
        a.stop(0)


def test_unreachable_and_wrong_endpoints_are_unavailable_not_exceptions() -> None:
    d = wire.Dendrite(CALLER)
    x = np.ones((1, 1, 2), dtype=np.float32)
    closed = d.forward(f"127.0.0.1:{free_port()}", AXON_KEY.public, x, timeout=3)
    assert closed.code == wire.UNAVAILABLE, closed
    # A TCP server that is not gRPC: accepts and closes at once.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    stop = threading.Event()

    def refuse() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=refuse, daemon=True)
    t.start()
    try:
        wrong = d.forward(f"127.0.0.1:{srv.getsockname()[1]}", AXON_KEY.public, x, timeout=3)
        assert wrong.code == wire.UNAVAILABLE, wrong
    finally:
        stop.set()
        t.join()
        srv.close()
    garbage = d.forward("not an endpoint at all:::", AXON_KEY.public, x, timeout=2)
    assert garbage.code == wire.UNAVAILABLE, garbage
    assert d.backward(f"127.0.0.1:{free_port()}", AXON_KEY.public, x, x, timeout=2).code == wire.UNAVAILABLE


def test_a_fan_out_gives_each_target_its_own_answer_within_one_deadline(axon: wire.Axon) -> None:
    slow = wire.serve(AXON_KEY, lambda x, c: time.sleep(3) or affine(x, c))
    # A TCP server that accepts and never says a word: its handshake waits out the deadline.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        d = wire.Dendrite(CALLER)
        x = np.ones((2, 2, 2), dtype=np.float32)
        # The silent one first: handshakes one after another would leave the others no time.
        targets = [wire.Target(f"127.0.0.1:{silent.getsockname()[1]}", AXON_KEY.public),
                   wire.Target(endpoint(axon), AXON_KEY.public), wire.Target(f"127.0.0.1:{free_port()}", AXON_KEY.public),
                   wire.Target(f"127.0.0.1:{slow.port}", AXON_KEY.public)]
        t0 = time.monotonic()
        mute, ok, dead, late = d.forward_many(targets, x, timeout=1.0)
        assert time.monotonic() - t0 < 1.8, "one deadline for the whole fan-out, handshakes included"
        assert ok.ok and dead.code == wire.UNAVAILABLE and late.code == wire.TIMEOUT, (ok, dead, late)
        assert mute.code in (wire.TIMEOUT, wire.UNAVAILABLE), mute
    finally:
        slow.stop(0)
        silent.close()


class LyingAxon(wire.Axon):
    """A real axon (sessions, MACs) that answers every Forward with `answer`, whatever it is
    asked, MACed as its answer to the request: a lie its MAC does not expose."""

    def __init__(self, answer: wire.pb.ForwardResponse) -> None:
        super().__init__(AXON_KEY, affine)
        self.lie = answer

    def Forward(self, body: bytes, context: Any) -> bytes:
        creds = wire.read_credentials(context.invocation_metadata())
        out = self.lie.SerializeToString()
        session = self.sessions.get(creds.session)
        context.send_initial_metadata(wire.seal_response(session, wire.PATH_FORWARD, creds.request_hash(wire.PATH_FORWARD), out))
        return out


def test_a_lying_axon_is_caught_by_the_dendrite() -> None:
    d = wire.Dendrite(CALLER)
    x = np.ones((2, 3, 4), dtype=np.float32)
    cases = [
        (wire.to_wire(np.ones((3, 3, 4), dtype=np.float32)), wire.RESPONSE_SHAPE_ERROR),
        (wire.to_wire(np.array([[[np.inf]]] * 2 * 3, dtype=np.float32).reshape(2, 3, 1)), wire.NON_FINITE),
        (wire.pb.Tensor(data=b"\0" * 3, dtype=wire.pb.DTYPE_F32, shape=[2, 3, 1], modality=wire.pb.MODALITY_TENSOR),
         wire.RESPONSE_SHAPE_ERROR),
    ]
    for tensor, code in cases:
        liar = LyingAxon(wire.pb.ForwardResponse(outputs=tensor, code=wire.SUCCESS))
        liar.start()
        try:
            r = d.forward(endpoint(liar), AXON_KEY.public, x, timeout=3)
            assert r.code == code, r
        finally:
            liar.stop(0)


def test_a_model_that_fails_is_reported_and_the_axon_keeps_serving() -> None:
    calls = []

    def flaky(x: np.ndarray, c: wire.Caller) -> np.ndarray:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        if len(calls) == 2:
            return np.full((x.shape[0], x.shape[1], 2), np.nan, dtype=np.float32)
        return np.zeros((x.shape[0], x.shape[1], 2), dtype=np.float32)

    a = wire.serve(AXON_KEY, flaky)
    try:
        d = wire.Dendrite(CALLER)
        x = np.ones((1, 3, 2), dtype=np.float32)
        first, second, third = (d.forward(endpoint(a), AXON_KEY.public, x) for _ in range(3))
        assert first.code == wire.INTERNAL_ERROR and "exploded" in first.message
        assert second.code == wire.INTERNAL_ERROR and "NaN" in second.message
        assert third.ok
    finally:
        a.stop(0)


def test_the_standard_basis_is_the_nucleus_one() -> None:
    b = standard_basis()
    assert b.shape == (256, 32) and set(np.unique(b)) == {-1.0, 1.0}
    # Pinned in nucleus::model::tests::the_standard_basis_is_pinned_and_tells_bytes_apart.
    assert b[0, :8].tolist() == [1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0]
    assert len({row.tobytes() for row in b}) == 256


# ---------------------------------------------------------------- authenticated responses (protocol 5)

OTHER_KEY = Keypair(bytes([0x66] * 32))
MODEL = wire.ModelVersion(bytes([3] * 32), 41)
Metadata = list[tuple[str, str]]
Rewrite = Callable[[Metadata], Metadata]


class TamperingAxon(wire.Axon):
    """A real axon whose answers are altered after it MACs them: `metadata` rewrites the
    initial metadata it sends, `body` the bytes; `handshake_key` signs its handshakes instead
    of its own hotkey."""

    def __init__(self, metadata: Rewrite = lambda md: md, body: Callable[[bytes], bytes] = lambda b: b,
                 handshake_key: Keypair | None = None) -> None:
        super().__init__(AXON_KEY, lambda x, c: wire.Versioned(affine(x, c), MODEL), lambda x, g, c: 2 * g)
        self.tamper_metadata, self.tamper_body, self.handshake_key = metadata, body, handshake_key

    def _send_seal(self, context: Any, path: str, session: wire.Session | None, request_hash: bytes, body: bytes,
                   model: wire.ModelVersion) -> None:
        md = wire.seal_response(session, path, request_hash, body, model)
        self.last_session = session
        context.send_initial_metadata(self.tamper_metadata(md))

    def _answer(self, path: str, body: bytes, context: Any, handle: Any) -> bytes:
        return self.tamper_body(super()._answer(path, body, context, handle))

    def Handshake(self, body: bytes, context: Any) -> bytes:
        out = super().Handshake(body, context)
        if self.handshake_key is None:
            return out
        answer, req = wire.pb.HandshakeResponse.FromString(out), wire.pb.HandshakeRequest.FromString(body)
        request_hash = wire.blake3(wire.handshake_request_message(req.caller, req.callee, req.ephemeral, req.timestamp_ms)).digest()
        pre = wire.handshake_response_message(request_hash, AXON_KEY.public, answer.code, answer.message, answer.ephemeral, answer.session)
        answer.signature = self.handshake_key.sign(pre)
        return answer.SerializeToString()


def replace(key: str, value: Callable[[str], str]) -> Rewrite:
    """A metadata rewrite setting `key` to `value(old)`."""
    return lambda md: [(k, value(v) if k == key else v) for k, v in md]


def flip_hex(v: str, at: int = 0) -> str:
    return v[:at] + format(int(v[at], 16) ^ 1, "x") + v[at + 1:]


def remac(request_hash: bytes | None = None, other_session: bool = False) -> Rewrite:
    """MACs the answer again, over another request (by default one of 32 bytes 9), or under
    another session's key (one between other keys: what a relay holds)."""

    def redo(md: Metadata) -> Metadata:
        m = dict(md)
        body_len, digest = int(m["agora-body-len"]), bytes.fromhex(m["agora-digest"].split(":")[1])
        model = wire.ModelVersion(bytes.fromhex(m["agora-model-version"]), int(m["agora-model-step"]))
        key = bytes([5] * 32) if other_session else None
        session = wire.Session(bytes(16), CALLER.public, AXON_KEY.public, key or bytes(32), key or bytes(32))
        pre = wire.response_message(wire.PATH_FORWARD, request_hash or bytes([9] * 32), body_len, digest, model)
        m["agora-mac"] = session.response_mac(pre).hex()
        return list(m.items())

    return redo


TAMPERINGS = {
    "a body byte": dict(body=lambda b: b[:-1] + bytes([b[-1] ^ 1])),
    "a byte cut from the body": dict(body=lambda b: b[:-1]),
    "the body's declared length": dict(metadata=replace("agora-body-len", lambda v: str(int(v) + 1))),
    "the digest": dict(metadata=replace("agora-digest", lambda v: flip_hex(v, len("blake3:")))),
    "the model version": dict(metadata=replace("agora-model-version", flip_hex)),
    "the model step": dict(metadata=replace("agora-model-step", lambda v: str(int(v) + 1))),
    "a MAC bit": dict(metadata=replace("agora-mac", lambda v: flip_hex(v, 10))),
    "its handshake signed by another key": dict(handshake_key=OTHER_KEY),
    "MACed under another session's key": dict(metadata=remac(other_session=True)),
    "MACed for another request": dict(metadata=remac()),
    "a malformed step": dict(metadata=replace("agora-model-step", lambda v: "-1")),
    "no MAC": dict(metadata=lambda md: [(k, v) for k, v in md if k != "agora-mac"]),
}


@pytest.mark.parametrize("what", list(TAMPERINGS))
def test_a_tampered_response_is_caught_as_an_invalid_response_signature(what: str) -> None:
    a = TamperingAxon(**TAMPERINGS[what])
    a.start()
    try:
        d = wire.Dendrite(CALLER)
        x = np.ones((2, 3, 4), dtype=np.float32)
        r = d.forward(endpoint(a), AXON_KEY.public, x, timeout=5)
        assert r.code == wire.INVALID_RESPONSE_SIGNATURE and r.tensor is None and r.model is None, r
        # The call was answered (the axon served it; a forged handshake leaves nothing to
        # serve): the dendrite refused the answer.
        assert a.stats.count("Forward") == (0 if "handshake" in what else 1)
    finally:
        a.stop(0)


def test_an_unsigned_or_other_version_response_is_unsupported() -> None:
    for tamper in (lambda md: [], replace("agora-version", lambda v: "4"), replace("agora-version", lambda v: "6")):
        a = TamperingAxon(metadata=tamper)
        a.start()
        try:
            r = wire.Dendrite(CALLER).forward(endpoint(a), AXON_KEY.public, np.ones((1, 1, 2), dtype=np.float32), timeout=5)
            assert r.code == wire.UNSUPPORTED_VERSION, r
        finally:
            a.stop(0)


def test_an_untampered_answer_names_its_model_and_a_refusal_none() -> None:
    a = TamperingAxon()
    a.start()
    try:
        d = wire.Dendrite(CALLER)
        x = np.ones((2, 3, 4), dtype=np.float32)
        r = d.forward(endpoint(a), AXON_KEY.public, x)
        assert r.ok and r.model == MODEL, r
        refused = d.forward(endpoint(a), AXON_KEY.public, np.array([[[np.nan]]], dtype=np.float32))
        assert refused.code == wire.NON_FINITE and refused.model == wire.UNVERSIONED, refused
        # A handler returning a bare array names no model; nor do unreadable credentials' refusals.
        g = d.backward(endpoint(a), AXON_KEY.public, x, x)
        assert g.ok and g.model == wire.UNVERSIONED, g
        body = wire.pb.ForwardRequest(inputs=wire.to_wire(x)).SerializeToString()
        r = d.call(endpoint(a), AXON_KEY.public, wire.PATH_FORWARD, body, metadata=[("agora-version", "5")], check=False)
        assert r.code == wire.INVALID_SIGNATURE, r
        assert a.last_session is None, "unreadable credentials: no session, no MAC"
    finally:
        a.stop(0)
