"""The transaction encoding against the ledger's own vectors (docs/vectors/transactions.json,
written and checked by crates/ledger/tests/vectors.rs): a Python transaction is the Rust one,
byte for byte, or these fail."""

from __future__ import annotations

import math

import pytest

from agora import errors, tx
from agora.keys import Keypair, dev_key


def body_from_json(v: dict) -> tx.TxBody:
    """The node's JSON of a TxBody (serde) -> the Python TxBody."""
    return tx.TxBody(bytes.fromhex(v["sender"]), v["nonce"], v["fee"], call_from_json(v["call"]))


def call_from_json(v: dict) -> tx.Call:
    """The node's JSON of a Call (serde) -> the Python call."""
    c = dict(v)
    kind = c.pop("type")
    key = bytes.fromhex
    if kind == "transfer":
        call: tx.Call = tx.Transfer(key(c["to"]), c["amount"])
    elif kind == "register":
        call = tx.Register(key(c["coldkey"]), c["pow_block"], c["pow_nonce"])
    elif kind == "register_by":
        call = tx.RegisterBy(key(c["hotkey"]), key(c["coldkey"]), c["stake"])
    elif kind == "serve":
        call = tx.Serve(tx.Endpoint.from_json(c["endpoint"]))
    elif kind == "add_stake":
        call = tx.AddStake(key(c["hotkey"]), c["amount"])
    elif kind == "remove_stake":
        call = tx.RemoveStake(key(c["hotkey"]), c["amount"])
    elif kind == "set_weights":
        call = tx.SetWeights(tuple(c["uids"]), tuple(float(x) for x in c["values"]))
    elif kind == "commit_weights":
        call = tx.CommitWeights(key(c["commitment"]))
    elif kind == "reveal_weights":
        call = tx.RevealWeights(tuple(c["uids"]), tuple(float(x) for x in c["values"]), key(c["salt"]))
    elif kind == "publish_version":
        call = tx.PublishVersion(key(c["version"]), c["step"])
    elif kind == "set_take":
        call = tx.SetTake(key(c["hotkey"]), c["take"])
    elif kind == "burned_register":
        call = tx.BurnedRegister(key(c["hotkey"]))
    elif kind == "create_subnet":
        p = dict(c["params"])
        cr = p.pop("commit_reveal")
        call = tx.CreateSubnet(tx.SubnetParams(**p, commit_reveal=cr and (cr["reveal_delay"], cr["reveal_window"])))
    elif kind == "subnet":
        call = tx.OnSubnet(c["netuid"], call_from_json(c["call"]))
    else:
        raise AssertionError(f"unknown call {kind}")
    return call


def test_every_vector_encodes_hashes_signs_and_identifies_as_the_ledger_does(vectors: dict) -> None:
    kinds = set()
    for v in vectors["transactions"]:
        key = dev_key(v["signer_dev_key"])
        assert key.seed.hex() == v["signer_seed"], "dev keys derive as ledger::dev_key"
        body = body_from_json(v["body"])
        kinds.add(body.call.KIND)
        assert body.encode().hex() == v["body_hex"], v["name"]
        assert body.hash().hex() == v["body_hash"], v["name"]
        assert tx.signing_message(v["chain_id"], body.hash()).hex() == v["signing_message"], v["name"]
        signed = body.sign(key, v["chain_id"])
        # ed25519 is deterministic (RFC 8032): the same key and message give the same signature.
        assert signed.signature.hex() == v["signature"], v["name"]
        assert signed.encode().hex() == v["tx_hex"], v["name"]
        assert signed.id.hex() == v["id"], v["name"]
        assert signed.verify(v["chain_id"]) and not signed.verify(v["chain_id"] + "x")
    assert kinds == {c.KIND for c in tx.CALLS}, "every call kind has a vector"


def test_the_reveal_vector_opens_the_commit_vector(vectors: dict) -> None:
    by_name = {v["name"]: body_from_json(v["body"]) for v in vectors["transactions"]}
    commit, reveal = by_name["commit_weights"], by_name["reveal_weights"]
    assert isinstance(commit.call, tx.CommitWeights) and isinstance(reveal.call, tx.RevealWeights)
    opened = tx.weights_commitment(reveal.sender, reveal.call.uids, reveal.call.values, reveal.call.salt)
    assert opened == commit.call.commitment


