"""A client of the node's JSON-RPC (docs/rpc.md), over HTTP or WebSocket, and the transactions a
participant sends through it.

`Chain("http://127.0.0.1:9960")` or `Chain("ws://127.0.0.1:9960")`: every `agora_*` method has a
method here; `subscribe_new_heads()` needs a WebSocket and yields every committed block. The
transaction helpers (`transfer`, `register`, `serve`, `add_stake`, `remove_stake`,
`set_weights`) read the sender's nonce, the chain id and the minimum fee from the node, sign in
Python, submit, wait for the block and return its height; a refusal at submission or in the
block raises the ledger's reason as a [`agora.errors.TxError`] subclass.

One transaction at a time per key: the nonce is read from the chain, so two concurrent
submissions by the same key collide (the second is refused with `NonceReused` or
`nonce pending`).
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .errors import ChainUnreachable, RpcError, TxError, tx_error
from .keys import Keypair, parse_public_key
from .metagraph import Metagraph
from .tx import (AddStake, Call, Endpoint, Register, RemoveStake, Serve, SignedTx, Transfer, TxBody, set_weights,
                 solve_pow)

TX_REJECTED = -33010
NONCE_PENDING = -33012
NOT_FOUND = -33013

# The fee schedule's field for each call kind (genesis `fees`).
FEE_FIELD = {"transfer": "transfer", "register": "register", "register_by": "register_by", "serve": "serve",
             "add_stake": "add_stake", "remove_stake": "remove_stake", "set_weights": "set_weights",
             # The two halves of a set_weights pay what it pays; publish_version pays serve's.
             "commit_weights": "set_weights", "reveal_weights": "set_weights",
             "publish_version": "serve", "set_take": "set_take", "burned_register": "burned_register"}


@dataclass(frozen=True)
class Head:
    """The last committed block (`agora_head`)."""

    height: int
    hash: bytes
    timestamp_ms: int
    state_root: bytes

    @classmethod
    def from_json(cls, v: dict) -> "Head":
        return cls(int(v["height"]), bytes.fromhex(v["hash"]), int(v["timestamp_ms"]), bytes.fromhex(v["state_root"]))


@dataclass(frozen=True)
class Account:
    """Free balance (base units) and the nonce the next transaction must carry."""

    key: bytes
    balance: int
    nonce: int


class _Http:
    """JSON-RPC over HTTP POST, one keep-alive connection, reopened when the node closed it."""

    def __init__(self, url: str, timeout: float) -> None:
        u = urllib.parse.urlsplit(url)
        self.url, self.host, self.port, self.path = url, u.hostname or "127.0.0.1", u.port or 80, u.path or "/"
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None
        self.lock = threading.Lock()

    def request(self, payload: bytes) -> bytes:
        with self.lock:
            for attempt in (0, 1):
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                try:
                    self.conn.request("POST", self.path, payload, {"content-type": "application/json"})
                    resp = self.conn.getresponse()
                    body = resp.read()
                    if resp.status != 200:
                        raise RpcError(resp.status, f"HTTP {resp.status} {resp.reason}: {body[:200]!r}")
                    return body
                except (ConnectionError, http.client.HTTPException, OSError) as e:
                    self.conn.close()
                    self.conn = None
                    # A keep-alive connection the node closed while idle fails once: retry on a
                    # fresh one before calling the node unreachable.
                    if attempt == 1:
                        raise ChainUnreachable(f"cannot reach the node at {self.url} ({e}): is `agora node --dev` running there?") from e
            raise AssertionError("unreachable")

    def close(self) -> None:
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None


def _ws_connect(url: str, timeout: float) -> Any:
    """An open WebSocket to `url`. Entered by hand: the connection lives as long as its owner,
    not one `with` block (websockets >= 17 warns on a bare `connect()`)."""
    from websockets.sync.client import connect

    return connect(url, open_timeout=timeout, max_size=None).__enter__()


class _Ws:
    """JSON-RPC over one WebSocket; calls are serialised (one request in flight at a time)."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout
        self.ws: Any = None
        self.lock = threading.Lock()

    def _connect(self) -> Any:
        try:
            return _ws_connect(self.url, self.timeout)
        except (OSError, TimeoutError) as e:
            raise ChainUnreachable(f"cannot reach the node at {self.url} ({e}): is `agora node --dev` running there?") from e

    def request(self, payload: bytes) -> bytes:
        from websockets.exceptions import ConnectionClosed

        with self.lock:
            for attempt in (0, 1):
                if self.ws is None:
                    self.ws = self._connect()
                try:
                    self.ws.send(payload.decode())
                    want = json.loads(payload)["id"]
                    while True:
                        msg = self.ws.recv(timeout=self.timeout)
                        if json.loads(msg).get("id") == want:
                            return msg.encode() if isinstance(msg, str) else msg
                except (ConnectionClosed, OSError, TimeoutError) as e:
                    self.close_locked()
                    if attempt == 1:
                        raise ChainUnreachable(f"the WebSocket to {self.url} failed: {e}") from e
            raise AssertionError("unreachable")

    def close_locked(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:  # noqa: BLE001 - closing a broken socket may fail; it is gone either way
                pass
            self.ws = None

    def close(self) -> None:
        with self.lock:
            self.close_locked()


class HeadSubscription:
    """An `agora_subscribeNewHeads` subscription ([`Chain.subscribe_new_heads`])."""

    def __init__(self, url: str, open_timeout: float, timeout: float | None) -> None:
        url = url if url.startswith(("ws://", "wss://")) else "ws" + url[4:]
        self.timeout = timeout
        try:
            self.ws = _ws_connect(url, open_timeout)
        except (OSError, TimeoutError) as e:
            raise ChainUnreachable(f"cannot open a WebSocket to {url} ({e}): is `agora node --dev` running there?") from e
        try:
            self.ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "agora_subscribeNewHeads", "params": []}))
            reply = json.loads(self.ws.recv(timeout=open_timeout))
            if "error" in reply:
                e = reply["error"]
                raise RpcError(int(e.get("code", 0)), str(e.get("message")), e.get("data"))
            self.id = reply["result"]
        except BaseException:
            self.ws.close()
            raise

    def __iter__(self) -> "HeadSubscription":
        return self

    def __next__(self) -> dict:
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                msg = json.loads(self.ws.recv(timeout=self.timeout))
            except ConnectionClosed as e:
                raise ChainUnreachable(f"the node closed the subscription: {e}") from e
            params = msg.get("params") or {}
            if msg.get("method") == "agora_newHead" and params.get("subscription") == self.id:
                return params["result"]

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> "HeadSubscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Chain:
    """A node's JSON-RPC API. Thread-safe: calls from several threads are serialised on the
    connection."""

    def __init__(self, url: str = "http://127.0.0.1:9960", timeout: float = 30.0, poll: float = 0.05,
                 wait_timeout: float = 60.0) -> None:
        if url.startswith(("ws://", "wss://")):
            self.transport: _Http | _Ws = _Ws(url, timeout)
        elif url.startswith(("http://", "https://")):
            self.transport = _Http(url, timeout)
        else:
            raise ValueError(f"{url!r}: the chain URL starts with http:// or ws://")
        self.url, self.timeout, self.poll, self.wait_timeout = url, timeout, poll, wait_timeout
        self._ids = itertools.count(1)
        self._genesis: dict | None = None

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "Chain":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ raw calls

    def call(self, method: str, *params: Any) -> Any:
        """One JSON-RPC call; a node error becomes an [`RpcError`] (a transaction refusal, code
        -33010, the ledger's [`TxError`] subclass)."""
        payload = json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        reply = json.loads(self.transport.request(payload.encode()))
        err = reply.get("error")
        if err is not None:
            code, message, data = int(err.get("code", 0)), str(err.get("message", "")), err.get("data")
            if code == TX_REJECTED:
                raise tx_error(data, message, "submission")
            raise RpcError(code, message, data)
        return reply.get("result")

    # ------------------------------------------------------------ reads

    def head(self) -> Head:
        return Head.from_json(self.call("agora_head"))

    def genesis(self) -> dict:
        """The genesis configuration (chain id, fees, weight rules, ...), read once and kept."""
        if self._genesis is None:
            self._genesis = self.call("agora_genesis")["config"]
        return self._genesis

    @property
    def chain_id(self) -> str:
        return str(self.genesis()["chain_id"])

    def min_fee(self, kind: str) -> int:
        return int(self.genesis()["fees"][FEE_FIELD[kind]])

    def account(self, key: bytes | str) -> Account:
        v = self.call("agora_account", parse_public_key(key).hex())
        return Account(bytes.fromhex(v["key"]), int(v["balance"]), int(v["nonce"]))

    def neuron(self, uid: int | None = None, hotkey: bytes | str | None = None) -> dict:
        """One neuron's record (uid, hotkey, coldkey, stake, endpoint, scores, ...); an unknown
        uid or hotkey is an RpcError with code -33013."""
        if (uid is None) == (hotkey is None):
            raise ValueError("give a uid or a hotkey")
        q = {"uid": uid} if uid is not None else {"hotkey": parse_public_key(hotkey).hex()}
        return self.call("agora_neuron", q)

    def metagraph(self, block: int | None = None) -> Metagraph:
        return Metagraph.from_json(self.call("agora_metagraph", block))

    def block(self, at: int | bytes | str) -> dict:
        """A committed block by height or hash, with its receipts and epoch report."""
        arg: int | str = at if isinstance(at, int) else (at.hex() if isinstance(at, bytes) else at)
        return self.call("agora_block", arg)

    def difficulty(self) -> int:
        return int(self.call("agora_difficulty"))

    def transaction(self, tx_id: bytes | str) -> dict:
        """`{"state": "pending"|"included"|"unknown", ...}` (docs/rpc.md)."""
        return self.call("agora_getTransaction", tx_id.hex() if isinstance(tx_id, bytes) else tx_id)

    def subscribe_new_heads(self, timeout: float | None = None) -> "HeadSubscription":
        """Every block committed from now on, as `{height, hash, header, txs}`, on a WebSocket
        of its own (the node refuses subscriptions over HTTP, so an http:// URL is used as
        ws://). The subscription is live when this returns: a block committed afterwards is
        never missed. Iterate it; `next` waits at most `timeout` seconds (None: forever) and
        raises TimeoutError; close it (or use `with`) to unsubscribe."""
        return HeadSubscription(self.url, self.timeout, timeout)

    def next_block(self, after: int, timeout: float | None = None) -> Head:
        """Waits (polling) for a head above `after`."""
        deadline = time.monotonic() + (self.wait_timeout if timeout is None else timeout)
        while True:
            h = self.head()
            if h.height > after:
                return h
            if time.monotonic() > deadline:
                raise TimeoutError(f"no block after {after} within {timeout} s")
            time.sleep(self.poll)

    # ------------------------------------------------------------ transactions

    def sign(self, key: Keypair, call: Call, fee: int | None = None, nonce: int | None = None) -> SignedTx:
        """`call` signed by `key` at its next nonce with the chain's minimum fee for the kind."""
        nonce = self.account(key.public).nonce if nonce is None else nonce
        fee = self.min_fee(call.KIND) if fee is None else fee
        return TxBody(key.public, nonce, fee, call).sign(key, self.chain_id)

    def submit(self, tx: SignedTx) -> bytes:
        """Submits a signed transaction; returns its id once the mempool accepted it."""
        return bytes.fromhex(self.call("agora_submitTransaction", tx.encode().hex()))

    def wait_for(self, tx_id: bytes) -> tuple[int, dict]:
        """Polls until a block includes `tx_id`: (height, receipt). A receipt that is not
        `applied` raises the ledger's reason (its stage `failed` or `rejected`)."""
        deadline = time.monotonic() + self.wait_timeout
        while True:
            t = self.transaction(tx_id)
            if t["state"] == "included":
                receipt = t["receipt"]
                status = receipt["status"]
                if status["status"] != "applied":
                    raise tx_error(status.get("reason"), None, status["status"])
                return int(t["height"]), receipt
            if time.monotonic() > deadline:
                raise TimeoutError(f"transaction {tx_id.hex()} not included within {self.wait_timeout} s ({t['state']})")
            time.sleep(self.poll)

    def transact(self, key: Keypair, call: Call, fee: int | None = None) -> int:
        """Signs, submits and waits: the height of the block that applied it."""
        return self.wait_for(self.submit(self.sign(key, call, fee)))[0]

    def transfer(self, coldkey: Keypair, to: bytes | str, amount: int, fee: int | None = None) -> int:
        """`amount` base units from `coldkey`'s free balance to `to` (see `agora.tx.tokens`)."""
        return self.transact(coldkey, Transfer(parse_public_key(to), amount), fee)

    def registration(self, hotkey: Keypair, coldkey: bytes | str) -> Register | None:
        """A `register` call with a solved proof of work over the head's hash, or None if the
        hotkey is registered. A search that outlives half the chain's proof-of-work window
        starts over on the new head, so the seal is still valid when the transaction lands."""
        if self.metagraph().uid_of(hotkey.public) is not None:
            return None
        window = max(int(self.genesis()["registration"]["pow_window"]), 1)
        chunk = 10_000
        while True:
            head, difficulty = self.head(), self.difficulty()
            start = 0
            while start < max(64 * difficulty, chunk):
                nonce = solve_pow(head.hash, hotkey.public, difficulty, start, chunk)
                if nonce is not None:
                    return Register(parse_public_key(coldkey), head.height, nonce)
                start += chunk
                if self.head().height - head.height >= window // 2:
                    break
            else:
                raise RuntimeError(f"no proof of work in {start} tries at difficulty {difficulty}")

    def register(self, hotkey: Keypair, coldkey: bytes | str) -> int:
        """Registers `hotkey` (owned by `coldkey`) by proof of work; returns its uid (at once if it
        is registered already)."""
        call = self.registration(hotkey, coldkey)
        if call is not None:
            try:
                self.transact(hotkey, call)
            except TxError as e:
                # Registered meanwhile (a sponsor's register_by): that was the goal.
                if e.kind != "already_registered":
                    raise
        uid = self.metagraph().uid_of(hotkey.public)
        if uid is None:
            raise RuntimeError(f"hotkey {hotkey.public.hex()} is not in the metagraph after registering")
        return uid

    def serve(self, hotkey: Keypair, ip: str, port: int, modality: int = 0, fee: int | None = None) -> int | None:
        """Publishes the axon's endpoint; None (nothing sent) when the chain has it already."""
        endpoint = Endpoint(ip, port, 0, modality)
        m = self.metagraph()
        uid = m.uid_of(hotkey.public)
        if uid is not None and m.endpoints[uid] == endpoint:
            return None
        return self.transact(hotkey, Serve(endpoint), fee)

    def add_stake(self, coldkey: Keypair, hotkey: bytes | str, amount: int, fee: int | None = None) -> int:
        return self.transact(coldkey, AddStake(parse_public_key(hotkey), amount), fee)

    def remove_stake(self, coldkey: Keypair, hotkey: bytes | str, amount: int, fee: int | None = None) -> int:
        return self.transact(coldkey, RemoveStake(parse_public_key(hotkey), amount), fee)

    def set_weights(self, hotkey: Keypair, uids: list[int], values: list[float], fee: int | None = None) -> int:
        """Writes the hotkey's row of W; `values` of any scale are normalised to sum to 1."""
        return self.transact(hotkey, set_weights(uids, values), fee)
