"""The peer protocol, version 3 (crates/wire/proto/agora.proto, package agora.v1): tensors, request
credentials, an axon (server) and a dendrite (client), numpy in and out.

Every call carries its credentials in the gRPC metadata, so an axon decides before it parses the
body (the exact bytes are in docs/python-peer.md and crates/wire/src/auth.rs):

    agora-version 3, agora-caller, agora-callee (hex hotkeys), agora-nonce, agora-timestamp-ms,
    agora-body-len, agora-digest "blake3:<hex>", agora-signature (hex ed25519)
    preimage = field("agora/3") || field(path) || field(caller) || field(callee)
               || u64le(nonce) || u64le(timestamp_ms) || field("blake3") || u64le(body_len)
               || field(digest);  field(x) = u64le(len(x)) || x

The dendrite never raises out of a call: a refused, slow, unreachable or lying axon is a
[`Response`] with its return code (UNAVAILABLE, TIMEOUT, RESPONSE_SHAPE_ERROR, NON_FINITE, ...),
as the Rust dendrite reports it, and a fan-out gives each target its own.

The axon checks version, callee, freshness, body length and digest, signature and replays
(a `(caller, nonce)` seen within the freshness window), and, given a stake table, refuses
callers the metagraph does not know unless they are trusted (`UNKNOWN_CALLER`). It has no
stake-priority queue and grpcio reads a whole message before the handler sees it: the Rust axon
(`wire::serve`) is the one that bounds what it reads per caller before reading it.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from blake3 import blake3

from .keys import Keypair, verify as verify_signature

try:
    from ._proto import agora_pb2 as pb
except ImportError as _e:  # pragma: no cover - only in a source tree that was never built
    raise ImportError(
        "agora's gRPC stubs are generated when the package is built: install it with "
        "`pip install ./python` from the repository root"
    ) from _e

PROTOCOL_VERSION = 3
DIGEST = "blake3"
PATH_FORWARD = "/agora.v1.Axon/Forward"
PATH_BACKWARD = "/agora.v1.Axon/Backward"
FRESHNESS_MS = 30_000
MAX_FUTURE_MS = 2_000
# The Rust axon's default limits: a tensor of at most 64 MiB, a message of two of them.
MAX_TENSOR_BYTES = 64 << 20
MAX_MESSAGE = 2 * MAX_TENSOR_BYTES + (64 << 10)
GRPC_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]

Code = int
SUCCESS: Code = pb.RETURN_CODE_SUCCESS
TIMEOUT: Code = pb.RETURN_CODE_TIMEOUT
UNAVAILABLE: Code = pb.RETURN_CODE_UNAVAILABLE
NOT_IMPLEMENTED: Code = pb.RETURN_CODE_NOT_IMPLEMENTED
REQUEST_SHAPE_ERROR: Code = pb.RETURN_CODE_REQUEST_SHAPE_ERROR
REQUEST_DTYPE_ERROR: Code = pb.RETURN_CODE_REQUEST_DTYPE_ERROR
RESPONSE_SHAPE_ERROR: Code = pb.RETURN_CODE_RESPONSE_SHAPE_ERROR
UNKNOWN_CALLER: Code = pb.RETURN_CODE_UNKNOWN_CALLER
INVALID_SIGNATURE: Code = pb.RETURN_CODE_INVALID_SIGNATURE
INTERNAL_ERROR: Code = pb.RETURN_CODE_INTERNAL_ERROR
NON_FINITE: Code = pb.RETURN_CODE_NON_FINITE
UNSUPPORTED_VERSION: Code = pb.RETURN_CODE_UNSUPPORTED_VERSION


def code_name(code: Code) -> str:
    """`RETURN_CODE_TIMEOUT` -> `TIMEOUT`."""
    try:
        return pb.ReturnCode.Name(code).removeprefix("RETURN_CODE_")
    except ValueError:
        return f"CODE_{code}"


# ---------------------------------------------------------------- tensors

# dtype <-> numpy; every element little-endian on the wire. bfloat16 travels but numpy has no
# such dtype: Python peers send float32 or float16.
DTYPES = {
    pb.DTYPE_F32: np.dtype("<f4"),
    pb.DTYPE_F16: np.dtype("<f2"),
    pb.DTYPE_I64: np.dtype("<i8"),
    pb.DTYPE_U8: np.dtype("u1"),
}
NP_TO_DTYPE = {v: k for k, v in DTYPES.items()}
RANK = {pb.MODALITY_TEXT: 2, pb.MODALITY_IMAGE: 5, pb.MODALITY_TENSOR: 3}


class BadTensor(ValueError):
    """A tensor or request refused with the return code the Rust side would give."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code


