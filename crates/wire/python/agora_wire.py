"""A Python peer for Agora's wire protocol, version 3 (crates/wire/proto/agora.proto, package
agora.v1).

Needs: grpcio, grpcio-tools (stub generation), numpy, cryptography (ed25519), blake3. No torch: a
PyTorch model converts with `tensor.detach().numpy()` / `torch.from_numpy(array)`.

Every call carries its credentials as gRPC metadata (see crates/wire/src/auth.rs), so an axon
checks them before it reads the body:

    agora-version       "3"
    agora-caller        hex of the caller's 32-byte public hotkey
    agora-callee        hex of the axon's 32-byte public hotkey
    agora-nonce         decimal u64, unique per caller within 30 s
    agora-timestamp-ms  decimal u64, ms since the Unix epoch (at most 2 s ahead of the axon)
    agora-body-len      decimal length of the request message bytes as sent
    agora-digest        "blake3:" + hex(blake3(those bytes)), the 32-byte default output
    agora-signature     hex of ed25519_sign(seed, preimage)

    preimage = field(b"agora/3") || field(path) || field(caller) || field(callee)
               || u64le(nonce) || u64le(timestamp_ms)
               || field(b"blake3") || u64le(body_len) || field(digest)
    field(x) = u64le(len(x)) || x;  path = b"/agora.v1.Axon/Forward" or b"/agora.v1.Axon/Backward"

The digest covers the exact bytes sent, so this module serializes each request once and sends
those bytes (no canonical re-encoding needed). An axon refuses timestamps more than 30 s old or
2 s ahead, repeated (caller, nonce) pairs, and a call without `agora-version`
(RETURN_CODE_UNSUPPORTED_VERSION), as is protocol 2 (the same with sha256 digests).
"""

from __future__ import annotations

import importlib
import os
import struct
import sys
import tempfile
import time
from concurrent import futures

import numpy as np
from blake3 import blake3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "proto")

PROTOCOL_VERSION = 3
DIGEST = "blake3"
PATH_FORWARD = "/agora.v1.Axon/Forward"
PATH_BACKWARD = "/agora.v1.Axon/Backward"


def load_stubs(out_dir: str | None = None):
    """Generates agora_pb2 / agora_pb2_grpc from the published .proto with grpcio-tools into
    `out_dir` (a fresh temporary directory by default) and imports them."""
    from grpc_tools import protoc

    out_dir = out_dir or tempfile.mkdtemp(prefix="agora-stubs-")
    args = ["protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", "agora.proto"]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO_DIR}/agora.proto")
    sys.path.insert(0, out_dir)
    return importlib.import_module("agora_pb2"), importlib.import_module("agora_pb2_grpc")


pb, pb_grpc = load_stubs(os.environ.get("AGORA_STUBS"))

# dtype <-> numpy; every element little-endian on the wire.
DTYPES = {
    pb.DTYPE_F32: np.dtype("<f4"),
    pb.DTYPE_F16: np.dtype("<f2"),
    pb.DTYPE_I64: np.dtype("<i8"),
    pb.DTYPE_U8: np.dtype("u1"),
}
NP_TO_DTYPE = {v: k for k, v in DTYPES.items()}
RANK = {pb.MODALITY_TEXT: 2, pb.MODALITY_IMAGE: 5, pb.MODALITY_TENSOR: 3}


def to_wire(array: np.ndarray, modality=None) -> "pb.Tensor":
    """numpy -> Tensor. Modality defaults to TENSOR for floats, TEXT for integers."""
    array = np.ascontiguousarray(array)
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    code = NP_TO_DTYPE[np.dtype(dtype)]
    if modality is None:
        modality = pb.MODALITY_TENSOR if array.dtype.kind == "f" else pb.MODALITY_TEXT
    return pb.Tensor(data=array.astype(dtype, copy=False).tobytes(), dtype=code, shape=list(array.shape),
                     modality=modality)


class BadTensor(ValueError):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def from_wire(t: "pb.Tensor", max_bytes: int = 64 << 20) -> np.ndarray:
    """Tensor -> numpy, refusing what the Rust decoder refuses (same codes)."""
    if len(t.data) > max_bytes:
        raise BadTensor(pb.RETURN_CODE_REQUEST_SHAPE_ERROR, f"{len(t.data)} bytes exceeds {max_bytes}")
    if t.dtype not in DTYPES:
        raise BadTensor(pb.RETURN_CODE_REQUEST_DTYPE_ERROR, f"unsupported dtype {t.dtype}")
    if RANK.get(t.modality) != len(t.shape):
        raise BadTensor(pb.RETURN_CODE_REQUEST_SHAPE_ERROR, f"modality {t.modality} with shape {list(t.shape)}")
    dt = DTYPES[t.dtype]
    n = 1
    for d in t.shape:
        n *= d
    if n == 0 or n * dt.itemsize != len(t.data):
        raise BadTensor(pb.RETURN_CODE_REQUEST_SHAPE_ERROR,
                        f"shape {list(t.shape)} needs {n * dt.itemsize} bytes, data has {len(t.data)}")
    array = np.frombuffer(t.data, dtype=dt).reshape(tuple(t.shape))
    if dt.kind == "f" and not np.isfinite(array).all():
        raise BadTensor(pb.RETURN_CODE_NON_FINITE, "NaN or Inf in tensor")
    return array


