"""Wallets in the on-disk format of `agora wallet` (`crates/wallet`), read and written alike.

    <root>/<name>/coldkey          the coldkey secret, sealed (versioned JSON)
    <root>/<name>/coldkeypub.txt   the coldkey public key, hex
    <root>/<name>/hotkeys/<hotkey> a hotkey's secret and public key, plain JSON

The root is `AGORA_WALLET_DIR` when set, else `~/.agora/wallets`. Every key comes from a BIP-39
mnemonic: the ed25519 seed is the first 32 bytes of its BIP-39 seed (PBKDF2-HMAC-SHA512, 2048
rounds, empty passphrase; no derivation path), so the same words give the same key in Rust and
here. The coldkey's seed is sealed with XChaCha20-Poly1305 under a key derived from the password
by argon2id (parameters stored in the file), the associated data binding the format tag and the
public key. Files are written owner-only (0600, directories 0700) through a temporary file and a
rename, so a crash never leaves half a key.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from mnemonic import Mnemonic
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt, crypto_aead_xchacha20poly1305_ietf_encrypt
from nacl.exceptions import CryptoError

from .errors import AgoraError
from .keys import Keypair

COLDKEY_FILE = "coldkey"
COLDKEYPUB_FILE = "coldkeypub.txt"
HOTKEYS_DIR = "hotkeys"
FORMAT_VERSION = 1
COLDKEY_AAD_TAG = b"agora/coldkey/v1"
SALT_LEN, NONCE_LEN, CIPHERTEXT_LEN = 16, 24, 32 + 16


class WalletError(AgoraError):
    """A wallet operation failed; the message names the file and what to do."""


class WrongPassword(WalletError):
    """The AEAD check failed: a wrong password (or a modified coldkey file: the two look alike)."""


class Corrupt(WalletError):
    """A wallet file does not hold what its format says."""


class AlreadyExists(WalletError):
    """A key would be replaced: pass overwrite=True (its keys are lost unless the words were kept)."""


class NoWallet(WalletError):
    """No wallet directory with a coldkeypub.txt."""


class NoHotkey(WalletError):
    """The wallet has no hotkey of that name."""


@dataclass(frozen=True)
class KdfParams:
    """argon2id cost, stored in each coldkey file (`m_kib` KiB of memory, `t` passes, `p` lanes)."""

    m_kib: int = 64 * 1024
    t: int = 3
    p: int = 1

    def derive(self, password: bytes, salt: bytes) -> bytes:
        return Argon2id(salt=salt, length=32, iterations=self.t, lanes=self.p, memory_cost=self.m_kib).derive(password)


# Cheap parameters for tests only (the wallet crate's INSECURE_FOR_TESTS): no protection.
INSECURE_FOR_TESTS = KdfParams(m_kib=64, t=1, p=1)


def default_root() -> Path:
    """`AGORA_WALLET_DIR`, else `~/.agora/wallets` (as the CLI reads it)."""
    env = os.environ.get("AGORA_WALLET_DIR")
    return Path(env) if env else Path.home() / ".agora" / "wallets"


def check_name(name: str) -> None:
    """A wallet or hotkey name becomes a path component: 1-64 of [A-Za-z0-9-_.], not starting
    with a dot (so no separators, no `..`)."""
    ok = 0 < len(name) <= 64 and not name.startswith(".") and all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
    if not ok:
        raise WalletError(f"invalid name {name!r}: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'")


# ---------------------------------------------------------------- mnemonics

_BIP39 = Mnemonic("english")


def generate_mnemonic(words: int = 12) -> str:
    """A fresh mnemonic of 12 or 24 words from the OS's generator."""
    if words not in (12, 24):
        raise WalletError(f"a mnemonic has 12 or 24 words, not {words}")
    return _BIP39.generate(strength=128 if words == 12 else 256)


def parse_mnemonic(words: str) -> str:
    """User-typed words (any case and spacing) -> the normalised phrase, checksum checked."""
    phrase = " ".join(words.split()).lower()
    n = len(phrase.split())
    if n not in (12, 24):
        raise WalletError(f"a mnemonic has 12 or 24 words, not {n}")
    if not _BIP39.check(phrase):
        raise WalletError("invalid mnemonic: an unknown word or a wrong checksum")
    return phrase


def key_from_mnemonic(phrase: str) -> Keypair:
    """The first 32 bytes of the BIP-39 seed (empty passphrase), as `wallet::key_from_mnemonic`."""
    seed = hashlib.pbkdf2_hmac("sha512", parse_mnemonic(phrase).encode(), b"mnemonic", 2048)
    return Keypair(seed[:32])