def to_wire(array: np.ndarray, modality: int | None = None) -> "pb.Tensor":
    """numpy -> Tensor (TENSOR for floats, TEXT for integers unless `modality` says)."""
    array = np.ascontiguousarray(array)
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    if np.dtype(dtype) not in NP_TO_DTYPE:
        raise BadTensor(REQUEST_DTYPE_ERROR, f"dtype {array.dtype} does not travel: use float32, float16, int64 or uint8")
    if modality is None:
        modality = pb.MODALITY_TENSOR if array.dtype.kind == "f" else pb.MODALITY_TEXT
    return pb.Tensor(data=array.astype(dtype, copy=False).tobytes(), dtype=NP_TO_DTYPE[np.dtype(dtype)],
                     shape=list(array.shape), modality=modality)


def from_wire(t: "pb.Tensor", max_bytes: int = MAX_TENSOR_BYTES, request: bool = True) -> np.ndarray:
    """Tensor -> numpy (read-only view of the message bytes), refusing what the Rust decoder
    refuses with the same codes: size, dtype, rank for the modality, bytes that do not fill the
    shape, NaN or Inf."""
    shape_err = REQUEST_SHAPE_ERROR if request else RESPONSE_SHAPE_ERROR
    if len(t.data) > max_bytes:
        raise BadTensor(shape_err, f"{len(t.data)} bytes exceeds {max_bytes}")
    if t.dtype not in DTYPES:
        raise BadTensor(REQUEST_DTYPE_ERROR if request else RESPONSE_SHAPE_ERROR, f"unsupported dtype {t.dtype}")
    if RANK.get(t.modality) != len(t.shape):
        raise BadTensor(shape_err, f"modality {t.modality} with shape {list(t.shape)}")
    dt = DTYPES[t.dtype]
    n = 1
    for d in t.shape:
        n *= d
    if n == 0 or n * dt.itemsize != len(t.data):
        raise BadTensor(shape_err, f"shape {list(t.shape)} needs {n * dt.itemsize} bytes, data has {len(t.data)}")
    array = np.frombuffer(t.data, dtype=dt).reshape(tuple(t.shape))
    if dt.kind == "f" and not np.isfinite(array).all():
        raise BadTensor(NON_FINITE, "NaN or Inf in tensor")
    return array


# ---------------------------------------------------------------- credentials


def _field(x: bytes) -> bytes:
    return struct.pack("<Q", len(x)) + x


def signing_message(path: str, caller: bytes, callee: bytes, nonce: int, timestamp_ms: int, body_len: int,
                    digest: bytes, version: int = PROTOCOL_VERSION) -> bytes:
    """The preimage a caller signs for a call whose message bytes have `body_len` and BLAKE3
    `digest`."""
    return (_field(f"agora/{version}".encode()) + _field(path.encode()) + _field(caller) + _field(callee)
            + struct.pack("<QQ", nonce, timestamp_ms) + _field(DIGEST.encode()) + struct.pack("<Q", body_len)
            + _field(digest))


class Signer:
    """A hotkey signing calls, with nonces that increase across restarts (they start at the
    clock in nanoseconds) so an axon's replay cache never confuses two runs."""

    def __init__(self, hotkey: Keypair) -> None:
        self.hotkey = hotkey
        self._nonce = time.time_ns()
        self._lock = threading.Lock()

    def next_nonce(self) -> int:
        with self._lock:
            self._nonce += 1
            return self._nonce

    def credentials(self, path: str, callee: bytes, body_len: int, digest: bytes) -> list[tuple[str, str]]:
        nonce, ts = self.next_nonce(), int(time.time() * 1000)
        sig = self.hotkey.sign(signing_message(path, self.hotkey.public, callee, nonce, ts, body_len, digest))
        return [
            ("agora-version", str(PROTOCOL_VERSION)),
            ("agora-caller", self.hotkey.public.hex()),
            ("agora-callee", callee.hex()),
            ("agora-nonce", str(nonce)),
            ("agora-timestamp-ms", str(ts)),
            ("agora-body-len", str(body_len)),
            ("agora-digest", f"{DIGEST}:{digest.hex()}"),
            ("agora-signature", sig.hex()),
        ]


@dataclass(frozen=True)
class Credentials:
    """What an axon read from a call's metadata."""

    caller: bytes
    callee: bytes
    nonce: int
    timestamp_ms: int
    body_len: int
    digest: bytes
    signature: bytes


