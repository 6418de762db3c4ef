"""Python half of the interoperability check (run by interop.sh), on the `agora` package
(`pip install ./python`).

  python3 interop.py client <addr> <axon hotkey hex>   call a (Rust) axon serving y = 2x + 1
  python3 interop.py axon                              serve y = 2x + 1 as a Python axon;
                                                       prints "LISTEN <addr> <hotkey hex>",
                                                       serves until stdin closes
Exits non-zero on any mismatch.
"""

import hashlib
import struct
import sys
import time

import grpc
import numpy as np

from agora import wire
from agora.keys import Keypair


def v2_credentials(hotkey: Keypair, callee: bytes, body: bytes) -> list[tuple[str, str]]:
    """Protocol 2's metadata for `body`: version "2", a sha256 digest, signed over "agora/2"."""
    nonce, ts, digest = time.time_ns(), int(time.time() * 1000), hashlib.sha256(body).digest()
    f = wire._field
    pre = (f(b"agora/2") + f(wire.PATH_FORWARD.encode()) + f(hotkey.public) + f(callee) + struct.pack("<QQ", nonce, ts)
           + f(b"sha256") + struct.pack("<Q", len(body)) + f(digest))
    return [("agora-version", "2"), ("agora-caller", hotkey.public.hex()), ("agora-callee", callee.hex()),
            ("agora-nonce", str(nonce)), ("agora-timestamp-ms", str(ts)), ("agora-body-len", str(len(body))),
            ("agora-digest", "sha256:" + digest.hex()), ("agora-signature", hotkey.sign(pre).hex())]


def client(addr: str, axon_hex: str) -> None:
    axon = bytes.fromhex(axon_hex)
    me = Keypair(bytes([0x33] * 32))
    d = wire.Dendrite(me)
    x = (np.arange(24, dtype=np.float32) * 0.5 - 4.0).reshape(2, 3, 4)
    r = d.forward(addr, axon, x)
    assert r.ok, r
    assert r.tensor.shape == (2, 3, 4), r.tensor.shape
    assert np.array_equal(r.tensor, 2 * x + 1), (r.tensor, 2 * x + 1)
    # The answer verified as the axon's (protocol 5: MACed in a session whose handshake the
    # axon signed), for this request.
    assert r.model is not None, r
    print(f"forward ok: {r.tensor.size} values match 2x+1, authenticated as the axon's (model {r.model.short()}, step {r.model.step})")
    big = (np.arange(1 << 18, dtype=np.float32) % 97).reshape(1, 1, -1)
    r = d.forward(addr, axon, big)
    assert r.ok and np.array_equal(r.tensor, 2 * big + 1), r
    print("forward ok: 1 MiB tensor")
    g = (np.arange(24, dtype=np.float32) % 7 - 3.0).reshape(2, 3, 4)
    r = d.backward(addr, axon, x, g)
    assert r.ok, r
    assert np.array_equal(r.tensor, 2 * g), r.tensor
    print("backward ok: gradient is 2g")
    # What the Rust axon must refuse, with its code: NaN, a shape the bytes do not fill.
    r = d.forward(addr, axon, np.array([[[1.0, np.nan]]], dtype=np.float32))
    assert r.code == wire.NON_FINITE, r
    req = wire.pb.ForwardRequest(inputs=wire.pb.Tensor(data=b"\0" * 8, dtype=wire.pb.DTYPE_F32, shape=[1, 1, 3],
                                                       modality=wire.pb.MODALITY_TENSOR))
    resp = d.call(addr, axon, wire.PATH_FORWARD, req, timeout=5)
    assert resp.code == wire.REQUEST_SHAPE_ERROR, resp
    # The calls below are MACed in the dendrite's session with the axon (protocol 5).
    body = wire.pb.ForwardRequest(inputs=wire.to_wire(x)).SerializeToString()
    digest = wire.blake3(body).digest()
    session = d.session(addr, axon)
    creds = lambda: session.credentials(wire.PATH_FORWARD, d.next_nonce(), int(time.time() * 1000), len(body), digest)[0]  # noqa: E731
    # A MAC by another session of the same caller, under this session's id.
    other = wire.Dendrite(me).session(addr, axon)
    crossed = [(k, session.id.hex() if k == "agora-session" else v)
               for k, v in other.credentials(wire.PATH_FORWARD, d.next_nonce(), int(time.time() * 1000), len(body), digest)[0]]
    resp = d.call(addr, axon, wire.PATH_FORWARD, body, timeout=5, metadata=crossed)
    assert resp.code == wire.INVALID_SIGNATURE, resp
    # A session the Rust axon never opened: gRPC UNAUTHENTICATED.
    unknown = [(k, "00" * 16 if k == "agora-session" else v) for k, v in creds()]
    try:
        d.call(addr, axon, wire.PATH_FORWARD, body, timeout=5, metadata=unknown)
        raise AssertionError("an unknown session was served")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
    # A protocol-1 call: no credentials in the metadata (answered without a MAC: no session).
    resp = d.call(addr, axon, wire.PATH_FORWARD, body, timeout=5, metadata=[], check=False)
    assert resp.code == wire.UNSUPPORTED_VERSION, resp
    # A protocol-2 call: its signed credentials with a sha256 digest, as version 2.
    resp = d.call(addr, axon, wire.PATH_FORWARD, body, timeout=5, metadata=v2_credentials(me, axon, body), check=False)
    assert resp.code == wire.UNSUPPORTED_VERSION and "sha256" in resp.message, resp
    # Protocols 3 and 4: version 5's credentials under their version numbers.
    for version in ("3", "4"):
        old = [(k, version if k == "agora-version" else v) for k, v in creds()]
        resp = d.call(addr, axon, wire.PATH_FORWARD, body, timeout=5, metadata=old, check=False)
        assert resp.code == wire.UNSUPPORTED_VERSION, resp
    # The axon's answers are its own: called under another hotkey, its signed handshake is refused.
    other = d.forward(addr, Keypair(bytes([0x44] * 32)).public, x)
    assert other.code == wire.INVALID_RESPONSE_SIGNATURE, other
    print(f"bad inputs refused with their codes ({r.message}); a session under another hotkey refused: {wire.code_name(other.code)}")


def axon() -> None:
    hotkey = Keypair(bytes([0x55] * 32))
    # Forward names a model (a fixed one: the function never changes), Backward none.
    model = wire.ModelVersion(bytes([0x2A] * 32), 1)
    a = wire.serve(hotkey, forward=lambda x, caller: wire.Versioned(2 * x + 1, model), backward=lambda x, g, caller: 2 * g)
    print(f"LISTEN 127.0.0.1:{a.port} {hotkey.public.hex()}", flush=True)
    sys.stdin.read()
    a.stop(1)


if __name__ == "__main__":
    if sys.argv[1] == "client":
        client(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "axon":
        axon()
    else:
        sys.exit(__doc__)