# ---------------------------------------------------------------- files


def _write_secret(path: Path, data: bytes) -> None:
    """Owner-only write through a dot-named temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _mkdir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _hex_field(path: Path, field: str, value: object, n: int) -> bytes:
    try:
        b = bytes.fromhex(str(value))
    except ValueError as e:
        raise Corrupt(f"{path} is corrupt: {field}: {e}") from e
    if len(b) != n:
        raise Corrupt(f"{path} is corrupt: {field} has {len(b)} bytes, expected {n}")
    return b


def _aad(public: bytes) -> bytes:
    return COLDKEY_AAD_TAG + public


def seal(key: Keypair, password: bytes, kdf: KdfParams) -> dict:
    """The coldkey file's JSON for `key` under `password` (fresh salt and nonce)."""
    salt, nonce = secrets.token_bytes(SALT_LEN), secrets.token_bytes(NONCE_LEN)
    k = kdf.derive(password, salt)
    ciphertext = crypto_aead_xchacha20poly1305_ietf_encrypt(key.seed, _aad(key.public), nonce, k)
    return {
        "version": FORMAT_VERSION,
        "public_key": key.public.hex(),
        "kdf": "argon2id",
        "kdf_params": {"m_kib": kdf.m_kib, "t": kdf.t, "p": kdf.p},
        "salt": salt.hex(),
        "cipher": "xchacha20poly1305",
        "nonce": nonce.hex(),
        "ciphertext": ciphertext.hex(),
    }


def unseal(path: Path, f: dict, password: bytes) -> Keypair:
    """Opens a sealed coldkey (the JSON of `path`) with `password`."""
    if f.get("version") != FORMAT_VERSION:
        raise Corrupt(f"{path} is corrupt: unknown format version {f.get('version')}")
    if f.get("kdf") != "argon2id" or f.get("cipher") != "xchacha20poly1305":
        raise Corrupt(f"{path} is corrupt: unknown kdf {f.get('kdf')!r} or cipher {f.get('cipher')!r}")
    public = _hex_field(path, "public_key", f.get("public_key"), 32)
    salt = _hex_field(path, "salt", f.get("salt"), SALT_LEN)
    nonce = _hex_field(path, "nonce", f.get("nonce"), NONCE_LEN)
    ciphertext = _hex_field(path, "ciphertext", f.get("ciphertext"), CIPHERTEXT_LEN)
    try:
        p = f["kdf_params"]
        kdf = KdfParams(int(p["m_kib"]), int(p["t"]), int(p["p"]))
        k = kdf.derive(password, salt)
    except (KeyError, TypeError, ValueError) as e:
        # Parameters argon2 refuses mean the file was edited: say so rather than "wrong password".
        raise Corrupt(f"{path} is corrupt: kdf_params: {e}") from e
    try:
        secret = crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, _aad(public), nonce, k)
    except CryptoError:
        raise WrongPassword(f"wrong password (or the coldkey file {path} was modified)") from None
    key = Keypair(secret)
    if key.public != public:
        raise Corrupt(f"{path} is corrupt: secret does not match the stored public key")
    return key


def list_wallets(root: Path | None = None) -> list[str]:
    """Names of the wallets under `root` (directories with a coldkeypub.txt), sorted."""
    root = Path(root) if root else default_root()
    if not root.is_dir():
        return []
    names = []
    for entry in root.iterdir():
        try:
            check_name(entry.name)
        except WalletError:
            continue
        if (entry / COLDKEYPUB_FILE).is_file():
            names.append(entry.name)
    return sorted(names)