def read_credentials(metadata: Iterable[tuple[str, Any]]) -> Credentials:
    """Parses the metadata of a version-3 call (UNSUPPORTED_VERSION for another version or
    digest, INVALID_SIGNATURE for anything malformed)."""
    md = {k: v for k, v in metadata}
    version = md.get("agora-version")
    if version is None:
        raise BadTensor(UNSUPPORTED_VERSION, f"no agora-version: this axon speaks agora protocol {PROTOCOL_VERSION} (credentials in metadata)")
    if version != str(PROTOCOL_VERSION):
        hint = " (protocol 2 digested with sha256, no longer read)" if version == "2" else ""
        raise BadTensor(UNSUPPORTED_VERSION, f"agora-version {version!r} is not spoken here: this axon speaks {PROTOCOL_VERSION}{hint}")
    try:
        alg, digest_hex = str(md["agora-digest"]).split(":", 1)
        if alg != DIGEST:
            raise BadTensor(UNSUPPORTED_VERSION, f"digest algorithm {alg!r} is not supported: this axon speaks {DIGEST}")
        return Credentials(
            caller=bytes.fromhex(md["agora-caller"]),
            callee=bytes.fromhex(md["agora-callee"]),
            nonce=int(md["agora-nonce"]),
            timestamp_ms=int(md["agora-timestamp-ms"]),
            body_len=int(md["agora-body-len"]),
            digest=bytes.fromhex(digest_hex),
            signature=bytes.fromhex(md["agora-signature"]),
        )
    except (KeyError, ValueError) as e:
        if isinstance(e, BadTensor):
            raise
        raise BadTensor(INVALID_SIGNATURE, f"malformed credentials: {e!r}") from e


def check_credentials(c: Credentials, path: str, body: bytes, me: bytes, now_ms: int | None = None) -> None:
    """Callee, freshness, body length and digest, then the signature (the cheap checks first)."""
    if c.callee != me:
        raise BadTensor(INVALID_SIGNATURE, "addressed to another axon")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if c.timestamp_ms < now - FRESHNESS_MS or c.timestamp_ms > now + MAX_FUTURE_MS:
        raise BadTensor(INVALID_SIGNATURE, f"stale or future timestamp ({c.timestamp_ms - now} ms from this axon's clock)")
    if c.body_len != len(body) or blake3(body).digest() != c.digest:
        raise BadTensor(INVALID_SIGNATURE, "the body does not match its signed length and digest")
    pre = signing_message(path, c.caller, c.callee, c.nonce, c.timestamp_ms, c.body_len, c.digest)
    if len(c.caller) != 32 or not verify_signature(c.caller, c.signature, pre):
        raise BadTensor(INVALID_SIGNATURE, "bad signature")


class ReplayCache:
    """`(caller, nonce)` pairs seen within the freshness window: a repeat is refused. Bounded:
    past `capacity` entries the oldest are forgotten, which the freshness window makes safe once
    they are older than it."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[tuple[bytes, int], int] = OrderedDict()
        self._lock = threading.Lock()

    def check_and_insert(self, caller: bytes, nonce: int, timestamp_ms: int) -> bool:
        """False if the pair was seen (a replay)."""
        now = int(time.time() * 1000)
        with self._lock:
            while self._seen:
                (_, ts) = next(iter(self._seen.items()))
                if ts >= now - FRESHNESS_MS and len(self._seen) < self.capacity:
                    break
                self._seen.popitem(last=False)
            key = (caller, nonce)
            if key in self._seen:
                return False
            self._seen[key] = timestamp_ms
            return True


# ---------------------------------------------------------------- axon


@dataclass(frozen=True)
class Caller:
    """Who called: its hotkey and its stake in base units (0 when unknown or trusted)."""

    hotkey: bytes
    stake: int


class StakeTable:
    """Stakes by hotkey, replaced whole from each metagraph the peer reads: who the axon
    serves, and how much a caller's gradients count."""

    def __init__(self) -> None:
        self._stakes: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def replace(self, stakes: dict[bytes, int]) -> None:
        with self._lock:
            self._stakes = dict(stakes)

    def get(self, hotkey: bytes) -> int | None:
        with self._lock:
            return self._stakes.get(hotkey)

    def total(self) -> int:
        with self._lock:
            return sum(self._stakes.values())