def test_decoding_round_trips_and_refuses_what_the_ledger_refuses(vectors: dict) -> None:
    for v in vectors["transactions"]:
        raw = bytes.fromhex(v["tx_hex"])
        t = tx.SignedTx.decode(raw)
        assert t.body == body_from_json(v["body"]) and t.encode() == raw
        with pytest.raises(ValueError, match="trailing"):
            tx.SignedTx.decode(raw + b"\0")
        with pytest.raises(ValueError, match="truncated"):
            tx.SignedTx.decode(raw[:-1])
        with pytest.raises(ValueError, match="limit"):
            tx.SignedTx.decode(raw, max_bytes=len(raw) - 1)
    bad_variant = bytes(32 + 16) + bytes([14])
    with pytest.raises(ValueError, match="variant 14"):
        tx.SignedTx.decode(bad_variant)
    # A subnet call inside a subnet call is refused, as the ledger refuses it.
    nested = bytes(32 + 16) + bytes([13, 1, 0, 13, 2, 0, 11]) + bytes(32 + 64)
    with pytest.raises(ValueError, match="cannot wrap"):
        tx.SignedTx.decode(nested)


def test_proof_of_work_seals_match(vectors: dict) -> None:
    for v in vectors["pow"]:
        block, hotkey = bytes.fromhex(v["block_hash"]), bytes.fromhex(v["hotkey"])
        s = tx.seal(block, hotkey, v["nonce"])
        assert s.hex() == v["seal"]
        assert tx.meets(s, v["difficulty"]) == v["meets"]
    met = vectors["pow"][0]
    # The ledger's solver finds the first nonce that meets the difficulty; so does this one.
    assert tx.solve_pow(bytes.fromhex(met["block_hash"]), bytes.fromhex(met["hotkey"]), met["difficulty"]) == met["nonce"]


def test_every_refusal_kind_becomes_its_exception(vectors: dict) -> None:
    seen = set()
    for v in vectors["errors"]:
        e = errors.tx_error(v["json"], v["message"])
        assert type(e) is errors.BY_KIND[v["json"]["error"]], v
        assert e.kind == v["json"]["error"] and e.message == v["message"]
        assert isinstance(e, errors.TxError) and not e.fee_paid
        seen.add(e.kind)
    assert seen == set(errors.BY_KIND), "the Python table names exactly the ledger's kinds"
    failed = errors.tx_error({"error": "unknown_uid", "details": {"uid": 9, "n": 4}}, stage="failed")
    assert isinstance(failed, errors.UnknownUid) and failed.fee_paid and "uid 9" in str(failed)
    newer = errors.tx_error({"error": "something_new", "details": {"x": 1}})
    assert type(newer) is errors.TxError and newer.kind == "something_new"


def test_set_weights_normalises_and_refuses_bad_rows() -> None:
    c = tx.set_weights([3, 1], [3, 1])
    assert c.uids == (3, 1) and c.values == (0.75, 0.25)
    for uids, values, msg in [([1, 1], [1, 1], "twice"), ([1], [math.nan], "finite"), ([1], [-1.0], "finite"),
                              ([1, 2], [0, 0], "sum to 0"), ([1, 2], [1.0], "one value per uid")]:
        with pytest.raises(ValueError, match=msg):
            tx.set_weights(uids, values)


def test_token_amounts_are_exact() -> None:
    assert tx.tokens("0.000000001") == 1
    assert tx.tokens("100") == 100 * tx.UNITS_PER_TOKEN
    assert tx.tokens(2) == 2_000_000_000
    for bad in ["1.0000000001", "-1", "abc", "1e30"]:
        with pytest.raises(ValueError):
            tx.tokens(bad)
    with pytest.raises(TypeError):
        tx.tokens(0.1)  # type: ignore[arg-type]


def test_a_signature_binds_the_sender() -> None:
    alice, bob = dev_key("alice"), dev_key("bob")
    body = tx.TxBody(alice.public, 0, 1, tx.Transfer(bob.public, 5))
    with pytest.raises(ValueError, match="not the signing key"):
        body.sign(bob, "agora-dev")
    forged = tx.SignedTx(body, bob.sign(tx.signing_message("agora-dev", body.hash())))
    assert not forged.verify("agora-dev")
    assert Keypair(alice.seed).public == alice.public
