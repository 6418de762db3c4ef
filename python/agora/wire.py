"""The peer protocol, version 5 (crates/wire/proto/agora.proto, package agora.v1): tensors, sessions,
MACed requests and answers, an axon (server) and a dendrite (client), numpy in and out.

A dendrite opens a session with each axon once (per channel) with `/agora.v1.Axon/Handshake`
(crates/wire/src/auth/session.rs): it sends a fresh X25519 key signed by its hotkey, the axon
answers with its own fresh X25519 key and a 16-byte session id signed by its hotkey, and both
derive a request key and a response key (BLAKE3 derive_key over the X25519 secret and the signed
answer). Every call then carries its credentials in the gRPC metadata, so an axon decides before
it parses the body (the exact bytes are in docs/python-peer.md and crates/wire/src/auth.rs):

    agora-version 5, agora-session (hex), agora-nonce, agora-timestamp-ms, agora-body-len,
    agora-digest "blake3:<hex>", agora-mac (hex, keyed BLAKE3 under the request key)
    preimage = field("agora/5/request") || field(path) || u64le(nonce) || u64le(timestamp_ms)
               || field("blake3") || u64le(body_len) || field(digest);  field(x) = u64le(len(x)) || x

Every answer in a session, refusals included, carries a MAC under the response key in its
initial metadata (crates/wire/src/auth/response.rs), over the request it answers (request_hash
= BLAKE3 of the request preimage above), the exact response message bytes and the model that
answered:

    agora-version 5, agora-model-version (hex, 32 bytes), agora-model-step, agora-body-len,
    agora-digest "blake3:<hex>", agora-mac
    preimage = field("agora/5/response") || field(path) || field(request_hash)
               || field("blake3") || u64le(body_len) || field(digest)
               || field(model_version) || u64le(model_step)

The dendrite checks the body's length and digest and the MAC: any failure is
INVALID_RESPONSE_SIGNATURE, an answer without agora-version or of another version (and an axon
without the handshake, protocol 4 or older) UNSUPPORTED_VERSION. A session the axon no longer
holds is answered UNAUTHENTICATED: the dendrite opens another and resends the call once.

The dendrite never raises out of a call: a refused, slow, unreachable or lying axon is a
[`Response`] with its return code (UNAVAILABLE, TIMEOUT, RESPONSE_SHAPE_ERROR, NON_FINITE, ...),
as the Rust dendrite reports it, and a fan-out gives each target its own.

The axon checks the handshake (callee, freshness, signature), then each call's version, session,
freshness, body length and digest, MAC and replays (a `(caller, nonce)` seen within the
freshness window), and, given a stake table, refuses
callers the metagraph does not know unless they are trusted (`UNKNOWN_CALLER`). It has no
stake-priority queue and grpcio reads a whole message before the handler sees it: the Rust axon
(`wire::serve`) is the one that bounds what it reads per caller before reading it.
"""

from __future__ import annotations

import hmac
import os
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

PROTOCOL_VERSION = 5
DIGEST = "blake3"
PATH_FORWARD = "/agora.v1.Axon/Forward"
PATH_BACKWARD = "/agora.v1.Axon/Backward"
PATH_HANDSHAKE = "/agora.v1.Axon/Handshake"
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
INVALID_RESPONSE_SIGNATURE: Code = pb.RETURN_CODE_INVALID_RESPONSE_SIGNATURE


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


# ---------------------------------------------------------------- sessions and credentials


def _field(x: bytes) -> bytes:
    return struct.pack("<Q", len(x)) + x


def _now_ms() -> int:
    return int(time.time() * 1000)


def handshake_request_message(caller: bytes, callee: bytes, ephemeral: bytes, timestamp_ms: int) -> bytes:
    """What a dendrite signs to open a session (`wire::auth::session::handshake_request_message`)."""
    return (_field(f"agora/{PROTOCOL_VERSION}/handshake".encode()) + _field(caller) + _field(callee)
            + _field(ephemeral) + struct.pack("<Q", timestamp_ms))


def handshake_response_message(request_hash: bytes, responder: bytes, code: int, message: str, ephemeral: bytes,
                               session: bytes) -> bytes:
    """What an axon signs to accept or refuse a session (`handshake_response_message`)."""
    return (_field(f"agora/{PROTOCOL_VERSION}/handshake/axon".encode()) + _field(request_hash) + _field(responder)
            + struct.pack("<q", code) + _field(message.encode()) + _field(ephemeral) + _field(session))


def request_message(path: str, nonce: int, timestamp_ms: int, body_len: int, digest: bytes) -> bytes:
    """What a call's MAC covers (`wire::auth::request_message`)."""
    return (_field(f"agora/{PROTOCOL_VERSION}/request".encode()) + _field(path.encode())
            + struct.pack("<QQ", nonce, timestamp_ms) + _field(DIGEST.encode()) + struct.pack("<Q", body_len)
            + _field(digest))


