"""The metagraph: the network as the last epoch left it, as numpy arrays and a plain table.

Built from the node's `agora_metagraph` answer (docs/rpc.md). Every vector is indexed by uid
(`0..n`); stake S and emission E are integers in base units (10^9 per token), R, T, C, I, D, VT
floats, `active` and `validator_permit` booleans; W and B come as dense `n x n` matrices (rows
of W sum to 1, or are empty) beside the node's sparse rows. No pandas: `rows()` is a list of
dicts and `table()` the same text as `agora metagraph`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .keys import parse_public_key
from .tx import UNITS_PER_TOKEN, Endpoint


@dataclass
class Metagraph:
    n: int
    block: int
    hotkeys: list[bytes]
    coldkeys: list[bytes]
    endpoints: list[Endpoint | None]
    S: np.ndarray
    R: np.ndarray
    T: np.ndarray
    C: np.ndarray
    I: np.ndarray  # noqa: E741 - the papers' name for incentive
    D: np.ndarray
    E: np.ndarray
    VT: np.ndarray
    active: np.ndarray
    validator_permit: np.ndarray
    # Block of each neuron's last set_weights, -1 for never (an int array keeps numpy maths easy).
    last_update: np.ndarray
    weight_rows: list[list[tuple[int, float]]]
    bond_rows: list[list[tuple[int, float]]]
    issuance: dict[str, int]
    difficulty: int

    @classmethod
    def from_json(cls, m: dict[str, Any]) -> "Metagraph":
        n = int(m["n"])

        def floats(key: str) -> np.ndarray:
            # A node older than VT / active / validator_permit sends none: zeros, as the Rust
            # client reads them.
            v = m.get(key) or [0.0] * n
            return np.asarray(v, dtype=np.float64)

        def flags(key: str) -> np.ndarray:
            return np.asarray(m.get(key) or [False] * n, dtype=bool)

        return cls(
            n=n,
            block=int(m["block"]),
            hotkeys=[parse_public_key(h) for h in m["hotkeys"]],
            coldkeys=[parse_public_key(h) for h in m["coldkeys"]],
            endpoints=[Endpoint.from_json(e) if e else None for e in m["endpoints"]],
            S=np.asarray(m["S"], dtype=np.uint64),
            R=floats("R"),
            T=floats("T"),
            C=floats("C"),
            I=floats("I"),
            D=floats("D"),
            E=np.asarray(m["E"], dtype=np.uint64),
            VT=floats("VT"),
            active=flags("active"),
            validator_permit=flags("validator_permit"),
            last_update=np.asarray([-1 if u is None else int(u) for u in m["last_update"]], dtype=np.int64),
            weight_rows=[[(int(j), float(w)) for j, w in row] for row in m["weights"]],
            bond_rows=[[(int(j), float(b)) for j, b in row] for row in m["bonds"]],
            issuance={k: int(v) for k, v in m["issuance"].items()},
            difficulty=int(m["difficulty"]),
        )

    @property
    def uids(self) -> np.ndarray:
        return np.arange(self.n, dtype=np.int64)

    @property
    def stake_tokens(self) -> np.ndarray:
        """S in tokens (floats: for display and shares, never for amounts you send)."""
        return self.S.astype(np.float64) / UNITS_PER_TOKEN

    def _dense(self, rows: list[list[tuple[int, float]]]) -> np.ndarray:
        out = np.zeros((self.n, self.n), dtype=np.float64)
        for i, row in enumerate(rows):
            for j, v in row:
                if j < self.n:
                    out[i, j] = v
        return out

    @property
    def W(self) -> np.ndarray:
        """The weight matrix, `n x n`, row i = neuron i's scores of the others."""
        return self._dense(self.weight_rows)

    @property
    def B(self) -> np.ndarray:
        """The bond matrix, `n x n`."""
        return self._dense(self.bond_rows)

    def uid_of(self, hotkey: bytes | str) -> int | None:
        """The uid of a hotkey, None if it is not registered."""
        key = parse_public_key(hotkey)
        try:
            return self.hotkeys.index(key)
        except ValueError:
            return None

    def serving(self) -> list[tuple[int, bytes, Endpoint]]:
        """(uid, hotkey, endpoint) of every neuron that published an axon."""
        return [(u, self.hotkeys[u], e) for u, e in enumerate(self.endpoints) if e is not None]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per neuron: the metagraph as a list of records (what a DataFrame would hold)."""
        return [
            {
                "uid": u,
                "hotkey": self.hotkeys[u].hex(),
                "coldkey": self.coldkeys[u].hex(),
                "stake": int(self.S[u]),
                "rank": float(self.R[u]),
                "trust": float(self.T[u]),
                "consensus": float(self.C[u]),
                "incentive": float(self.I[u]),
                "dividends": float(self.D[u]),
                "emission": int(self.E[u]),
                "validator_trust": float(self.VT[u]),
                "validator_permit": bool(self.validator_permit[u]),
                "active": bool(self.active[u]),
                "last_update": None if self.last_update[u] < 0 else int(self.last_update[u]),
                "endpoint": None if self.endpoints[u] is None else self.endpoints[u].address,
            }
            for u in range(self.n)
        ]

    def table(self) -> str:
        """The metagraph as `agora metagraph` prints it: one line per uid."""
        head = (f"block {self.block}  n {self.n}  difficulty {self.difficulty}  issuance "
                f"{(self.issuance.get('genesis', 0) + self.issuance.get('minted', 0) - self.issuance.get('burned', 0)) / UNITS_PER_TOKEN:.9f}")
        cols = f"{'UID':>4} {'HOTKEY':<10} {'STAKE':>14} {'RANK':>7} {'TRUST':>7} {'CONS':>7} {'INCENT':>7} {'DIVS':>7} {'VT':>7} {'EMISSION':>12} VAL ACTIVE ENDPOINT"
        lines = [head, cols]
        for r in self.rows():
            lines.append(
                f"{r['uid']:>4} {r['hotkey'][:10]:<10} {r['stake'] / UNITS_PER_TOKEN:>14.3f} {r['rank']:>7.4f} "
                f"{r['trust']:>7.4f} {r['consensus']:>7.4f} {r['incentive']:>7.4f} {r['dividends']:>7.4f} "
                f"{r['validator_trust']:>7.4f} {r['emission'] / UNITS_PER_TOKEN:>12.6f} {'*' if r['validator_permit'] else ' ':>3} "
                f"{int(r['active']):>6} {r['endpoint'] or '-'}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
