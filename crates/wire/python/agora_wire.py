"""A Python peer for Agora's wire protocol (crates/wire/proto/agora.proto, package agora.v1).

Needs: grpcio, grpcio-tools (stub generation), numpy, cryptography (ed25519). No torch: a
PyTorch model converts with `tensor.detach().numpy()` / `torch.from_numpy(array)`.

The signature a caller puts on each request (see crates/wire/src/auth.rs):

    body    = the request's protobuf encoding with `signature` empty (proto3 default encoding:
              fields in number order, defaults omitted -- what SerializeToString emits)
    message = sha256( u64le(len(domain)) || domain
                    || u64le(len(callee)) || callee
                    || u64le(nonce) || u64le(timestamp_ms)
                    || sha256(body) )
    signature = ed25519_sign(caller_hotkey_seed, message)

with domain b"agora.v1.Axon/Forward" or b"agora.v1.Axon/Backward", callee the axon's 32-byte
public hotkey. An axon refuses timestamps more than 30 s from its clock and repeated
(caller, nonce) pairs.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import struct
import sys
import tempfile
import time
from concurrent import futures

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "proto")

DOMAIN_FORWARD = b"agora.v1.Axon/Forward"
DOMAIN_BACKWARD = b"agora.v1.Axon/Backward"


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


def signing_message(domain: bytes, callee: bytes, nonce: int, timestamp_ms: int, body: bytes) -> bytes:
    h = hashlib.sha256()
    h.update(struct.pack("<Q", len(domain)) + domain)
    h.update(struct.pack("<Q", len(callee)) + callee)
    h.update(struct.pack("<QQ", nonce, timestamp_ms))
    h.update(hashlib.sha256(body).digest())
    return h.digest()


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

    def sign(self, request, domain: bytes, callee: bytes):
        request.caller = self.public
        request.callee = callee
        request.nonce = self.next_nonce()
        request.timestamp_ms = int(time.time() * 1000)
        request.signature = b""
        message = signing_message(domain, callee, request.nonce, request.timestamp_ms, request.SerializeToString())
        request.signature = self.private.sign(message)
        return request


def verify(request, domain: bytes, me: bytes, window_ms: int = 30_000) -> bytes:
    """Checks a request's signature, callee and freshness; returns the caller's hotkey.
    (A long-running axon should also remember (caller, nonce) pairs to refuse replays.)"""
    if request.callee != me:
        raise BadTensor(pb.RETURN_CODE_INVALID_SIGNATURE, "addressed to another axon")
    if abs(int(time.time() * 1000) - request.timestamp_ms) > window_ms:
        raise BadTensor(pb.RETURN_CODE_INVALID_SIGNATURE, "stale timestamp")
    unsigned = type(request)()
    unsigned.CopyFrom(request)
    unsigned.signature = b""
    message = signing_message(domain, request.callee, request.nonce, request.timestamp_ms,
                              unsigned.SerializeToString())
    try:
        Ed25519PublicKey.from_public_bytes(request.caller).verify(request.signature, message)
    except Exception as e:  # noqa: BLE001 - any failure is a bad signature
        raise BadTensor(pb.RETURN_CODE_INVALID_SIGNATURE, f"bad signature: {e}") from e
    return bytes(request.caller)


class AxonServicer(pb_grpc.AxonServicer):
    """Serves `forward(inputs) -> outputs` and optionally `backward(inputs, grads) -> grads or
    None`, numpy in and out. Outputs must be float [batch, seq, dim]."""

    def __init__(self, hotkey: Hotkey, forward, backward=None):
        self.hotkey, self.forward_fn, self.backward_fn = hotkey, forward, backward

    def Forward(self, request, context):
        try:
            verify(request, DOMAIN_FORWARD, self.hotkey.public)
            y = self.forward_fn(from_wire(request.inputs))
            return pb.ForwardResponse(outputs=to_wire(np.asarray(y, dtype="<f4")), code=pb.RETURN_CODE_SUCCESS)
        except BadTensor as e:
            return pb.ForwardResponse(code=e.code, message=str(e))
        except Exception as e:  # noqa: BLE001 - the model failed; tell the caller, keep serving
            return pb.ForwardResponse(code=pb.RETURN_CODE_INTERNAL_ERROR, message=repr(e))

    def Backward(self, request, context):
        if self.backward_fn is None:
            return pb.BackwardResponse(code=pb.RETURN_CODE_NOT_IMPLEMENTED, message="no backward")
        try:
            verify(request, DOMAIN_BACKWARD, self.hotkey.public)
            g = self.backward_fn(from_wire(request.inputs), from_wire(request.grads))
            grads = None if g is None else to_wire(np.asarray(g, dtype="<f4"))
            return pb.BackwardResponse(grads=grads, code=pb.RETURN_CODE_SUCCESS)
        except BadTensor as e:
            return pb.BackwardResponse(code=e.code, message=str(e))
        except Exception as e:  # noqa: BLE001
            return pb.BackwardResponse(code=pb.RETURN_CODE_INTERNAL_ERROR, message=repr(e))


MAX_MESSAGE = 2 * (64 << 20) + (64 << 10)
OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]


def serve(hotkey: Hotkey, forward, backward=None, addr: str = "127.0.0.1:0", workers: int = 4):
    """Starts a Python axon; returns (server, port)."""
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=OPTIONS)
    pb_grpc.add_AxonServicer_to_server(AxonServicer(hotkey, forward, backward), server)
    port = server.add_insecure_port(addr)
    server.start()
    return server, port


class Dendrite:
    """Calls Rust (or any) axons. `forward` returns (code, message, numpy or None)."""

    def __init__(self, hotkey: Hotkey):
        import grpc

        self.hotkey, self.grpc, self.channels = hotkey, grpc, {}

    def _stub(self, endpoint: str):
        if endpoint not in self.channels:
            self.channels[endpoint] = pb_grpc.AxonStub(self.grpc.insecure_channel(endpoint, options=OPTIONS))
        return self.channels[endpoint]

    def forward(self, endpoint: str, axon_hotkey: bytes, inputs: np.ndarray, timeout: float = 12.0, modality=None):
        req = self.hotkey.sign(pb.ForwardRequest(inputs=to_wire(inputs, modality)), DOMAIN_FORWARD, axon_hotkey)
        resp = self._stub(endpoint).Forward(req, timeout=timeout)
        out = from_wire(resp.outputs) if resp.code == pb.RETURN_CODE_SUCCESS else None
        return resp.code, resp.message, out

    def backward(self, endpoint: str, axon_hotkey: bytes, inputs: np.ndarray, grads: np.ndarray, timeout=12.0):
        req = pb.BackwardRequest(inputs=to_wire(inputs), grads=to_wire(grads))
        self.hotkey.sign(req, DOMAIN_BACKWARD, axon_hotkey)
        resp = self._stub(endpoint).Backward(req, timeout=timeout)
        out = from_wire(resp.grads) if resp.code == pb.RETURN_CODE_SUCCESS and resp.HasField("grads") else None
        return resp.code, resp.message, out
