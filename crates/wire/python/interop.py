"""Python half of the interoperability check (run by interop.sh).

  python3 interop.py client <addr> <axon hotkey hex>   call a (Rust) axon serving y = 2x + 1
  python3 interop.py axon                              serve y = 2x + 1 as a Python axon;
                                                       prints "LISTEN <addr> <hotkey hex>",
                                                       serves until stdin closes
Exits non-zero on any mismatch.
"""

import sys

import numpy as np

import agora_wire as aw


def v2_credentials(hotkey: aw.Hotkey, callee: bytes, body: bytes) -> list[tuple[str, str]]:
    """Protocol 2's metadata for `body`: version "2", a sha256 digest, signed over "agora/2"."""
    import hashlib
    import struct
    import time

    nonce, ts, digest = hotkey.next_nonce(), int(time.time() * 1000), hashlib.sha256(body).digest()
    f = aw._field
    pre = (f(b"agora/2") + f(aw.PATH_FORWARD.encode()) + f(hotkey.public) + f(callee) + struct.pack("<QQ", nonce, ts)
           + f(b"sha256") + struct.pack("<Q", len(body)) + f(digest))
    return [("agora-version", "2"), ("agora-caller", hotkey.public.hex()), ("agora-callee", callee.hex()),
            ("agora-nonce", str(nonce)), ("agora-timestamp-ms", str(ts)), ("agora-body-len", str(len(body))),
            ("agora-digest", "sha256:" + digest.hex()), ("agora-signature", hotkey.private.sign(pre).hex())]


def client(addr: str, axon_hex: str) -> None:
    axon = bytes.fromhex(axon_hex)
    d = aw.Dendrite(aw.Hotkey(bytes([0x33] * 32)))
    x = (np.arange(24, dtype=np.float32) * 0.5 - 4.0).reshape(2, 3, 4)
    code, msg, y = d.forward(addr, axon, x)
    assert code == aw.pb.RETURN_CODE_SUCCESS, (code, msg)
    assert y.shape == (2, 3, 4), y.shape
    assert np.array_equal(y, 2 * x + 1), (y, 2 * x + 1)
    print(f"forward ok: {y.size} values match 2x+1")
    big = (np.arange(1 << 18, dtype=np.float32) % 97).reshape(1, 1, -1)
    code, msg, y = d.forward(addr, axon, big)
    assert code == aw.pb.RETURN_CODE_SUCCESS and np.array_equal(y, 2 * big + 1), (code, msg)
    print("forward ok: 1 MiB tensor")
    g = (np.arange(24, dtype=np.float32) % 7 - 3.0).reshape(2, 3, 4)
    code, msg, dx = d.backward(addr, axon, x, g)
    assert code == aw.pb.RETURN_CODE_SUCCESS, (code, msg)
    assert np.array_equal(dx, 2 * g), dx
    print("backward ok: gradient is 2g")
    # What the Rust axon must refuse, with its code: NaN, a shape the bytes do not fill.
    bad = np.array([[[1.0, np.nan]]], dtype=np.float32)
    code, msg, _ = d.forward(addr, axon, bad)
    assert code == aw.pb.RETURN_CODE_NON_FINITE, (code, msg)
    req = aw.pb.ForwardRequest(inputs=aw.pb.Tensor(data=b"\0" * 8, dtype=aw.pb.DTYPE_F32, shape=[1, 1, 3],
                                                   modality=aw.pb.MODALITY_TENSOR))
    resp = d.call(addr, axon, aw.PATH_FORWARD, req, timeout=5)
    assert resp.code == aw.pb.RETURN_CODE_REQUEST_SHAPE_ERROR, resp
    # A signature by someone else's key: credentials of key 0x33 with key 0x44 named as caller.
    body = aw.pb.ForwardRequest(inputs=aw.to_wire(x)).SerializeToString()
    md = [(k, aw.Hotkey(bytes([0x44] * 32)).public.hex() if k == "agora-caller" else v)
          for k, v in d.hotkey.credentials(aw.PATH_FORWARD, axon, body)]
    resp = d.call(addr, axon, aw.PATH_FORWARD, body, timeout=5, metadata=md)
    assert resp.code == aw.pb.RETURN_CODE_INVALID_SIGNATURE, resp
    # A protocol-1 call: no credentials in the metadata.
    resp = d.call(addr, axon, aw.PATH_FORWARD, body, timeout=5, metadata=[])
    assert resp.code == aw.pb.RETURN_CODE_UNSUPPORTED_VERSION, resp
    # A protocol-2 call: the same credentials with a sha256 digest, signed as version 2.
    resp = d.call(addr, axon, aw.PATH_FORWARD, body, timeout=5, metadata=v2_credentials(d.hotkey, axon, body))
    assert resp.code == aw.pb.RETURN_CODE_UNSUPPORTED_VERSION and "sha256" in resp.message, resp
    print(f"bad inputs refused with their codes ({msg})")


def axon() -> None:
    hotkey = aw.Hotkey(bytes([0x55] * 32))
    server, port = aw.serve(hotkey, forward=lambda x: 2 * x + 1, backward=lambda x, g: 2 * g)
    print(f"LISTEN 127.0.0.1:{port} {hotkey.public.hex()}", flush=True)
    sys.stdin.read()
    server.stop(grace=1)


if __name__ == "__main__":
    if sys.argv[1] == "client":
        client(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "axon":
        axon()
    else:
        sys.exit(__doc__)