class Wallet:
    """An opened wallet: its directory and coldkey public key; secrets are read on demand."""

    def __init__(self, root: Path, name: str, coldkey: bytes) -> None:
        self.root, self.name, self.dir, self.coldkey_public = Path(root), name, Path(root) / name, coldkey

    @classmethod
    def open(cls, name: str, root: Path | str | None = None) -> "Wallet":
        check_name(name)
        root = Path(root) if root else default_root()
        pub = root / name / COLDKEYPUB_FILE
        if not pub.is_file():
            raise NoWallet(f"no wallet at {root / name}")
        text = pub.read_text().strip()
        return cls(root, name, _hex_field(pub, "public key", text, 32))

    @classmethod
    def create(cls, name: str, password: bytes | str, root: Path | str | None = None, words: int = 12,
               kdf: KdfParams = KdfParams(), overwrite: bool = False) -> tuple["Wallet", str]:
        """A wallet with a fresh coldkey sealed under `password`; returns it and the mnemonic,
        which the user must be shown once (it is the only way back to the key)."""
        phrase = generate_mnemonic(words)
        return cls.regen_coldkey(name, phrase, password, root, kdf, overwrite), phrase

    @classmethod
    def regen_coldkey(cls, name: str, phrase: str, password: bytes | str, root: Path | str | None = None,
                      kdf: KdfParams = KdfParams(), overwrite: bool = False) -> "Wallet":
        """Writes the coldkey of `phrase` sealed under `password` (creating the wallet if
        needed); an existing coldkey is replaced only if `overwrite`. Hotkeys are kept."""
        check_name(name)
        root = Path(root) if root else default_root()
        d = root / name
        if not overwrite and ((d / COLDKEY_FILE).exists() or (d / COLDKEYPUB_FILE).exists()):
            raise AlreadyExists(f"{d} already exists; pass overwrite=True to replace it (its keys are lost unless you kept the mnemonic)")
        key = key_from_mnemonic(phrase)
        sealed = seal(key, _bytes(password), kdf)
        _mkdir(d / HOTKEYS_DIR)
        _write_secret(d / COLDKEY_FILE, json.dumps(sealed, indent=2).encode())
        _write_secret(d / COLDKEYPUB_FILE, f"{key.public.hex()}\n".encode())
        return cls(root, name, key.public)

    def unlock_coldkey(self, password: bytes | str) -> Keypair:
        """Decrypts the coldkey (argon2id: about a second with the default parameters)."""
        path = self.dir / COLDKEY_FILE
        try:
            f = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise NoWallet(f"no coldkey at {path}") from None
        except ValueError as e:
            raise Corrupt(f"{path} is corrupt: not a coldkey file: {e}") from e
        if not isinstance(f, dict) or f.get("public_key") != self.coldkey_public.hex():
            raise Corrupt(f"{path} is corrupt: its public key differs from {COLDKEYPUB_FILE} ({self.coldkey_public.hex()})")
        return unseal(path, f, _bytes(password))

    def _hotkey_path(self, name: str) -> Path:
        check_name(name)
        return self.dir / HOTKEYS_DIR / name

    def create_hotkey(self, name: str, words: int = 12, overwrite: bool = False) -> str:
        """A fresh hotkey; returns its mnemonic."""
        phrase = generate_mnemonic(words)
        self.regen_hotkey(name, phrase, overwrite)
        return phrase

    def regen_hotkey(self, name: str, phrase: str, overwrite: bool = False) -> bytes:
        """Writes hotkey `name` from its mnemonic; returns its public key."""
        path = self._hotkey_path(name)
        if not overwrite and path.exists():
            raise AlreadyExists(f"{path} already exists; pass overwrite=True to replace it")
        key = key_from_mnemonic(phrase)
        body = {"version": FORMAT_VERSION, "public_key": key.public.hex(), "secret_key": key.seed.hex()}
        _mkdir(path.parent)
        _write_secret(path, json.dumps(body, indent=2).encode())
        return key.public

    def hotkey(self, name: str) -> Keypair:
        """Hotkey `name`'s signing key (hotkeys are not encrypted: a peer starts unattended)."""
        path = self._hotkey_path(name)
        if not path.is_file():
            raise NoHotkey(f"no hotkey {name!r} in wallet {self.name!r}")
        try:
            f = json.loads(path.read_bytes())
        except ValueError as e:
            raise Corrupt(f"{path} is corrupt: not a hotkey file: {e}") from e
        if not isinstance(f, dict) or f.get("version") != FORMAT_VERSION:
            raise Corrupt(f"{path} is corrupt: unknown format version {f.get('version') if isinstance(f, dict) else f!r}")
        key = Keypair(_hex_field(path, "secret_key", f.get("secret_key"), 32))
        if key.public.hex() != f.get("public_key"):
            raise Corrupt(f"{path} is corrupt: secret key does not match the stored public key")
        return key

    def hotkeys(self) -> list[str]:
        """The wallet's hotkey names, sorted."""
        d = self.dir / HOTKEYS_DIR
        if not d.is_dir():
            return []
        out = []
        for entry in d.iterdir():
            try:
                check_name(entry.name)
            except WalletError:
                continue
            if entry.is_file():
                out.append(entry.name)
        return sorted(out)


def _bytes(password: bytes | str) -> bytes:
    return password.encode() if isinstance(password, str) else password