@dataclass(frozen=True)
class Session:
    """One end of a session (`wire::auth::session`): its id, the two hotkeys and the two MAC
    keys derived from the handshake."""

    id: bytes
    caller: bytes
    axon: bytes
    request_key: bytes = field(repr=False)
    response_key: bytes = field(repr=False)

    @staticmethod
    def derive(id: bytes, caller: bytes, axon: bytes, shared: bytes, response_message: bytes) -> "Session":
        ikm = shared + blake3(response_message).digest()
        return Session(id, caller, axon, blake3(ikm, derive_key_context=REQUEST_KEY_CONTEXT).digest(),
                       blake3(ikm, derive_key_context=RESPONSE_KEY_CONTEXT).digest())

    def request_mac(self, message: bytes) -> bytes:
        return blake3(message, key=self.request_key).digest()

    def response_mac(self, message: bytes) -> bytes:
        return blake3(message, key=self.response_key).digest()

    def credentials(self, path: str, nonce: int, timestamp_ms: int, body_len: int,
                    digest: bytes) -> tuple[list[tuple[str, str]], bytes]:
        """The metadata of a call in this session and its request hash (BLAKE3 of the MACed
        bytes), which the axon's answer must name."""
        pre = request_message(path, nonce, timestamp_ms, body_len, digest)
        return [
            ("agora-version", str(PROTOCOL_VERSION)),
            ("agora-session", self.id.hex()),
            ("agora-nonce", str(nonce)),
            ("agora-timestamp-ms", str(timestamp_ms)),
            ("agora-body-len", str(body_len)),
            ("agora-digest", f"{DIGEST}:{digest.hex()}"),
            ("agora-mac", self.request_mac(pre).hex()),
        ], blake3(pre).digest()


REQUEST_KEY_CONTEXT = "agora protocol 5 request mac"
RESPONSE_KEY_CONTEXT = "agora protocol 5 response mac"


def _x25519() -> tuple[Any, bytes]:
    """A fresh X25519 key pair: the private key and the raw 32-byte public key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    secret = X25519PrivateKey.generate()
    return secret, secret.public_key().public_bytes_raw()


def _agree(secret: Any, public: bytes) -> bytes:
    """X25519; ValueError for a low-order point (an all-zero result)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    shared = secret.exchange(X25519PublicKey.from_public_bytes(public))
    if shared == bytes(32):
        raise ValueError("the ephemeral key is a low-order point")
    return shared


class Initiator:
    """The dendrite's side of a handshake: its signed request and, from the axon's answer, the session."""

    def __init__(self, hotkey: Keypair, callee: bytes, timestamp_ms: int | None = None) -> None:
        self.secret, ephemeral = _x25519()
        self.caller, self.callee = hotkey.public, callee
        ts = _now_ms() if timestamp_ms is None else timestamp_ms
        pre = handshake_request_message(hotkey.public, callee, ephemeral, ts)
        self.request = pb.HandshakeRequest(caller=hotkey.public, callee=callee, ephemeral=ephemeral, timestamp_ms=ts,
                                           signature=hotkey.sign(pre))
        self.request_hash = blake3(pre).digest()

    def finish(self, response: "pb.HandshakeResponse") -> Session:
        """The session once the answer's signature verifies under the axon called; BadTensor
        with the axon's code for its (signed) refusal, INVALID_RESPONSE_SIGNATURE otherwise."""
        pre = handshake_response_message(self.request_hash, self.callee, response.code, response.message,
                                         response.ephemeral, response.session)
        if not verify_signature(self.callee, response.signature, pre):
            raise BadTensor(INVALID_RESPONSE_SIGNATURE, "the axon's handshake answer is not signed by the axon called")
        if response.code != SUCCESS:
            raise SignedRefusal(response.code, response.message)
        if len(response.session) != 16 or len(response.ephemeral) != 32:
            raise BadTensor(INVALID_RESPONSE_SIGNATURE, "the axon's handshake answer is malformed")
        try:
            shared = _agree(self.secret, response.ephemeral)
        except ValueError as e:
            raise BadTensor(INVALID_RESPONSE_SIGNATURE, f"the axon's handshake answer: {e}") from e
        return Session.derive(response.session, self.caller, self.callee, shared, pre)


class SignedRefusal(BadTensor):
    """The axon's own refusal of a session, signed by it: its code is the call's."""


@dataclass(frozen=True)
class Credentials:
    """What an axon read from a call's metadata."""

    session: bytes
    nonce: int
    timestamp_ms: int
    body_len: int
    digest: bytes
    mac: bytes

    def request_hash(self, path: str) -> bytes:
        """The request's identity for its answer: BLAKE3 of the bytes its MAC covers."""
        return blake3(request_message(path, self.nonce, self.timestamp_ms, self.body_len, self.digest)).digest()


def _sized(hex_value: Any, n: int, key: str) -> bytes:
    """`n` bytes from hex, or ValueError naming the key."""
    b = bytes.fromhex(str(hex_value))
    if len(b) != n:
        raise ValueError(f"{key}: {len(b)} bytes, expected {n}")
    return b


