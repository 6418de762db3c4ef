"""ed25519 keys as the ledger and the peer protocol use them.

A key is its 32-byte seed (RFC 8032's secret key); the same seed gives the same public key in
Rust (ed25519-dalek) and here (the `cryptography` package), which is what lets a Python peer sign
for a hotkey `agora wallet` made.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64


class Keypair:
    """An ed25519 signing key and its public key."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError(f"an ed25519 seed has 32 bytes, not {len(seed)}")
        self._private = Ed25519PrivateKey.from_private_bytes(bytes(seed))
        self.public: bytes = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def seed(self) -> bytes:
        """The 32-byte secret (as the wallet's hotkey file stores it, in hex)."""
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        return self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    @property
    def public_hex(self) -> str:
        return self.public.hex()

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def __repr__(self) -> str:
        # Eight hex digits identify a key in logs, as the Rust side prints them; never the seed.
        return f"Keypair({self.public.hex()[:8]}..)"


def verify(public: bytes, signature: bytes, message: bytes) -> bool:
    """Whether `signature` is `public`'s ed25519 signature of `message` (False for a public key
    that is not a valid point, as the ledger treats it)."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


def dev_key(name: str) -> Keypair:
    """The insecure key of a dev account (`ledger::dev_key`): seed = SHA-256("agora/dev-key/v1/"
    || name). Dev chains fund alice, bob, ...; anyone who knows the name has the key."""
    return Keypair(hashlib.sha256(b"agora/dev-key/v1/" + name.encode()).digest())


def parse_public_key(key: bytes | str) -> bytes:
    """A public key given as 32 bytes or 64 hex digits (an optional 0x prefix, as the node
    accepts) -> 32 bytes; anything else is a ValueError that says what was expected."""
    if isinstance(key, (bytes, bytearray)):
        raw = bytes(key)
    else:
        s = key[2:] if key.startswith("0x") else key
        try:
            raw = bytes.fromhex(s)
        except ValueError as e:
            raise ValueError(f"expected 64 hex digits for a public key, got {key!r}") from e
    if len(raw) != PUBLIC_KEY_LEN:
        raise ValueError(f"a public key has {PUBLIC_KEY_LEN} bytes, got {len(raw)}")
    return raw