def _field(x: bytes) -> bytes:
    return struct.pack("<Q", len(x)) + x


def signing_message(path: str, caller: bytes, callee: bytes, nonce: int, timestamp_ms: int, body: bytes,
                    version: int = PROTOCOL_VERSION) -> bytes:
    """The bytes a caller signs for a call of `body` (the request message bytes as sent)."""
    return (_field(f"agora/{version}".encode()) + _field(path.encode()) + _field(caller) + _field(callee)
            + struct.pack("<QQ", nonce, timestamp_ms) + _field(DIGEST.encode()) + struct.pack("<Q", len(body))
            + _field(blake3(body).digest()))


class Hotkey:
    """An ed25519 hotkey from a 32-byte seed (the same seed gives the same key in Rust)."""

    def __init__(self, seed: bytes):
        self.private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._nonce = time.time_ns()

    @classmethod
    def from_agora_wallet(cls, wallet: str, hotkey: str, root: str | None = None) -> "Hotkey":
        """Loads hotkey `hotkey` of wallet `wallet` as `agora wallet new` wrote it
        (`~/.agora/wallets/<wallet>/hotkeys/<hotkey>`, JSON with the hex seed in `secret_key`)."""
        import json

        root = root or os.path.join(os.path.expanduser("~"), ".agora", "wallets")
        with open(os.path.join(root, wallet, "hotkeys", hotkey)) as f:
            return cls(bytes.fromhex(json.load(f)["secret_key"]))

    def next_nonce(self) -> int:
        self._nonce += 1
        return self._nonce

    def credentials(self, path: str, callee: bytes, body: bytes) -> list[tuple[str, str]]:
        """The metadata that signs a call of `body` (request message bytes) to `callee`."""
        nonce, ts = self.next_nonce(), int(time.time() * 1000)
        signature = self.private.sign(signing_message(path, self.public, callee, nonce, ts, body))
        return [
            ("agora-version", str(PROTOCOL_VERSION)),
            ("agora-caller", self.public.hex()),
            ("agora-callee", callee.hex()),
            ("agora-nonce", str(nonce)),
            ("agora-timestamp-ms", str(ts)),
            ("agora-body-len", str(len(body))),
            ("agora-digest", f"{DIGEST}:" + blake3(body).hexdigest()),
            ("agora-signature", signature.hex()),
        ]


def verify(metadata, path: str, body: bytes, me: bytes, window_ms: int = 30_000, max_future_ms: int = 2_000) -> bytes:
    """Checks a call's version, callee, freshness, body digest and signature from its metadata
    and raw body bytes; returns the caller's hotkey. (A long-running axon should also remember
    (caller, nonce) pairs to refuse replays.)"""
    md = {k: v for k, v in metadata}
    if "agora-version" not in md:
        raise BadTensor(pb.RETURN_CODE_UNSUPPORTED_VERSION,
                        f"no agora-version: this axon speaks agora protocol {PROTOCOL_VERSION} (credentials in metadata)")
    if md["agora-version"] != str(PROTOCOL_VERSION):
        raise BadTensor(pb.RETURN_CODE_UNSUPPORTED_VERSION,
                        f"agora-version {md['agora-version']!r} is not spoken here: this axon speaks {PROTOCOL_VERSION}")
    try:
        caller, callee = bytes.fromhex(md["agora-caller"]), bytes.fromhex(md["agora-callee"])
        nonce, ts = int(md["agora-nonce"]), int(md["agora-timestamp-ms"])
        body_len, (alg, digest) = int(md["agora-body-len"]), md["agora-digest"].split(":", 1)
        signature = bytes.fromhex(md["agora-signature"])
    except (KeyError, ValueError) as e:
        raise BadTensor(pb.RETURN_CODE_INVALID_SIGNATURE, f"malformed credentials: {e!r}") from e
    if alg != DIGEST:
        raise BadTensor(pb.RETURN_CODE_UNSUPPORTED_VERSION, f"digest algorithm {alg!r} is not supported")
    if callee != me:
        raise BadTensor(pb.RETURN_CODE_INVALID_SIGNATURE, "addressed to another axon")
    now = int(time.time() * 1000)
    if ts < now - window_ms or ts > now + max_future_ms:
        raise BadTensor(pb.RETURN_CODE_INVALID_SIGNATURE, "stale or future timestamp")
    if body_len != len(body) or blake3(body).hexdigest() != digest:
        raise BadTensor(pb.RETURN_CODE_INVALID_SIGNATURE, "the body does not match its signed length and digest")
    try:
        Ed25519PublicKey.from_public_bytes(caller).verify(signature, signing_message(path, caller, callee, nonce, ts, body))
    except Exception as e:  # noqa: BLE001 - any failure is a bad signature
        raise BadTensor(pb.RETURN_CODE_INVALID_SIGNATURE, f"bad signature: {e}") from e
    return caller