def _u64(value: Any, key: str) -> int:
    """A decimal u64 as Rust parses it (digits only, below 2^64), or ValueError naming the key."""
    text = str(value)
    if not text.isascii() or not text.isdigit() or int(text) >= 1 << 64:
        raise ValueError(f"{key}: {text[:32]!r} is not a u64")
    return int(text)


def check_version(metadata: Iterable[tuple[str, Any]]) -> None:
    """BadTensor UNSUPPORTED_VERSION unless the metadata says this protocol."""
    md = {k: v for k, v in metadata}
    version = md.get("agora-version")
    if version is None:
        raise BadTensor(UNSUPPORTED_VERSION, f"no agora-version: this axon speaks agora protocol {PROTOCOL_VERSION} (credentials in metadata)")
    if version != str(PROTOCOL_VERSION):
        hint = {"2": " (protocol 2 digested with sha256, no longer read)",
                "3": " (protocol 3 left responses unsigned, no longer spoken)",
                "4": " (protocol 4 signed every call with ed25519; 5 signs a handshake per connection and MACs each call)"}
        raise BadTensor(UNSUPPORTED_VERSION, f"agora-version {version!r} is not spoken here: this axon speaks {PROTOCOL_VERSION}{hint.get(str(version), '')}")


def read_credentials(metadata: Iterable[tuple[str, Any]]) -> Credentials:
    """Parses the metadata of a version-5 call (UNSUPPORTED_VERSION for another version or
    digest, INVALID_SIGNATURE for anything malformed)."""
    md = {k: v for k, v in metadata}
    check_version(md.items())
    try:
        alg, digest_hex = str(md["agora-digest"]).split(":", 1)
        if alg != DIGEST:
            raise BadTensor(UNSUPPORTED_VERSION, f"digest algorithm {alg!r} is not supported: this axon speaks {DIGEST}")
        return Credentials(
            session=_sized(md["agora-session"], 16, "agora-session"),
            nonce=_u64(md["agora-nonce"], "agora-nonce"),
            timestamp_ms=_u64(md["agora-timestamp-ms"], "agora-timestamp-ms"),
            body_len=_u64(md["agora-body-len"], "agora-body-len"),
            digest=_sized(digest_hex, 32, "agora-digest"),
            mac=_sized(md["agora-mac"], 32, "agora-mac"),
        )
    except (KeyError, ValueError) as e:
        if isinstance(e, BadTensor):
            raise
        raise BadTensor(INVALID_SIGNATURE, f"malformed credentials: {e!r}") from e


def _fresh(timestamp_ms: int, now_ms: int | None = None) -> None:
    now = _now_ms() if now_ms is None else now_ms
    if timestamp_ms < now - FRESHNESS_MS or timestamp_ms > now + MAX_FUTURE_MS:
        raise BadTensor(INVALID_SIGNATURE, f"stale or future timestamp ({timestamp_ms - now} ms from this axon's clock)")


def check_credentials(c: Credentials, session: Session, path: str, body: bytes, now_ms: int | None = None) -> None:
    """Freshness, body length and digest, then the MAC under `session` (the one `c` names)."""
    _fresh(c.timestamp_ms, now_ms)
    if c.body_len != len(body) or blake3(body).digest() != c.digest:
        raise BadTensor(INVALID_SIGNATURE, "the body does not match its authenticated length and digest")
    pre = request_message(path, c.nonce, c.timestamp_ms, c.body_len, c.digest)
    if not hmac.compare_digest(session.request_mac(pre), c.mac):
        raise BadTensor(INVALID_SIGNATURE, "the call's MAC does not verify under its session's key")


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
        now = _now_ms()
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


SESSIONS_PER_CALLER = 4


