"""Ledger transactions: the calls, their borsh encoding, signing, ids and proof of work.

This is `crates/ledger/src/tx.rs` for Python, byte for byte; `docs/transactions.md` specifies
the encoding for any language and `docs/vectors/transactions.json` pins it (the Rust ledger's
tests and this package's tests check the same file).

    body      = borsh(TxBody { sender, nonce, fee, call })
    body_hash = SHA-256("agora/tx-body/v1" || body)
    signed    = "agora/tx/v1" || u8(len(chain_id)) || chain_id || body_hash   (ed25519)
    tx        = body || signature(64)
    id        = SHA-256("agora/tx-id/v1" || body_hash || signature)

Amounts are integers in base units (10^9 per token), as the ledger keeps them: a float never
stands for money here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import struct
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Union

from .keys import Keypair, parse_public_key, verify

UNITS_PER_TOKEN = 1_000_000_000
BODY_TAG = b"agora/tx-body/v1"
SIGN_TAG = b"agora/tx/v1"
ID_TAG = b"agora/tx-id/v1"
POW_TAG = b"agora/pow/v1"
U64_MAX = (1 << 64) - 1


def tokens(amount: str | int | Decimal) -> int:
    """Tokens (a decimal string or an integer, at most nine decimals) -> base units, exactly.
    Floats are refused: 0.1 token is not representable in binary and money must not round."""
    if isinstance(amount, float):
        raise TypeError("give tokens as a decimal string or an int, not a float")
    try:
        d = Decimal(amount)
    except InvalidOperation as e:
        raise ValueError(f"{amount!r} is not a number of tokens") from e
    units = d * UNITS_PER_TOKEN
    if d < 0 or units != units.to_integral_value() or units > U64_MAX:
        raise ValueError(f"{amount!r}: tokens are non-negative with at most nine decimals")
    return int(units)


# ---------------------------------------------------------------- calls


@dataclass(frozen=True)
class Endpoint:
    """Where a neuron's axon listens (`ledger::Endpoint`). protocol 0 = gRPC; modality 0 =
    text, 1 = image, 2 = tensor."""

    ip: str
    port: int
    protocol: int = 0
    modality: int = 0

    PROTOCOLS = ("grpc",)
    MODALITIES = ("text", "image", "tensor")

    @classmethod
    def from_json(cls, v: dict) -> "Endpoint":
        return cls(v["ip"], int(v["port"]), cls.PROTOCOLS.index(v["protocol"]), cls.MODALITIES.index(v["modality"]))

    def to_json(self) -> dict:
        return {"ip": self.ip, "port": self.port, "protocol": self.PROTOCOLS[self.protocol],
                "modality": self.MODALITIES[self.modality]}

    @property
    def address(self) -> str:
        """`ip:port` as a gRPC target (IPv6 in brackets)."""
        ip = ipaddress.ip_address(self.ip)
        return f"[{ip}]:{self.port}" if ip.version == 6 else f"{ip}:{self.port}"


@dataclass(frozen=True)
class Transfer:
    """Move free balance from the sender (a coldkey) to `to`."""

    to: bytes
    amount: int
    KIND = "transfer"


@dataclass(frozen=True)
class Register:
    """Register the sender (a hotkey) as owned by `coldkey`, paid by proof of work over the hash
    of block `pow_block` ([`solve_pow`])."""

    coldkey: bytes
    pow_block: int
    pow_nonce: int
    KIND = "register"


@dataclass(frozen=True)
class RegisterBy:
    """Sent by a registered hotkey: subscribe `hotkey` (owned by `coldkey`) with `stake`."""

    hotkey: bytes
    coldkey: bytes
    stake: int
    KIND = "register_by"


@dataclass(frozen=True)
class Serve:
    """Sent by a registered hotkey: publish its axon's endpoint."""

    endpoint: Endpoint
    KIND = "serve"


@dataclass(frozen=True)
class AddStake:
    """Sent by a neuron's coldkey: move free balance into the neuron's stake."""

    hotkey: bytes
    amount: int
    KIND = "add_stake"


@dataclass(frozen=True)
class RemoveStake:
    """Sent by a neuron's coldkey: move stake back to free balance."""

    hotkey: bytes
    amount: int
    KIND = "remove_stake"


@dataclass(frozen=True)
class SetWeights:
    """Sent by a registered hotkey: its row of W. Values must be finite, >= 0 and sum to 1
    within 1e-6 ([`set_weights`] normalises)."""

    uids: tuple[int, ...]
    values: tuple[float, ...]
    KIND = "set_weights"