class AxonServicer:
    """Serves `forward(inputs) -> outputs` and optionally `backward(inputs, grads) -> grads or
    None`, numpy in and out. Outputs must be float [batch, seq, dim]. Takes the raw request
    bytes (no deserializer), so it digests exactly what was sent before parsing it."""

    def __init__(self, hotkey: Hotkey, forward, backward=None):
        self.hotkey, self.forward_fn, self.backward_fn = hotkey, forward, backward

    def Forward(self, body: bytes, context):
        try:
            verify(context.invocation_metadata(), PATH_FORWARD, body, self.hotkey.public)
            request = pb.ForwardRequest.FromString(body)
            y = self.forward_fn(from_wire(request.inputs))
            return pb.ForwardResponse(outputs=to_wire(np.asarray(y, dtype="<f4")), code=pb.RETURN_CODE_SUCCESS)
        except BadTensor as e:
            return pb.ForwardResponse(code=e.code, message=str(e))
        except Exception as e:  # noqa: BLE001 - the model failed; tell the caller, keep serving
            return pb.ForwardResponse(code=pb.RETURN_CODE_INTERNAL_ERROR, message=repr(e))

    def Backward(self, body: bytes, context):
        if self.backward_fn is None:
            return pb.BackwardResponse(code=pb.RETURN_CODE_NOT_IMPLEMENTED, message="no backward")
        try:
            verify(context.invocation_metadata(), PATH_BACKWARD, body, self.hotkey.public)
            request = pb.BackwardRequest.FromString(body)
            g = self.backward_fn(from_wire(request.inputs), from_wire(request.grads))
            grads = None if g is None else to_wire(np.asarray(g, dtype="<f4"))
            return pb.BackwardResponse(grads=grads, code=pb.RETURN_CODE_SUCCESS)
        except BadTensor as e:
            return pb.BackwardResponse(code=e.code, message=str(e))
        except Exception as e:  # noqa: BLE001
            return pb.BackwardResponse(code=pb.RETURN_CODE_INTERNAL_ERROR, message=repr(e))

    def generic_handler(self):
        import grpc

        handlers = {
            "Forward": grpc.unary_unary_rpc_method_handler(
                self.Forward, request_deserializer=None, response_serializer=pb.ForwardResponse.SerializeToString),
            "Backward": grpc.unary_unary_rpc_method_handler(
                self.Backward, request_deserializer=None, response_serializer=pb.BackwardResponse.SerializeToString),
        }
        return grpc.method_handlers_generic_handler("agora.v1.Axon", handlers)


MAX_MESSAGE = 2 * (64 << 20) + (64 << 10)
OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]


def serve(hotkey: Hotkey, forward, backward=None, addr: str = "127.0.0.1:0", workers: int = 4):
    """Starts a Python axon; returns (server, port)."""
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=OPTIONS)
    server.add_generic_rpc_handlers((AxonServicer(hotkey, forward, backward).generic_handler(),))
    port = server.add_insecure_port(addr)
    server.start()
    return server, port


class Dendrite:
    """Calls Rust (or any) axons. `forward` returns (code, message, numpy or None)."""

    def __init__(self, hotkey: Hotkey):
        import grpc

        self.hotkey, self.grpc, self.channels = hotkey, grpc, {}

    def _channel(self, endpoint: str):
        if endpoint not in self.channels:
            self.channels[endpoint] = self.grpc.insecure_channel(endpoint, options=OPTIONS)
        return self.channels[endpoint]

    def call(self, endpoint: str, axon_hotkey: bytes, path: str, request, timeout: float = 12.0, metadata=None):
        """Sends `request` (a message, or its bytes) signed for `axon_hotkey`; `metadata`
        replaces the credentials when given (tests of refusals). Returns the response message."""
        body = request if isinstance(request, bytes) else request.SerializeToString()
        reply = pb.ForwardResponse if path == PATH_FORWARD else pb.BackwardResponse
        rpc = self._channel(endpoint).unary_unary(path, request_serializer=None, response_deserializer=reply.FromString)
        md = self.hotkey.credentials(path, axon_hotkey, body) if metadata is None else metadata
        return rpc(body, timeout=timeout, metadata=md)

    def forward(self, endpoint: str, axon_hotkey: bytes, inputs: np.ndarray, timeout: float = 12.0, modality=None):
        req = pb.ForwardRequest(inputs=to_wire(inputs, modality))
        resp = self.call(endpoint, axon_hotkey, PATH_FORWARD, req, timeout)
        out = from_wire(resp.outputs) if resp.code == pb.RETURN_CODE_SUCCESS else None
        return resp.code, resp.message, out

    def backward(self, endpoint: str, axon_hotkey: bytes, inputs: np.ndarray, grads: np.ndarray, timeout=12.0):
        req = pb.BackwardRequest(inputs=to_wire(inputs), grads=to_wire(grads))
        resp = self.call(endpoint, axon_hotkey, PATH_BACKWARD, req, timeout)
        out = from_wire(resp.grads) if resp.code == pb.RETURN_CODE_SUCCESS and resp.HasField("grads") else None
        return resp.code, resp.message, out