class SessionTable:
    """An axon's open sessions: at most `SESSIONS_PER_CALLER` per caller (its oldest dropped for
    its newest), `capacity` in all (the oldest dropped), each for `lifetime_s`."""

    def __init__(self, capacity: int = 1 << 16, lifetime_s: float = 3600.0) -> None:
        self.capacity, self.lifetime_s = capacity, lifetime_s
        self._sessions: OrderedDict[bytes, tuple[Session, float]] = OrderedDict()
        self._by_caller: dict[bytes, list[bytes]] = {}
        self._lock = threading.Lock()

    def _drop(self, id: bytes) -> None:
        entry = self._sessions.pop(id, None)
        if entry is not None:
            mine = self._by_caller.get(entry[0].caller, [])
            if id in mine:
                mine.remove(id)
            if not mine:
                self._by_caller.pop(entry[0].caller, None)

    def insert(self, session: Session) -> None:
        with self._lock:
            mine = self._by_caller.get(session.caller, [])
            while len(mine) >= SESSIONS_PER_CALLER:
                self._drop(mine[0])
            while len(self._sessions) >= self.capacity:
                self._drop(next(iter(self._sessions)))
            self._sessions[session.id] = (session, time.monotonic())
            self._by_caller.setdefault(session.caller, []).append(session.id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def get(self, id: bytes) -> Session | None:
        with self._lock:
            entry = self._sessions.get(id)
            if entry is None:
                return None
            if time.monotonic() - entry[1] >= self.lifetime_s:
                self._drop(id)
                return None
            return entry[0]


# ---------------------------------------------------------------- response MACs

NO_REQUEST = bytes(32)


@dataclass(frozen=True)
class ModelVersion:
    """Which model answered: 32 bytes naming its parameters (a hash of them) and its training
    step; all zero and 0 for "no model" (a refusal, or a handler that does not say)."""

    id: bytes = bytes(32)
    step: int = 0

    def __post_init__(self) -> None:
        if len(self.id) != 32 or not 0 <= self.step < 1 << 64:
            raise ValueError(f"a model version is 32 bytes and a u64 step, got {len(self.id)} bytes and {self.step}")

    @property
    def unversioned(self) -> bool:
        return self.id == bytes(32)

    def short(self) -> str:
        return self.id[:6].hex()


UNVERSIONED = ModelVersion()


@dataclass(frozen=True)
class Versioned:
    """What a handler returns to name the model that computed its answer: `Axon` MACs `model`
    into the response. A handler returning a bare array answers [`UNVERSIONED`]."""

    value: Any
    model: ModelVersion


def response_message(path: str, request_hash: bytes, body_len: int, digest: bytes, model: ModelVersion) -> bytes:
    """What an answer's MAC covers: its `body_len` message bytes with BLAKE3 `digest`, the
    request `request_hash` and the model (`wire::auth::response::response_message`)."""
    return (_field(f"agora/{PROTOCOL_VERSION}/response".encode()) + _field(path.encode()) + _field(request_hash)
            + _field(DIGEST.encode()) + struct.pack("<Q", body_len) + _field(digest)
            + _field(model.id) + struct.pack("<Q", model.step))


def seal_response(session: Session | None, path: str, request_hash: bytes, body: bytes,
                  model: ModelVersion = UNVERSIONED) -> list[tuple[str, str]]:
    """The initial metadata that MACs `body` (the exact response message bytes) in `session` as
    the answer to the request `request_hash`; the version alone without a session (a call
    whose credentials could not be read: the caller takes no such answer as the axon's)."""
    if session is None:
        return [("agora-version", str(PROTOCOL_VERSION))]
    digest = blake3(body).digest()
    mac = session.response_mac(response_message(path, request_hash, len(body), digest, model))
    return [
        ("agora-version", str(PROTOCOL_VERSION)),
        ("agora-model-version", model.id.hex()),
        ("agora-model-step", str(model.step)),
        ("agora-body-len", str(len(body))),
        ("agora-digest", f"{DIGEST}:{digest.hex()}"),
        ("agora-mac", mac.hex()),
    ]


def verify_response(metadata: Iterable[tuple[str, Any]] | None, path: str, session: Session, request_hash: bytes,
                    body: bytes) -> ModelVersion:
    """Checks that `body` was MACed in `session` (with the axon called) as the answer to the
    request `request_hash`; returns the model it names. BadTensor UNSUPPORTED_VERSION for an
    unauthenticated answer (protocol 3 or older) or another version, INVALID_RESPONSE_SIGNATURE
    for anything else wrong."""
    md = {k: v for k, v in (metadata or ())}
    version = md.get("agora-version")
    if version is None:
        raise BadTensor(UNSUPPORTED_VERSION, "the axon's response is not authenticated (no agora-version in its metadata): "
                        f"it speaks agora protocol 3 or older, this dendrite accepts only protocol {PROTOCOL_VERSION}'s authenticated responses")
    if str(version).strip() != str(PROTOCOL_VERSION):
        raise BadTensor(UNSUPPORTED_VERSION, f"the axon's response says agora-version {str(version)[:32]!r}; "
                        f"this dendrite speaks protocol {PROTOCOL_VERSION}")
    try:
        alg, digest_hex = str(md["agora-digest"]).split(":", 1)
        if alg != DIGEST:
            raise ValueError(f"agora-digest: algorithm {alg[:32]!r}, expected {DIGEST}")
        model = ModelVersion(_sized(md["agora-model-version"], 32, "agora-model-version"),
                             _u64(md["agora-model-step"], "agora-model-step"))
        body_len = _u64(md["agora-body-len"], "agora-body-len")
        digest = _sized(digest_hex, 32, "agora-digest")
        mac = _sized(md["agora-mac"], 32, "agora-mac")
    except (KeyError, ValueError) as e:
        raise BadTensor(INVALID_RESPONSE_SIGNATURE, f"the axon's response metadata: {e!r}") from e
    if body_len != len(body):
        raise BadTensor(INVALID_RESPONSE_SIGNATURE, f"the response body is {len(body)} bytes, its MAC says {body_len}")
    if blake3(body).digest() != digest:
        raise BadTensor(INVALID_RESPONSE_SIGNATURE, "the response body's digest does not match the authenticated agora-digest")
    if not hmac.compare_digest(session.response_mac(response_message(path, request_hash, body_len, digest, model)), mac):
        raise BadTensor(INVALID_RESPONSE_SIGNATURE, "the response MAC does not verify for this session, request, body and model version")
    return model


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
    before parsing it, and serializes its answer itself, so it MACs exactly what it sends. A
    handler returning [`Versioned`]`(value, model)` names the model that answered in the
    response's MAC; a bare value names none ([`UNVERSIONED`]).

    `stakes`: when given, a caller the table does not know is refused (`UNKNOWN_CALLER`) unless
    its hotkey is in `trusted` or `allow_unregistered`; without it every caller with a session
    is served (there is nothing to check it against).
    """

    def __init__(self, hotkey: Keypair, forward: ForwardFn, backward: BackwardFn | None = None,
                 stakes: StakeTable | None = None, trusted: Iterable[bytes] = (),
                 allow_unregistered: bool = False) -> None:
        self.hotkey, self.forward_fn, self.backward_fn = hotkey, forward, backward
        self.stakes, self.trusted, self.allow_unregistered = stakes, {bytes(t) for t in trusted}, allow_unregistered
        self.replays = ReplayCache()
        self.sessions = SessionTable()
        self.stats = AxonStats()
        self.server: Any = None
        self.port: int | None = None

    def _standing(self, caller: bytes) -> Caller:
        """The caller's stake, or UNKNOWN_CALLER: at the handshake and again at every call."""
        stake = self.stakes.get(caller) if self.stakes is not None else 0
        if stake is None:
            if caller in self.trusted or self.allow_unregistered:
                stake = 0
            else:
                raise BadTensor(UNKNOWN_CALLER, f"caller {caller.hex()[:16]}.. is not registered on the chain")
        return Caller(caller, int(stake))

    def _admit(self, c: Credentials, session: Session, path: str, body: bytes) -> Caller:
        check_credentials(c, session, path, body)
        caller = self._standing(session.caller)
        if not self.replays.check_and_insert(session.caller, c.nonce, c.timestamp_ms):
            raise BadTensor(INVALID_SIGNATURE, f"nonce {c.nonce} was already used by this caller: a replay")
        return caller

    def Handshake(self, body: bytes, context: Any) -> bytes:
        """Opens a session (protocol 5): the caller's standing, callee, freshness and signature,
        then fresh X25519 keys; a signed answer, refusals included."""
        request_hash, code, message, ephemeral, session_id = NO_REQUEST, SUCCESS, "", b"", b""
        try:
            check_version(context.invocation_metadata())
            try:
                req = pb.HandshakeRequest.FromString(body)
            except Exception as e:  # noqa: BLE001 - protobuf's DecodeError
                raise BadTensor(REQUEST_SHAPE_ERROR, f"the handshake is not a valid message: {e!r}") from e
            if len(req.caller) != 32 or len(req.callee) != 32 or len(req.ephemeral) != 32 or len(req.signature) != 64:
                raise BadTensor(INVALID_SIGNATURE, "malformed handshake: caller, callee, ephemeral 32 bytes, signature 64")
            pre = handshake_request_message(req.caller, req.callee, req.ephemeral, req.timestamp_ms)
            request_hash = blake3(pre).digest()
            self._standing(req.caller)
            if req.callee != self.hotkey.public:
                raise BadTensor(INVALID_SIGNATURE, "the handshake is addressed to another axon")
            _fresh(req.timestamp_ms)
            if not verify_signature(req.caller, req.signature, pre):
                raise BadTensor(INVALID_SIGNATURE, "the handshake's signature does not verify for its caller")
            secret, ephemeral = _x25519()
            try:
                shared = _agree(secret, req.ephemeral)
            except ValueError as e:
                raise BadTensor(INVALID_SIGNATURE, str(e)) from e
            session_id = os.urandom(16)
        except BadTensor as e:
            code, message, ephemeral, session_id = e.code, str(e), b"", b""
        answer = handshake_response_message(request_hash, self.hotkey.public, code, message, ephemeral, session_id)
        if code == SUCCESS:
            self.sessions.insert(Session.derive(session_id, req.caller, self.hotkey.public, shared, answer))
        else:
            self.stats.record("Forward", code, None)
        return pb.HandshakeResponse(code=code, message=message, ephemeral=ephemeral, session=session_id,
                                    signature=self.hotkey.sign(answer)).SerializeToString()

    @staticmethod
    def _check_output(y: Any, inputs: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(np.asarray(y, dtype="<f4"))
        if out.ndim != 3 or out.shape[:2] != inputs.shape[:2]:
            raise BadTensor(INTERNAL_ERROR, f"the model answered shape {list(out.shape)}, expected [{inputs.shape[0]}, {inputs.shape[1]}, dim]")
        if not np.isfinite(out).all():
            raise BadTensor(INTERNAL_ERROR, "the model answered NaN or Inf")
        return out

    def _answer(self, path: str, body: bytes, context: Any,
                handle: Callable[[Caller], tuple[Any, ModelVersion]]) -> bytes:
        """One call: admit, `handle` (-> response message, model), then the message serialized
        here and MACed over exactly those bytes in the call's session (protocol 5), the seal
        sent as the initial metadata. A refusal is MACed too, naming no model. A call naming a
        session this axon does not hold is aborted UNAUTHENTICATED: the dendrite opens another."""
        import grpc

        reply = pb.ForwardResponse if path == PATH_FORWARD else pb.BackwardResponse
        creds: Credentials | None = None
        session: Session | None = None
        try:
            creds = read_credentials(context.invocation_metadata())
            request_hash = creds.request_hash(path)
            session = self.sessions.get(creds.session)
        except BadTensor as e:
            unreadable, request_hash = e, NO_REQUEST
        if creds is not None and session is None:
            self.stats.record(path.rsplit("/", 1)[1], INVALID_SIGNATURE, None)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown or expired agora-session: open a new session (protocol 5 handshake)")
        caller, model = None, UNVERSIONED
        try:
            if path == PATH_BACKWARD and self.backward_fn is None:
                raise BadTensor(NOT_IMPLEMENTED, "this axon does not take gradients")
            if creds is None or session is None:
                raise unreadable
            caller = self._admit(creds, session, path, body)
            resp, model = handle(caller)
        except BadTensor as e:
            resp = reply(code=e.code, message=str(e))
        except Exception as e:  # noqa: BLE001 - the model failed: tell the caller, keep serving
            resp = reply(code=INTERNAL_ERROR, message=repr(e))
        if resp.code != SUCCESS:
            model = UNVERSIONED
        self.stats.record(path.rsplit("/", 1)[1], resp.code, caller.hotkey if caller else None)
        out = resp.SerializeToString()
        self._send_seal(context, path, session, request_hash, out, model)
        return out

    def _send_seal(self, context: Any, path: str, session: Session | None, request_hash: bytes, body: bytes,
                   model: ModelVersion) -> None:
        context.send_initial_metadata(seal_response(session, path, request_hash, body, model))

    @staticmethod
    def _unwrap(answer: Any) -> tuple[Any, ModelVersion]:
        if isinstance(answer, Versioned):
            return answer.value, answer.model
        return answer, UNVERSIONED

    def Forward(self, body: bytes, context: Any) -> bytes:
        def handle(caller: Caller) -> tuple[Any, ModelVersion]:
            x = from_wire(pb.ForwardRequest.FromString(body).inputs)
            y, model = self._unwrap(self.forward_fn(x, caller))
            return pb.ForwardResponse(outputs=to_wire(self._check_output(y, x)), code=SUCCESS), model

        return self._answer(PATH_FORWARD, body, context, handle)

    def Backward(self, body: bytes, context: Any) -> bytes:
        def handle(caller: Caller) -> tuple[Any, ModelVersion]:
            request = pb.BackwardRequest.FromString(body)
            assert self.backward_fn is not None  # _answer refused NOT_IMPLEMENTED
            g, model = self._unwrap(self.backward_fn(from_wire(request.inputs), from_wire(request.grads), caller))
            grads = None if g is None else to_wire(np.asarray(g, dtype="<f4"))
            return pb.BackwardResponse(grads=grads, code=SUCCESS), model

        return self._answer(PATH_BACKWARD, body, context, handle)

    def start(self, addr: str = "127.0.0.1:0", workers: int = 4) -> int:
        """Listens on `addr` (port 0: any free port); returns the port."""
        import grpc

        handlers = {
            # Raw bytes both ways: the request is digested as sent, the response as signed.
            "Forward": grpc.unary_unary_rpc_method_handler(self.Forward, request_deserializer=None, response_serializer=None),
            "Backward": grpc.unary_unary_rpc_method_handler(self.Backward, request_deserializer=None, response_serializer=None),
            "Handshake": grpc.unary_unary_rpc_method_handler(self.Handshake, request_deserializer=None, response_serializer=None),
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
    """One target's answer: its return code, the axon's message, the tensor on success, the
    round trip in seconds, and the model the axon's verified MAC names (UNVERSIONED for a
    refusal; None when no authenticated answer was verified)."""

    code: Code
    message: str
    tensor: np.ndarray | None
    latency: float
    model: ModelVersion | None = None

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS and self.tensor is not None

    def __repr__(self) -> str:
        shape = None if self.tensor is None else list(self.tensor.shape)
        return f"Response({code_name(self.code)}, {self.message!r}, shape={shape}, {self.latency * 1000:.1f} ms)"


def _left(deadline: float) -> float:
    """Seconds left until `deadline` (a `time.perf_counter()` instant), at least a millisecond:
    gRPC takes no zero timeout."""
    return max(1e-3, deadline - time.perf_counter())


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
    reused, each with its session per axon hotkey (protocol 5: opened by a signed handshake on
    first use, opened again when the axon answers UNAUTHENTICATED); `close()` drops them.
    Thread-safe."""

    def __init__(self, hotkey: Keypair) -> None:
        import grpc

        self._hotkey = hotkey
        self._grpc = grpc
        self._channels: dict[str, Any] = {}
        self._sessions: dict[tuple[str, bytes], Session] = {}
        self._lock = threading.Lock()
        self._handshaking: dict[tuple[str, bytes], threading.Lock] = {}
        # Nonces increase across restarts (they start at the clock in nanoseconds), so an
        # axon's replay cache never confuses two runs.
        self._nonce = time.time_ns()

    @property
    def hotkey(self) -> Keypair:
        return self._hotkey

    def next_nonce(self) -> int:
        with self._lock:
            self._nonce += 1
            return self._nonce

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
            self._sessions.clear()

    def session(self, endpoint: str, axon: bytes, timeout: float = 12.0, stale: Session | None = None) -> Session:
        """The session with the axon `axon` at `endpoint`: the open one, or a new one (also when
        the open one is `stale`). BadTensor with the code when none can be opened (the axon's
        signed refusal, UNSUPPORTED_VERSION from an axon older than protocol 5, ...);
        grpc.RpcError for a transport failure."""
        key = (endpoint, axon)
        with self._lock:
            gate = self._handshaking.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                open_ = self._sessions.get(key)
                if open_ is not None and open_ != stale:
                    return open_
                self._sessions.pop(key, None)
            return self._opened(key, *self._handshake(endpoint, axon, timeout))

    def _handshake(self, endpoint: str, axon: bytes, timeout: float) -> tuple[Initiator, Any]:
        """A handshake under way: its initiator and the call's future."""
        initiator = Initiator(self._hotkey, axon)
        rpc = self._channel(endpoint).unary_unary(PATH_HANDSHAKE, request_serializer=None, response_deserializer=None)
        fut = rpc.future(initiator.request.SerializeToString(), timeout=timeout,
                         metadata=[("agora-version", str(PROTOCOL_VERSION))])
        return initiator, fut

    def _opened(self, key: tuple[str, bytes], initiator: Initiator, fut: Any) -> Session:
        """The session a handshake under way opens, kept for `key`; raises as [`session`]."""
        try:
            raw = fut.result()
        except self._grpc.RpcError as e:
            if e.code() == self._grpc.StatusCode.UNIMPLEMENTED:
                raise BadTensor(UNSUPPORTED_VERSION, f"the axon has no Handshake method ({e.details()}): it speaks an agora protocol older than {PROTOCOL_VERSION}") from e
            raise
        try:
            answer = pb.HandshakeResponse.FromString(raw)
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError
            raise BadTensor(RESPONSE_SHAPE_ERROR, f"the axon's handshake does not decode: {e!r}") from e
        opened = initiator.finish(answer)
        with self._lock:
            self._sessions[key] = opened
        return opened

    def _refused(self, e: Exception, started: float) -> Response:
        """A target's failure before its call went out, as its Response."""
        took = time.perf_counter() - started
        if isinstance(e, SignedRefusal):
            # The axon's own refusal of the session: its code, naming no model.
            return Response(e.code, str(e), None, took, UNVERSIONED)
        if isinstance(e, BadTensor):
            return Response(e.code, str(e), None, took)
        if isinstance(e, self._grpc.RpcError):
            return Response(_status_code(e.code()), f"gRPC {e.code().name}: {e.details()}", None, took)
        return Response(UNAVAILABLE, f"cannot call: {e!r}", None, took)

    def _start(self, target: Target, path: str, body: bytes, digest: bytes, timeout: float,
               metadata: list[tuple[str, str]] | None, stale: Session | None = None) -> tuple[Any, bytes, Session]:
        """The call under way (its response as raw bytes, so their digest is checked against
        the axon's MAC), the hash of its request, which that MAC must name, and the session.
        With `metadata` given, the request hash is the one an axon derives from it."""
        session = self.session(target.endpoint, target.hotkey, timeout, stale)
        rpc = self._channel(target.endpoint).unary_unary(path, request_serializer=None, response_deserializer=None)
        if metadata is None:
            md, request_hash = session.credentials(path, self.next_nonce(), _now_ms(), len(body), digest)
        else:
            md = metadata
            try:
                request_hash = read_credentials(md).request_hash(path)
            except BadTensor:
                request_hash = NO_REQUEST
        return rpc.future(body, timeout=timeout, metadata=md), request_hash, session

    def _verified(self, fut: Any, path: str, session: Session, request_hash: bytes) -> tuple[Any, ModelVersion]:
        """The response message once the axon's MAC on its bytes checks out (BadTensor with the
        code otherwise; grpc.RpcError for a transport failure)."""
        raw = fut.result()
        model = verify_response(fut.initial_metadata(), path, session, request_hash, raw)
        reply = pb.ForwardResponse if path == PATH_FORWARD else pb.BackwardResponse
        try:
            return reply.FromString(raw), model
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError
            raise BadTensor(RESPONSE_SHAPE_ERROR, f"the axon's response does not decode: {e!r}") from e

    def _settled(self, target: Target, path: str, body: bytes, digest: bytes, deadline: float,
                 call: tuple[Any, bytes, Session]) -> tuple[Any, ModelVersion]:
        """`call`'s verified answer; once more in a new session if the axon no longer holds it,
        within what is left until `deadline` (a `time.perf_counter()` instant)."""
        fut, request_hash, session = call
        try:
            return self._verified(fut, path, session, request_hash)
        except self._grpc.RpcError as e:
            if e.code() != self._grpc.StatusCode.UNAUTHENTICATED:
                raise
        fut, request_hash, session = self._start(target, path, body, digest, _left(deadline), None, stale=session)
        return self._verified(fut, path, session, request_hash)

    def _finish(self, target: Target, path: str, body: bytes, digest: bytes, deadline: float,
                call: tuple[Any, bytes, Session], expect: tuple[int, int] | None, started: float) -> Response:
        try:
            msg, model = self._settled(target, path, body, digest, deadline, call)
        except self._grpc.RpcError as e:
            return Response(_status_code(e.code()), f"gRPC {e.code().name}: {e.details()}", None, time.perf_counter() - started)
        except BadTensor as e:
            return Response(e.code, str(e), None, time.perf_counter() - started)
        except Exception as e:  # noqa: BLE001 - a dendrite never raises out of a call
            return Response(INTERNAL_ERROR, repr(e), None, time.perf_counter() - started)
        latency = time.perf_counter() - started
        if msg.code != SUCCESS:
            return Response(msg.code, msg.message, None, latency, model)
        field_name = "outputs" if path == PATH_FORWARD else "grads"
        if not msg.HasField(field_name):
            if path == PATH_BACKWARD:
                return Response(SUCCESS, msg.message, None, latency, model)
            return Response(RESPONSE_SHAPE_ERROR, "a successful Forward without outputs", None, latency, model)
        try:
            t = from_wire(getattr(msg, field_name), request=False)
        except BadTensor as e:
            return Response(e.code, f"the axon's response: {e}", None, latency, model)
        if expect is not None and (t.ndim != 3 or t.shape[:2] != expect):
            return Response(RESPONSE_SHAPE_ERROR, f"the axon's response has shape {list(t.shape)}, expected [batch, seq] = {list(expect)}", None, latency, model)
        return Response(SUCCESS, msg.message, t, latency, model)

    def _fan_out(self, targets: Sequence[Target], path: str, bodies: Sequence[bytes], timeout: float,
                 expect: tuple[int, int] | None) -> list[Response]:
        started = time.perf_counter()
        # One deadline for the whole fan-out, handshakes included.
        deadline = started + timeout
        with self._lock:
            fresh = [(t.endpoint, t.hotkey) not in self._sessions for t in targets]
        # A target without a session handshakes on a thread of its own and starts its call from
        # there, so a silent axon delays no other target's call.
        pool = futures.ThreadPoolExecutor(max_workers=sum(fresh)) if any(fresh) else None
        pending: list[tuple[Target, bytes, bytes, Any, Any, Exception | None]] = []
        digests: dict[int, bytes] = {}
        for target, body, new in zip(targets, bodies, fresh):
            # One digest per distinct body: a fan-out of one batch hashes it once.
            d = digests.get(id(body))
            if d is None:
                d = digests[id(body)] = blake3(body).digest()

            def start(target: Target = target, body: bytes = body, d: bytes = d) -> tuple[Any, bytes, Session]:
                return self._start(target, path, body, d, _left(deadline), None)

            if pool is not None and new:
                pending.append((target, body, d, None, pool.submit(start), None))
                continue
            try:
                pending.append((target, body, d, start(), None, None))
            except Exception as e:  # noqa: BLE001 - that target's failure
                pending.append((target, body, d, None, None, e))
        # (A grpc future is itself an Exception subclass: failures travel beside it, not as it.)
        out = []
        for target, body, d, call, starting, failed in pending:
            if starting is not None:
                try:
                    call = starting.result()
                except Exception as e:  # noqa: BLE001 - that target's failure
                    failed = e
            if failed is not None:
                out.append(self._refused(failed, started))
            else:
                out.append(self._finish(target, path, body, d, deadline, call, expect, started))
        if pool is not None:
            pool.shutdown(wait=False)
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
             metadata: list[tuple[str, str]] | None = None, check: bool = True) -> Any:
        """A raw call of `request` (a message or its bytes) in the dendrite's session with the
        axon, returning the response message once the axon's MAC on it verifies; `metadata`
        replaces the credentials (for tests of refusals: the answer must then name the request
        an axon reads from them). Raises grpc.RpcError on a transport failure (UNAUTHENTICATED
        for a session the axon does not hold) and BadTensor (INVALID_RESPONSE_SIGNATURE,
        UNSUPPORTED_VERSION, or the axon's refusal of the session) on an answer not
        authenticated as the axon's: use `forward`/`backward` for calls that never raise.
        `check=False` returns the answer unverified: what an axon says to credentials it could
        not read (an old protocol's), which it cannot MAC."""
        body = request if isinstance(request, bytes) else request.SerializeToString()
        fut, request_hash, session = self._start(Target(endpoint, axon_hotkey), path, body, blake3(body).digest(), timeout, metadata)
        if not check:
            reply = pb.ForwardResponse if path == PATH_FORWARD else pb.BackwardResponse
            return reply.FromString(fut.result())
        return self._verified(fut, path, session, request_hash)[0]