@dataclass(frozen=True)
class PublishVersion:
    """Sent by a registered hotkey: the model version its axon now signs its answers with (32
    bytes, never all zero) and that model's training step. Pays the `serve` fee."""

    version: bytes
    step: int
    KIND = "publish_version"


@dataclass(frozen=True)
class CommitWeights:
    """Sent by a registered hotkey on a chain with commit-reveal on: commit to a row of W by
    its hash ([`weights_commitment`]) without showing it."""

    commitment: bytes
    KIND = "commit_weights"


@dataclass(frozen=True)
class RevealWeights:
    """Sent by a registered hotkey: reveal the committed row and its 32-byte salt within the
    chain's reveal window."""

    uids: tuple[int, ...]
    values: tuple[float, ...]
    salt: bytes
    KIND = "reveal_weights"


@dataclass(frozen=True)
class SetTake:
    """Sent by a neuron's coldkey: the take it keeps of what the hotkey's stake earns, in parts
    of 65,535 (at most the chain's `delegation.max_take`). A decrease applies at once, an
    increase `delegation.take_notice` blocks later."""

    hotkey: bytes
    take: int
    KIND = "set_take"


@dataclass(frozen=True)
class BurnedRegister:
    """Sent by a coldkey: register `hotkey` as a neuron it owns, burning the chain's current
    registration burn (`agora_burn`) instead of doing proof of work."""

    hotkey: bytes
    KIND = "burned_register"


@dataclass(frozen=True)
class SubnetParams:
    """What a `CreateSubnet` chooses (`ledger::SubnetParams`): the mechanism by name, its tempo,
    table size, immunity, initial difficulty, weights rate limit, and commit-reveal as
    `(reveal_delay, reveal_window)` or None."""

    mechanism: str
    tempo: int
    max_neurons: int
    immunity_period: int
    difficulty: int
    weights_rate_limit: int
    commit_reveal: tuple[int, int] | None = None


@dataclass(frozen=True)
class CreateSubnet:
    """Sent by a coldkey: open the next subnet, burning the chain's `subnets.creation_cost`."""

    params: SubnetParams
    KIND = "create_subnet"


@dataclass(frozen=True)
class OnSubnet:
    """`call` (one that names a network) on subnet `netuid` rather than netuid 0
    (`ledger::Call::Subnet`); a plain call acts on netuid 0."""

    netuid: int
    call: "Call"
    KIND = "subnet"


Call = Union[Transfer, Register, RegisterBy, Serve, AddStake, RemoveStake, SetWeights, CommitWeights, RevealWeights,
             PublishVersion, SetTake, BurnedRegister, CreateSubnet, OnSubnet]
# The borsh variant index of each call: its position in `ledger::Call`.
CALLS: tuple[type, ...] = (
    Transfer,
    Register,
    RegisterBy,
    Serve,
    AddStake,
    RemoveStake,
    SetWeights,
    CommitWeights,
    RevealWeights,
    PublishVersion,
    SetTake,
    BurnedRegister,
    CreateSubnet,
    OnSubnet,
)


def _weight_row(uids: tuple[int, ...], values: tuple[float, ...]) -> bytes:
    """Borsh of the two sequences: u32 length then elements; floats by their IEEE-754 bits, so
    a NaN still encodes and reaches the ledger's validation (which refuses it with a reason)."""
    out = struct.pack("<I", len(uids)) + b"".join(struct.pack("<H", u) for u in uids)
    return out + struct.pack("<I", len(values)) + b"".join(struct.pack("<d", v) for v in values)


def weights_commitment(hotkey: bytes, uids: tuple[int, ...], values: tuple[float, ...], salt: bytes) -> bytes:
    """`ledger::commitment`: SHA-256("agora/weights-commit/v1" || hotkey || row || salt)."""
    return hashlib.sha256(b"agora/weights-commit/v1" + hotkey + _weight_row(uids, values) + salt).digest()


def set_weights(uids: list[int], values: list[float]) -> SetWeights:
    """A SetWeights call from values of any scale: checked (one finite, non-negative value per
    uid, no duplicate uid, a positive sum) and divided by their sum, as `agora tx weights` does."""
    if len(uids) != len(values):
        raise ValueError(f"{len(uids)} uids but {len(values)} values: give one value per uid")
    if len(set(uids)) != len(uids):
        raise ValueError("a uid appears twice: give each uid once")
    vs = [float(v) for v in values]
    if any(not math.isfinite(v) or v < 0 for v in vs):
        raise ValueError("weights must be finite and >= 0")
    total = math.fsum(vs)
    if not total > 0:
        raise ValueError("weights sum to 0: give at least one positive value")
    return SetWeights(tuple(int(u) for u in uids), tuple(v / total for v in vs))


# ---------------------------------------------------------------- borsh


