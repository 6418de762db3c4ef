"""The chain client against a real dev node (`agora node --dev --instant`): reads, every
transaction kind signed in Python, the ledger's refusals as exceptions, and the wallet format
shared with the CLI (the Rust side unlocks a coldkey sealed here to send a transfer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agora import errors, tx
from agora.chain import Chain
from agora.errors import ChainUnreachable, TxError
from agora.keys import dev_key
from agora.wallet import INSECURE_FOR_TESTS, Wallet

from conftest import DevNode, run_agora

pytestmark = pytest.mark.node


@pytest.fixture(scope="module", params=["http", "ws"])
def chain(request: pytest.FixtureRequest, dev_node: DevNode) -> Chain:
    c = Chain(dev_node.http if request.param == "http" else dev_node.ws)
    yield c
    c.close()


def test_reads(chain: Chain) -> None:
    head = chain.head()
    assert head.height >= 0 and len(head.hash) == 32
    g = chain.genesis()
    assert g["chain_id"] == "agora-dev" and chain.min_fee("transfer") == g["fees"]["transfer"]
    alice = chain.account(dev_key("alice").public)
    assert alice.balance > 0
    assert chain.account(bytes(32)).balance == 0
    assert chain.difficulty() > 0
    m = chain.metagraph()
    assert m.n == len(m.hotkeys) and m.S.dtype == np.uint64 and m.W.shape == (m.n, m.n)
    with pytest.raises(errors.RpcError) as e:
        chain.neuron(uid=60000)
    assert e.value.code == -33013


def test_a_participant_does_everything_in_python(chain: Chain, tmp_path: Path) -> None:
    alice = dev_key("alice")
    wal, _ = Wallet.create("py", "pw", root=tmp_path, kdf=INSECURE_FOR_TESTS)
    cold = wal.unlock_coldkey("pw")
    wal.create_hotkey("miner")
    hot = wal.hotkey("miner")
    chain.transfer(alice, cold.public, tx.tokens(100))
    chain.transfer(cold, hot.public, tx.tokens(1))
    assert chain.account(cold.public).balance == tx.tokens(99) - chain.min_fee("transfer")
    uid = chain.register(hot, cold.public)
    assert chain.register(hot, cold.public) == uid, "registering twice returns the uid"
    assert chain.serve(hot, "203.0.113.7", 8091) is not None
    assert chain.serve(hot, "203.0.113.7", 8091) is None, "an unchanged endpoint is not sent again"
    chain.add_stake(cold, hot.public, tx.tokens(10))
    chain.remove_stake(cold, hot.public, tx.tokens("2.5"))
    height = chain.set_weights(hot, [uid], [3.0])
    m = chain.metagraph()
    assert m.uid_of(hot.public) == uid and m.coldkeys[uid] == cold.public
    assert m.S[uid] == tx.tokens("7.5")
    assert m.endpoints[uid] is not None and m.endpoints[uid].address == "203.0.113.7:8091"
    assert m.last_update[uid] == height and m.weight_rows[uid] == [(uid, 1.0)] and m.W[uid, uid] == 1.0
    n = chain.neuron(hotkey=hot.public)
    assert n["uid"] == uid and chain.neuron(uid=uid)["hotkey"] == hot.public_hex
    rows = m.rows()
    assert rows[uid]["stake"] == tx.tokens("7.5") and "203.0.113.7:8091" in m.table()
    block = chain.block(height)
    assert any(r["status"]["status"] == "applied" for r in block["receipts"])
    assert chain.block(bytes.fromhex(block["hash"]))["hash"] == block["hash"]


def test_refusals_are_typed_and_change_nothing(chain: Chain) -> None:
    """The node checks a sender's first pending transaction with the ledger's full rules, so a
    bad call is refused at submission: no block, no fee, the nonce unused."""
    bob = dev_key("bob")
    hot = dev_key(f"refusals-{chain.url}")
    chain.transfer(dev_key("alice"), hot.public, tx.tokens(1))
    chain.register(hot, bob.public)
    n = chain.metagraph().n
    before_bob, before_hot = chain.account(bob.public), chain.account(hot.public)
    with pytest.raises(errors.BY_KIND["not_registered"]) as e:
        chain.set_weights(bob, [0], [1.0])
    assert e.value.stage == "submission" and not e.value.fee_paid
    with pytest.raises(errors.BY_KIND["unknown_uid"]) as e:
        chain.set_weights(hot, [n + 5], [1.0])
    assert e.value.details == {"uid": n + 5, "n": n} and f"uid {n + 5}" in str(e.value)
    with pytest.raises(errors.BY_KIND["bad_weight"]):
        chain.submit(chain.sign(hot, tx.SetWeights((0,), (float("nan"),))))
    with pytest.raises(errors.BY_KIND["not_normalized"]):
        chain.submit(chain.sign(hot, tx.SetWeights((0,), (0.5,))))
    poor = dev_key("nobody-has-funds")
    with pytest.raises(errors.BY_KIND["cannot_pay_fee"]):
        chain.transfer(poor, bob.public, 1)
    with pytest.raises(errors.BY_KIND["insufficient_balance"]):
        chain.transfer(bob, poor.public, 10**18)
    with pytest.raises(errors.BY_KIND["fee_too_low"]):
        chain.transact(bob, tx.Transfer(bob.public, 1), fee=0)
    wrong_chain = tx.TxBody(bob.public, before_bob.nonce, 10_000, tx.Transfer(bob.public, 1)).sign(bob, "other")
    with pytest.raises(errors.BY_KIND["bad_signature"]):
        chain.submit(wrong_chain)
    assert chain.account(bob.public) == before_bob and chain.account(hot.public) == before_hot
    # A replay of an included transaction.
    signed = chain.sign(bob, tx.Transfer(dev_key("carol").public, 1))
    chain.wait_for(chain.submit(signed))
    with pytest.raises(errors.BY_KIND["nonce_reused"]) as e:
        chain.submit(signed)
    assert "nonce" in str(e.value)


def test_new_heads_arrive_over_a_websocket(chain: Chain) -> None:
    # Subscribed before the transfer: the (instant) block that includes it must arrive.
    with chain.subscribe_new_heads(timeout=30) as heads:
        height = chain.transfer(dev_key("dave"), dev_key("eve").public, 1)
        first = next(heads)
        assert first["height"] == height and len(bytes.fromhex(first["hash"])) == 32
        with pytest.raises(TimeoutError):
            heads.timeout = 0.5
            next(heads)


def test_the_rust_cli_unlocks_a_coldkey_sealed_here(chain: Chain, dev_node: DevNode, tmp_path: Path) -> None:
    wal, _ = Wallet.create("sealed-in-python", "py-pw", root=tmp_path, kdf=INSECURE_FOR_TESTS)
    cold = wal.unlock_coldkey("py-pw")
    chain.transfer(dev_key("ferdie"), cold.public, tx.tokens(2))
    target = dev_key(f"target-of-the-cli-{chain.url}").public
    run_agora("tx", "transfer", "--wallet", "sealed-in-python", "--wallet-dir", str(tmp_path), "--to", target.hex(),
              "--amount", "1", "--chain", dev_node.http, env={"AGORA_PASSWORD": "py-pw"})
    assert chain.account(target).balance == tx.tokens(1)
    bad = run_agora("tx", "transfer", "--wallet", "sealed-in-python", "--wallet-dir", str(tmp_path), "--to", target.hex(),
                    "--amount", "1", "--chain", dev_node.http, env={"AGORA_PASSWORD": "wrong"}, check=False)
    assert bad.returncode != 0 and "wrong password" in bad.stderr


def test_an_unreachable_node_says_so() -> None:
    with pytest.raises(ChainUnreachable, match="agora node --dev"):
        Chain("http://127.0.0.1:1").head()
    with pytest.raises(ChainUnreachable):
        Chain("ws://127.0.0.1:1").head()
    with pytest.raises(ValueError, match="http:// or ws://"):
        Chain("127.0.0.1:9960")
