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
    # The answer verified as signed by the axon called, for this request (protocol 4).
    assert r.model is not None, r
    print(f"forward ok: {r.tensor.size} values match 2x+1, signed by the axon (model {r.model.short()}, step {r.model.step})")
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
    # A signature by someone else's key: credentials of key 0x33 with key 0x44 named as caller.
    body = wire.pb.ForwardRequest(inputs=wire.to_wire(x)).SerializeToString()
    digest = wire.blake3(body).digest()
    md = [(k, Keypair(bytes([0x44] * 32)).public.hex() if k == "agora-caller" else v)
          for k, v in d.signer.credentials(wire.PATH_FORWARD, axon, len(body), digest)]
    resp = d.call(addr, axon, wire.PATH_FORWARD, body, timeout=5, metadata=md)
    assert resp.code == wire.INVALID_SIGNATURE, resp
    # A protocol-1 call: no credentials in the metadata.
    resp = d.call(addr, axon, wire.PATH_FORWARD, body, timeout=5, metadata=[])
    assert resp.code == wire.UNSUPPORTED_VERSION, resp
    # A protocol-2 call: the same credentials with a sha256 digest, signed as version 2.
    resp = d.call(addr, axon, wire.PATH_FORWARD, body, timeout=5, metadata=v2_credentials(me, axon, body))
    assert resp.code == wire.UNSUPPORTED_VERSION and "sha256" in resp.message, resp
    # A protocol-3 call: version 4's credentials under version "3" (its answers were unsigned).
    v3 = [(k, "3" if k == "agora-version" else v) for k, v in d.signer.credentials(wire.PATH_FORWARD, axon, len(body), digest)]
    resp = d.call(addr, axon, wire.PATH_FORWARD, body, timeout=5, metadata=v3)
    assert resp.code == wire.UNSUPPORTED_VERSION, resp
    # The axon's answers are its own: called under another hotkey, its signed answer is refused.
    other = d.forward(addr, Keypair(bytes([0x44] * 32)).public, x)
    assert other.code == wire.INVALID_RESPONSE_SIGNATURE, other
    print(f"bad inputs refused with their codes ({r.message}); an answer under another hotkey refused: {wire.code_name(other.code)}")


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