ForwardFn = Callable[[np.ndarray, Caller], np.ndarray]
BackwardFn = Callable[[np.ndarray, np.ndarray, Caller], "np.ndarray | None"]


@dataclass
class AxonStats:
    """Calls answered, by path and return code name (`("Forward", "SUCCESS") -> 12`), and the
    distinct callers served: what a peer reports to show it was queried."""

    calls: dict[tuple[str, str], int] = field(default_factory=dict)
    callers: set[bytes] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, call: str, code: Code, caller: bytes | None) -> None:
        with self.lock:
            key = (call, code_name(code))
            self.calls[key] = self.calls.get(key, 0) + 1
            if code == SUCCESS and caller is not None:
                self.callers.add(caller)

    def count(self, call: str, code: str = "SUCCESS") -> int:
        with self.lock:
            return self.calls.get((call, code), 0)


class Axon:
    """Serves `forward(inputs, caller) -> outputs` and optionally `backward(inputs, grads,
    caller) -> grads or None`, numpy in and out; outputs must be float `[batch, seq, dim]` with
    the inputs' batch and seq. Takes the raw request bytes, so it digests exactly what was sent
    before parsing it.

    `stakes`: when given, a caller the table does not know is refused (`UNKNOWN_CALLER`) unless
    its hotkey is in `trusted` or `allow_unregistered`; without it every correctly signed caller
    is served (there is nothing to check it against).
    """

    def __init__(self, hotkey: Keypair, forward: ForwardFn, backward: BackwardFn | None = None,
                 stakes: StakeTable | None = None, trusted: Iterable[bytes] = (),
                 allow_unregistered: bool = False) -> None:
        self.hotkey, self.forward_fn, self.backward_fn = hotkey, forward, backward
        self.stakes, self.trusted, self.allow_unregistered = stakes, {bytes(t) for t in trusted}, allow_unregistered
        self.replays = ReplayCache()
        self.stats = AxonStats()
        self.server: Any = None
        self.port: int | None = None

    def _admit(self, metadata: Iterable[tuple[str, Any]], path: str, body: bytes) -> Caller:
        c = read_credentials(metadata)
        check_credentials(c, path, body, self.hotkey.public)
        stake = self.stakes.get(c.caller) if self.stakes is not None else 0
        if stake is None:
            if c.caller in self.trusted or self.allow_unregistered:
                stake = 0
            else:
                raise BadTensor(UNKNOWN_CALLER, f"caller {c.caller.hex()[:16]}.. is not registered on the chain")
        if not self.replays.check_and_insert(c.caller, c.nonce, c.timestamp_ms):
            raise BadTensor(INVALID_SIGNATURE, f"nonce {c.nonce} was already used by this caller: a replay")
        return Caller(c.caller, int(stake))

    @staticmethod
    def _check_output(y: Any, inputs: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(np.asarray(y, dtype="<f4"))
        if out.ndim != 3 or out.shape[:2] != inputs.shape[:2]:
            raise BadTensor(INTERNAL_ERROR, f"the model answered shape {list(out.shape)}, expected [{inputs.shape[0]}, {inputs.shape[1]}, dim]")
        if not np.isfinite(out).all():
            raise BadTensor(INTERNAL_ERROR, "the model answered NaN or Inf")
        return out

    def Forward(self, body: bytes, context: Any) -> "pb.ForwardResponse":
        caller = None
        try:
            caller = self._admit(context.invocation_metadata(), PATH_FORWARD, body)
            request = pb.ForwardRequest.FromString(body)
            x = from_wire(request.inputs)
            y = self._check_output(self.forward_fn(x, caller), x)
            resp = pb.ForwardResponse(outputs=to_wire(y), code=SUCCESS)
        except BadTensor as e:
            resp = pb.ForwardResponse(code=e.code, message=str(e))
        except Exception as e:  # noqa: BLE001 - the model failed: tell the caller, keep serving
            resp = pb.ForwardResponse(code=INTERNAL_ERROR, message=repr(e))
        self.stats.record("Forward", resp.code, caller.hotkey if caller else None)
        return resp

    def Backward(self, body: bytes, context: Any) -> "pb.BackwardResponse":
        caller = None
        try:
            if self.backward_fn is None:
                raise BadTensor(NOT_IMPLEMENTED, "this axon does not take gradients")
            caller = self._admit(context.invocation_metadata(), PATH_BACKWARD, body)
            request = pb.BackwardRequest.FromString(body)
            g = self.backward_fn(from_wire(request.inputs), from_wire(request.grads), caller)
            grads = None if g is None else to_wire(np.asarray(g, dtype="<f4"))
            resp = pb.BackwardResponse(grads=grads, code=SUCCESS)
        except BadTensor as e:
            resp = pb.BackwardResponse(code=e.code, message=str(e))
        except Exception as e:  # noqa: BLE001
            resp = pb.BackwardResponse(code=INTERNAL_ERROR, message=repr(e))
        self.stats.record("Backward", resp.code, caller.hotkey if caller else None)
        return resp

    def start(self, addr: str = "127.0.0.1:0", workers: int = 4) -> int:
        """Listens on `addr` (port 0: any free port); returns the port."""
        import grpc

        handlers = {
            "Forward": grpc.unary_unary_rpc_method_handler(
                self.Forward, request_deserializer=None, response_serializer=pb.ForwardResponse.SerializeToString),
            "Backward": grpc.unary_unary_rpc_method_handler(
                self.Backward, request_deserializer=None, response_serializer=pb.BackwardResponse.SerializeToString),
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=GRPC_OPTIONS)
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("agora.v1.Axon", handlers),))
        self.port = self.server.add_insecure_port(addr)
        if not self.port:
            raise OSError(f"cannot listen on {addr}")
        self.server.start()
        return self.port

    def stop(self, grace: float = 1.0) -> None:
        if self.server is not None:
            self.server.stop(grace).wait()
            self.server = None


