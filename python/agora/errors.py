"""The ledger's refusals as Python exceptions.

The node reports why it refused a transaction as the ledger's `TxError` in JSON,
`{"error": "<kind>", "details": {...}}` (docs/rpc.md): in error -33010 at submission, and in a
receipt's `failed` or `rejected` status once a block included it. Each kind is a subclass of
[`TxError`] here, so a caller catches exactly what it can act on (`except UnknownUid`), and every
instance carries the kind, the details and the node's sentence saying what to fix.
"""

from __future__ import annotations

from typing import Any


class AgoraError(Exception):
    """Base of every error this package raises on purpose."""


class RpcError(AgoraError):
    """A JSON-RPC error that is not a transaction refusal (docs/rpc.md lists the codes)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"JSON-RPC error {code}: {message}")
        self.code, self.message, self.data = code, message, data


class ChainUnreachable(AgoraError):
    """No node answered at the URL."""


class TxError(AgoraError):
    """A transaction the ledger refused.

    `kind` is the ledger's snake_case name (`unknown_uid`), `details` its fields,
    `message` the node's explanation when it sent one. `stage` says where it was refused:
    `submission` (the mempool refused it: nothing happened), `rejected` (a block recorded it
    but it changed nothing, no fee) or `failed` (the fee was paid and the nonce used, nothing
    else changed).
    """

    kind: str = "unknown"

    def __init__(self, kind: str, details: Any = None, message: str | None = None, stage: str = "submission"):
        self.kind, self.details, self.stage = kind, details, stage
        self.message = message or describe(kind, details)
        super().__init__(f"{kind}: {self.message}" if stage == "submission" else f"{stage}: {kind}: {self.message}")

    @property
    def fee_paid(self) -> bool:
        """True when the transaction was included as failed: its fee is gone."""
        return self.stage == "failed"


def describe(kind: str, details: Any) -> str:
    """A sentence for a refusal that came without the node's message (a receipt)."""
    if isinstance(details, dict):
        return ", ".join(f"{k} {v}" for k, v in details.items()) or kind.replace("_", " ")
    if details is None:
        return kind.replace("_", " ")
    return str(details)