class _Writer:
    """Borsh primitives: little-endian fixed-width integers, u32-length-prefixed sequences,
    enums as a u8 variant index followed by the variant's fields."""

    def __init__(self) -> None:
        self.out = bytearray()

    def u8(self, v: int) -> None:
        self.out += struct.pack("<B", v)

    def u16(self, v: int) -> None:
        self.out += struct.pack("<H", v)

    def u64(self, v: int) -> None:
        if not 0 <= v <= U64_MAX:
            raise ValueError(f"{v} does not fit a u64")
        self.out += struct.pack("<Q", v)

    def key(self, v: bytes) -> None:
        self.out += parse_public_key(v)

    def endpoint(self, e: Endpoint) -> None:
        ip = ipaddress.ip_address(e.ip)
        self.u8(0 if ip.version == 4 else 1)
        self.out += ip.packed
        self.u16(e.port)
        self.u8(e.protocol)
        self.u8(e.modality)


class _Reader:
    """The inverse of [`_Writer`], refusing truncated input."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = memoryview(bytes(data)), 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"truncated: {n} bytes wanted at offset {self.pos} of {len(self.data)}")
        b = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return b

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def endpoint(self) -> Endpoint:
        tag = self.u8()
        if tag > 1:
            raise ValueError(f"Ip variant {tag} does not exist")
        ip = ipaddress.ip_address(self.take(4 if tag == 0 else 16))
        port, protocol, modality = self.u16(), self.u8(), self.u8()
        if protocol != 0 or modality > 2:
            raise ValueError(f"protocol {protocol} or modality {modality} does not exist")
        return Endpoint(str(ip), port, protocol, modality)


def encode_call(call: Call) -> bytes:
    w = _Writer()
    w.u8(CALLS.index(type(call)))
    if isinstance(call, Transfer):
        w.key(call.to)
        w.u64(call.amount)
    elif isinstance(call, Register):
        w.key(call.coldkey)
        w.u64(call.pow_block)
        w.u64(call.pow_nonce)
    elif isinstance(call, RegisterBy):
        w.key(call.hotkey)
        w.key(call.coldkey)
        w.u64(call.stake)
    elif isinstance(call, Serve):
        w.endpoint(call.endpoint)
    elif isinstance(call, (AddStake, RemoveStake)):
        w.key(call.hotkey)
        w.u64(call.amount)
    elif isinstance(call, SetWeights):
        w.out += _weight_row(call.uids, call.values)
    elif isinstance(call, CommitWeights):
        w.key(call.commitment)
    elif isinstance(call, RevealWeights):
        w.out += _weight_row(call.uids, call.values)
        w.key(call.salt)
    elif isinstance(call, PublishVersion):
        w.key(call.version)
        w.u64(call.step)
    elif isinstance(call, SetTake):
        w.key(call.hotkey)
        if not 0 <= call.take <= 0xFFFF:
            raise ValueError(f"take {call.take} does not fit a u16 (parts of 65535)")
        w.u16(call.take)
    elif isinstance(call, BurnedRegister):
        w.key(call.hotkey)
    elif isinstance(call, CreateSubnet):
        p = call.params
        name = p.mechanism.encode()
        w.out += struct.pack("<I", len(name)) + name
        w.u64(p.tempo)
        w.out += struct.pack("<I", p.max_neurons)
        for v in (p.immunity_period, p.difficulty, p.weights_rate_limit):
            w.u64(v)
        if p.commit_reveal is None:
            w.u8(0)
        else:
            w.u8(1)
            w.u64(p.commit_reveal[0])
            w.u64(p.commit_reveal[1])
    elif isinstance(call, OnSubnet):
        if isinstance(call.call, OnSubnet):
            raise ValueError("a subnet call cannot wrap another subnet call")
        w.u16(call.netuid)
        w.out += encode_call(call.call)
    return bytes(w.out)


def _decode_call(r: _Reader) -> Call:
    tag = r.u8()
    if tag == 0:
        return Transfer(r.take(32), r.u64())
    if tag == 1:
        return Register(r.take(32), r.u64(), r.u64())
    if tag == 2:
        return RegisterBy(r.take(32), r.take(32), r.u64())
    if tag == 3:
        return Serve(r.endpoint())
    if tag in (4, 5):
        return (AddStake if tag == 4 else RemoveStake)(r.take(32), r.u64())
    if tag in (6, 8):
        uids = tuple(r.u16() for _ in range(r.u32()))
        values = tuple(struct.unpack("<d", r.take(8))[0] for _ in range(r.u32()))
        return SetWeights(uids, values) if tag == 6 else RevealWeights(uids, values, r.take(32))
    if tag == 7:
        return CommitWeights(r.take(32))
    if tag == 9:
        return PublishVersion(r.take(32), r.u64())
    if tag == 10:
        return SetTake(r.take(32), r.u16())
    if tag == 11:
        return BurnedRegister(r.take(32))
    if tag == 12:
        mechanism = r.take(r.u32()).decode()
        tempo, max_neurons = r.u64(), r.u32()
        immunity, difficulty, rate_limit = r.u64(), r.u64(), r.u64()
        flag = r.u8()
        if flag > 1:
            raise ValueError(f"Option tag {flag} does not exist")
        cr = (r.u64(), r.u64()) if flag == 1 else None
        return CreateSubnet(SubnetParams(mechanism, tempo, max_neurons, immunity, difficulty, rate_limit, cr))
    if tag == 13:
        netuid = r.u16()
        if r.data[r.pos:r.pos + 1] == b"\x0d":
            raise ValueError("a subnet call cannot wrap another subnet call")
        return OnSubnet(netuid, _decode_call(r))
    raise ValueError(f"Call variant {tag} does not exist")


@dataclass(frozen=True)
class TxBody:
    """The signed part of a transaction (`ledger::TxBody`)."""

    sender: bytes
    nonce: int
    fee: int
    call: Call

    def encode(self) -> bytes:
        w = _Writer()
        w.key(self.sender)
        w.u64(self.nonce)
        w.u64(self.fee)
        return bytes(w.out) + encode_call(self.call)

    def hash(self) -> bytes:
        return hashlib.sha256(BODY_TAG + self.encode()).digest()

    def sign(self, key: Keypair, chain_id: str) -> "SignedTx":
        if key.public != parse_public_key(self.sender):
            raise ValueError(f"the sender {self.sender.hex()} is not the signing key {key.public.hex()}")
        return SignedTx(self, key.sign(signing_message(chain_id, self.hash())))


def signing_message(chain_id: str, body_hash: bytes) -> bytes:
    """What the sender signs: the chain id separates chains, the tag separates transactions
    from anything else a key signs (peer-protocol requests)."""
    cid = chain_id.encode()[:255]
    return SIGN_TAG + bytes([len(cid)]) + cid + body_hash


@dataclass(frozen=True)
class SignedTx:
    """A transaction as it travels (`agora_submitTransaction` takes `encode().hex()`)."""

    body: TxBody
    signature: bytes = field(repr=False)

    def encode(self) -> bytes:
        return self.body.encode() + self.signature

    @property
    def id(self) -> bytes:
        return hashlib.sha256(ID_TAG + self.body.hash() + self.signature).digest()

    def verify(self, chain_id: str) -> bool:
        return verify(self.body.sender, self.signature, signing_message(chain_id, self.body.hash()))

    @classmethod
    def decode(cls, data: bytes, max_bytes: int = 1 << 16) -> "SignedTx":
        """Bytes -> transaction, refusing more than `max_bytes`, truncation and trailing bytes
        (one encoding per transaction, as the ledger requires)."""
        if len(data) > max_bytes:
            raise ValueError(f"{len(data)} bytes, more than the limit of {max_bytes}")
        r = _Reader(data)
        sender, nonce, fee = r.take(32), r.u64(), r.u64()
        call = _decode_call(r)
        signature = r.take(64)
        if r.pos != len(r.data):
            raise ValueError(f"{len(r.data) - r.pos} trailing bytes after the transaction")
        return cls(TxBody(sender, nonce, fee, call), signature)


# ---------------------------------------------------------------- proof of work


def seal(block_hash: bytes, hotkey: bytes, nonce: int) -> bytes:
    """`ledger::pow::seal`: SHA-256("agora/pow/v1" || block_hash || hotkey || u64le(nonce))."""
    return hashlib.sha256(POW_TAG + block_hash + hotkey + struct.pack("<Q", nonce)).digest()


def meets(seal_bytes: bytes, difficulty: int) -> bool:
    """Whether seal * difficulty < 2^256, the seal read big-endian (about 1/difficulty odds)."""
    return int.from_bytes(seal_bytes, "big") * difficulty < (1 << 256)


def solve_pow(block_hash: bytes, hotkey: bytes, difficulty: int, start: int = 0, tries: int = 1 << 40) -> int | None:
    """The first nonce in `start..start+tries` whose seal meets `difficulty` (about
    `difficulty` hashes), or None."""
    prefix = hashlib.sha256(POW_TAG + block_hash + hotkey)
    bound = 1 << 256
    for n in range(start, start + tries):
        h = prefix.copy()
        h.update(struct.pack("<Q", n))
        if int.from_bytes(h.digest(), "big") * difficulty < bound:
            return n
    return None