def serve(hotkey: Keypair, forward: ForwardFn, backward: BackwardFn | None = None, addr: str = "127.0.0.1:0",
          workers: int = 4, **kwargs: Any) -> Axon:
    """Starts an [`Axon`] on `addr`; `axon.port` is where it listens."""
    axon = Axon(hotkey, forward, backward, **kwargs)
    axon.start(addr, workers)
    return axon


# ---------------------------------------------------------------- dendrite


@dataclass
class Response:
    """One target's answer: its return code, the axon's message, the tensor on success, and
    the round trip in seconds."""

    code: Code
    message: str
    tensor: np.ndarray | None
    latency: float

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS and self.tensor is not None

    def __repr__(self) -> str:
        shape = None if self.tensor is None else list(self.tensor.shape)
        return f"Response({code_name(self.code)}, {self.message!r}, shape={shape}, {self.latency * 1000:.1f} ms)"


def _status_code(status: Any) -> Code:
    """A gRPC status (from the transport, not the axon's service) as a return code, as the
    Rust dendrite maps it."""
    import grpc

    if status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return UNAVAILABLE
    if status == grpc.StatusCode.DEADLINE_EXCEEDED:
        return TIMEOUT
    if status == grpc.StatusCode.UNIMPLEMENTED:
        return NOT_IMPLEMENTED
    if status in (grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return REQUEST_SHAPE_ERROR
    return INTERNAL_ERROR


@dataclass(frozen=True)
class Target:
    """An axon to call: `host:port` and its 32-byte hotkey (requests are signed to it)."""

    endpoint: str
    hotkey: bytes


class Dendrite:
    """Calls axons (Rust or Python) with one hotkey. Channels are kept per endpoint and
    reused; `close()` drops them. Thread-safe."""

    def __init__(self, hotkey: Keypair) -> None:
        import grpc

        self.signer = Signer(hotkey)
        self._grpc = grpc
        self._channels: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def hotkey(self) -> Keypair:
        return self.signer.hotkey

    def _channel(self, endpoint: str) -> Any:
        with self._lock:
            ch = self._channels.get(endpoint)
            if ch is None:
                ch = self._grpc.insecure_channel(endpoint, options=GRPC_OPTIONS)
                self._channels[endpoint] = ch
            return ch

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()

    def _start(self, target: Target, path: str, body: bytes, digest: bytes, timeout: float,
               metadata: list[tuple[str, str]] | None) -> Any:
        reply = pb.ForwardResponse if path == PATH_FORWARD else pb.BackwardResponse
        rpc = self._channel(target.endpoint).unary_unary(path, request_serializer=None, response_deserializer=reply.FromString)
        md = metadata if metadata is not None else self.signer.credentials(path, target.hotkey, len(body), digest)
        return rpc.future(body, timeout=timeout, metadata=md)

    def _finish(self, fut: Any, path: str, expect: tuple[int, int] | None, started: float) -> Response:
        try:
            msg = fut.result()
        except self._grpc.RpcError as e:
            return Response(_status_code(e.code()), f"gRPC {e.code().name}: {e.details()}", None, time.perf_counter() - started)
        except Exception as e:  # noqa: BLE001 - a dendrite never raises out of a call
            return Response(INTERNAL_ERROR, repr(e), None, time.perf_counter() - started)
        latency = time.perf_counter() - started
        if msg.code != SUCCESS:
            return Response(msg.code, msg.message, None, latency)
        field_name = "outputs" if path == PATH_FORWARD else "grads"
        if not msg.HasField(field_name):
            if path == PATH_BACKWARD:
                return Response(SUCCESS, msg.message, None, latency)
            return Response(RESPONSE_SHAPE_ERROR, "a successful Forward without outputs", None, latency)
        try:
            t = from_wire(getattr(msg, field_name), request=False)
        except BadTensor as e:
            return Response(e.code, f"the axon's response: {e}", None, latency)
        if expect is not None and (t.ndim != 3 or t.shape[:2] != expect):
            return Response(RESPONSE_SHAPE_ERROR, f"the axon's response has shape {list(t.shape)}, expected [batch, seq] = {list(expect)}", None, latency)
        return Response(SUCCESS, msg.message, t, latency)

    def _fan_out(self, targets: Sequence[Target], path: str, bodies: Sequence[bytes], timeout: float,
                 expect: tuple[int, int] | None) -> list[Response]:
        started = time.perf_counter()
        pending = []
        digests: dict[int, bytes] = {}
        for target, body in zip(targets, bodies):
            # One digest per distinct body: a fan-out of one batch hashes it once.
            d = digests.get(id(body))
            if d is None:
                d = digests[id(body)] = blake3(body).digest()
            try:
                pending.append((self._start(target, path, body, d, timeout, None), None))
            except Exception as e:  # noqa: BLE001 - a malformed endpoint is that target's failure
                pending.append((None, e))
        out = []
        # (A grpc future is itself an Exception subclass: failures travel beside it, not as it.)
        for fut, err in pending:
            if fut is None:
                out.append(Response(UNAVAILABLE, f"cannot call: {err!r}", None, 0.0))
            else:
                out.append(self._finish(fut, path, expect, started))
        return out

    def forward_many(self, targets: Sequence[Target], inputs: np.ndarray, timeout: float = 12.0,
                     modality: int | None = None) -> list[Response]:
        """One batch to every target at once under one deadline; one [`Response`] per target,
        in order. A slow or dead target delays no other's answer beyond the deadline."""
        try:
            body = pb.ForwardRequest(inputs=to_wire(inputs, modality)).SerializeToString()
        except BadTensor as e:
            return [Response(e.code, str(e), None, 0.0) for _ in targets]
        return self._fan_out(targets, PATH_FORWARD, [body] * len(targets), timeout, tuple(inputs.shape[:2]))

    def forward(self, endpoint: str, axon_hotkey: bytes, inputs: np.ndarray, timeout: float = 12.0,
                modality: int | None = None) -> Response:
        return self.forward_many([Target(endpoint, axon_hotkey)], inputs, timeout, modality)[0]

    def backward_many(self, targets: Sequence[Target], inputs: np.ndarray, grads: Sequence[np.ndarray],
                      timeout: float = 12.0) -> list[Response]:
        """Each target gets the gradient of the caller's loss w.r.t. its own answer."""
        try:
            x = to_wire(inputs)
            bodies = [pb.BackwardRequest(inputs=x, grads=to_wire(np.asarray(g, dtype="<f4"))).SerializeToString() for g in grads]
        except BadTensor as e:
            return [Response(e.code, str(e), None, 0.0) for _ in targets]
        return self._fan_out(targets, PATH_BACKWARD, bodies, timeout, None)

    def backward(self, endpoint: str, axon_hotkey: bytes, inputs: np.ndarray, grads: np.ndarray,
                 timeout: float = 12.0) -> Response:
        return self.backward_many([Target(endpoint, axon_hotkey)], inputs, [grads], timeout)[0]

    def call(self, endpoint: str, axon_hotkey: bytes, path: str, request: Any, timeout: float = 12.0,
             metadata: list[tuple[str, str]] | None = None) -> Any:
        """A raw call of `request` (a message or its bytes) returning the response message;
        `metadata` replaces the credentials (for tests of refusals). Raises grpc.RpcError on a
        transport failure: use `forward`/`backward` for calls that never raise."""
        body = request if isinstance(request, bytes) else request.SerializeToString()
        fut = self._start(Target(endpoint, axon_hotkey), path, body, blake3(body).digest(), timeout, metadata)
        return fut.result()