# (kind, class name, why): every variant of `ledger::TxError`, in its declaration order. The
# shared vectors (docs/vectors/transactions.json, "errors") pin the JSON of each.
KINDS: list[tuple[str, str, str]] = [
    ("oversized", "Oversized", "the transaction is larger than the chain's limit"),
    ("malformed", "Malformed", "the transaction bytes do not decode"),
    ("bad_public_key", "BadPublicKey", "the sender is not a valid ed25519 public key"),
    ("bad_signature", "BadSignature", "the signature does not verify for this sender and chain id"),
    ("nonce_reused", "NonceReused", "the nonce was already used: a replay or a duplicate"),
    ("nonce_too_high", "NonceTooHigh", "the nonce is ahead of the account's next nonce"),
    ("fee_too_low", "FeeTooLow", "the fee is below the chain's minimum for the kind"),
    ("cannot_pay_fee", "CannotPayFee", "the sender's balance does not cover the fee"),
    ("zero_amount", "ZeroAmount", "an amount must be greater than zero"),
    ("insufficient_balance", "InsufficientBalance", "the balance does not cover the amount"),
    ("insufficient_stake", "InsufficientStake", "the neuron has less stake than requested"),
    ("not_registered", "NotRegistered", "the hotkey is not registered"),
    ("already_registered", "AlreadyRegistered", "the hotkey is registered already"),
    ("not_owner", "NotOwner", "the sender is not the hotkey's coldkey"),
    ("weight_length_mismatch", "WeightLengthMismatch", "uids and values differ in length"),
    ("empty_weights", "EmptyWeights", "a weight row needs at least one uid"),
    ("too_many_weights", "TooManyWeights", "the row is longer than the chain allows"),
    ("unknown_uid", "UnknownUid", "a uid is not in the network"),
    ("duplicate_uid", "DuplicateUid", "a uid appears twice in the row"),
    ("bad_weight", "BadWeight", "a weight is NaN, infinite or negative"),
    ("not_normalized", "NotNormalized", "the row does not sum to 1 within 1e-6"),
    ("weights_rate_limited", "WeightsRateLimited", "weights were set too recently"),
    ("weight_change_too_large", "WeightChangeTooLarge", "the row moves further than the bounded change"),
    ("pow_block_out_of_window", "PowBlockOutOfWindow", "the proof of work names a block too old"),
    ("pow_too_weak", "PowTooWeak", "the proof of work does not meet the difficulty"),
    ("table_full_all_immune", "TableFullAllImmune", "the neuron table is full and all are immune"),
    ("registration_limit", "RegistrationLimit", "this block has all the registrations it takes"),
    ("bad_endpoint", "BadEndpoint", "the endpoint is refused"),
    ("overflow", "Overflow", "an amount overflowed"),
    ("pending_spend_exceeds_balance", "PendingSpendExceedsBalance",
     "pending transactions may spend what this one needs"),
    ("free_behind_pending", "FreeBehindPending", "a free transaction must be its sender's next one"),
    ("commit_reveal_disabled", "CommitRevealDisabled", "commit-reveal is off on this chain"),
    ("commit_reveal_required", "CommitRevealRequired", "commit-reveal is on: commit, then reveal"),
    ("no_weights_commit", "NoWeightsCommit", "there is no commitment to reveal"),
    ("reveal_too_early", "RevealTooEarly", "the reveal window has not opened yet"),
    ("reveal_too_late", "RevealTooLate", "the reveal window has closed"),
    ("reveal_mismatch", "RevealMismatch", "the revealed row and salt do not match the commitment"),
    ("unversioned_model", "UnversionedModel", "an all-zero model version names no model"),
    ("model_version_unchanged", "ModelVersionUnchanged", "this model version is already the one published"),
    ("insufficient_nomination", "InsufficientNomination", "the coldkey nominated less than requested on the hotkey"),
    ("nomination_too_small", "NominationTooSmall", "a nomination would hold less than the chain's minimum"),
    ("too_many_nominators", "TooManyNominators", "the hotkey has the most nominators the chain allows"),
    ("take_out_of_bounds", "TakeOutOfBounds", "the take is above the chain's maximum"),
    ("unknown_subnet", "UnknownSubnet", "the call names a subnet that does not exist"),
    ("not_a_subnet_call", "NotASubnetCall", "the call does not name a network, so it cannot go to a subnet"),
    ("subnet_cost_not_covered", "SubnetCostNotCovered", "the balance does not cover the subnet creation cost"),
    ("subnet_limit", "SubnetLimit", "the chain has the most subnets it allows"),
    ("bad_subnet_params", "BadSubnetParams", "the subnet parameters are refused"),
    ("subnets_need_per_epoch_emission", "SubnetsNeedPerEpochEmission", "a lazy-emission chain has no subnets"),
]

BY_KIND: dict[str, type[TxError]] = {}
for _kind, _name, _why in KINDS:
    _cls = type(_name, (TxError,), {"kind": _kind, "__doc__": f"Refused: {_why} (`TxError::{_name}`)."})
    globals()[_name] = _cls
    BY_KIND[_kind] = _cls
del _kind, _name, _why, _cls


def tx_error(value: Any, message: str | None = None, stage: str = "submission") -> TxError:
    """The exception for a `TxError` as JSON (`{"error": kind, "details": ...}`); an unknown
    kind (a newer node) still becomes a `TxError` with its kind and details."""
    if isinstance(value, dict) and "error" in value:
        kind, details = str(value["error"]), value.get("details")
    else:
        kind, details = "unknown", value
    return BY_KIND.get(kind, TxError)(kind, details, message, stage)


__all__ = ["AgoraError", "RpcError", "ChainUnreachable", "TxError", "tx_error", "BY_KIND", "KINDS"] + [
    name for _, name, _ in KINDS
]
