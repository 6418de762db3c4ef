"""A PyTorch peer (CPU): the example of a Python participant that earns in the market.

    python -m agora.torch_peer run --wallet me --hotkey miner --chain ws://127.0.0.1:9960 \\
        --dataset /usr/share/games/fortunes/science --out ./py-peer
    python -m agora.torch_peer pretrain --dataset science.txt --steps 600 --out ./py-peer

It does what `agora peer run` does (crates/peer, market paper §9), through this package only:
registers its hotkey by proof of work, serves its model on an [`agora.wire.Axon`] and publishes
the endpoint, then loops: sample a batch of its training text, let its noisy top-k gate pick k
neighbours, query them with the dendrite, train its model, gate and distillation student on
their answers (eq. 9-11), send each neighbour the gradient of its loss w.r.t. that answer, and
every `--weights-interval` blocks run a scoring round (every serving neighbour, held-out
batches, permutation ablation, smoothed, only significant scores kept) and write the scores as
its row of W. Its axon answers Forward in the network standard ([`agora.standard`]) and applies
Backward gradients, clipped and weighted by the caller's stake share.

It leaves in `--out` what the localnet's report reads from every peer: `status.csv`,
`final.json` (on SIGTERM), plus `torch_checkpoint.pt` and `axon.json` (calls served by kind and
code, distinct callers). It keeps no `checkpoint/` in the Rust nucleus format, so the
localnet's independent judge, which runs each consumer from that checkpoint, measures this peer
as a provider only (its answers' quality and its value to the Rust consumers), never as a
consumer.

The model is deliberately plain PyTorch: a pre-LayerNorm byte transformer for f_i (fed its bytes
plus a linear map of the joined answers G(x)), a smaller one for the student dist(x), and
Shazeer's noisy top-k gate over the mean byte embedding.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from blake3 import blake3

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as _e:  # pragma: no cover - a hint for an install without the extra
    raise ImportError("the PyTorch peer needs torch: pip install './python[torch]'") from _e

from . import wire
from .chain import Chain
from .errors import AgoraError, TxError
from .keys import Keypair, parse_public_key
from .metagraph import Metagraph
from .standard import CONTEXT, OUTPUT_DIM, VOCAB, standard_basis
from .wallet import Wallet

# The scoring rules of crates/peer/src/learner.rs: the same numbers make a Python validator's
# weights comparable with the Rust peers'.
HELD_OUT_BATCHES = 8
SCORE_BATCHES = 4
SCORE_SMOOTHING = 0.3
SIGNIFICANCE = 2.0
MISSES_BEFORE_ZERO = 2
FINAL_LINGER_S = 8.0
CHECKPOINT_FILE = "torch_checkpoint.pt"


# ---------------------------------------------------------------- data


def split_entries(text: str) -> list[str]:
    """Entries of a fortune file (blocks between lines holding just `%`) or, without any such
    line, paragraphs: the nucleus's rule, so a file splits the same way for every peer."""
    if any(line.rstrip() == "%" for line in text.splitlines()):
        entries, current = [], []
        for line in text.splitlines():
            if line.rstrip() == "%":
                if "".join(current).strip():
                    entries.append("".join(current))
                current = []
            else:
                current.append(line + "\n")
        if "".join(current).strip():
            entries.append("".join(current))
        return entries
    return [p.strip() + "\n" for p in text.split("\n\n") if p.strip()]


def split_corpus(text: str) -> tuple[bytes, bytes]:
    """(train, held-out) bytes of a text by `nucleus::Corpus::from_entries`: entry i is
    held out when i % 10 == 9, belongs to the judge's test part when i % 10 == 4 (dropped
    here: no peer reads it), train otherwise."""
    train, held = bytearray(), bytearray()
    for i, e in enumerate(split_entries(text)):
        if i % 10 == 4:
            continue
        part = held if i % 10 == 9 else train
        part += e.encode() + b"\n"
    return bytes(train), bytes(held)


@dataclass
class Batch:
    """Input bytes `[batch, seq]` and their next-byte targets."""

    tokens: np.ndarray
    targets: np.ndarray


def sample(text: bytes, batch: int, context: int, rng: random.Random) -> Batch:
    """`batch` windows of `context + 1` bytes at uniformly random offsets."""
    if len(text) < context + 2:
        raise ValueError(f"{len(text)} bytes of text, need more than {context + 1}")
    buf = np.frombuffer(text, dtype=np.uint8)
    starts = [rng.randrange(0, len(text) - context - 1) for _ in range(batch)]
    tokens = np.stack([buf[s:s + context] for s in starts])
    targets = np.stack([buf[s + 1:s + context + 1] for s in starts])
    return Batch(tokens, targets)


# ---------------------------------------------------------------- model


@dataclass
class ModelConfig:
    """The shape of the peer's model and its learning rules (crates/nucleus's defaults)."""

    dim: int = 64
    depth: int = 2
    heads: int = 4
    student_dim: int = 32
    context: int = CONTEXT
    output_dim: int = OUTPUT_DIM
    slots: int = 64
    top_k: int = 3
    batch: int = 16
    lr: float = 2e-3
    grad_clip: float = 1.0
    remote_grad_max_norm: float = 1.0
    remote_lr: float = 1e-3
    response_clip: float = 100.0
    distill_weight: float = 1.0
    fail_penalty: float = 4.0
    fail_smoothing: float = 0.2
    seed: int = 0


PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"dim": 32, "depth": 1, "heads": 2, "batch": 8},
    "small": {"dim": 64, "depth": 2, "heads": 4, "batch": 16},
    "medium": {"dim": 128, "depth": 2, "heads": 4, "batch": 16},
}


class Block(nn.Module):
    """Pre-LN transformer block: causal self-attention and a 4x GELU MLP, each residual."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        # [b, t, d] -> [b, heads, t, d/heads]
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Encoder(nn.Module):
    """Bytes (or their embedding plus an input) -> hidden states `[b, t, dim]`."""

    def __init__(self, dim: int, depth: int, heads: int, context: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, dim)
        self.pos = nn.Parameter(torch.randn(context, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.ln_f = nn.LayerNorm(dim)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tok(tokens) + self.pos[: tokens.shape[1]]

    def forward_embedded(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            h = block(h)
        return self.ln_f(h)


class Nucleus(nn.Module):
    """f_i (the local model), the student dist(x) and the gate G (market paper eq. 9-11)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.local = Encoder(cfg.dim, cfg.depth, cfg.heads, cfg.context)
        self.gate_in = nn.Linear(cfg.output_dim, cfg.dim)
        self.head = nn.Linear(cfg.dim, VOCAB)
        self.student = Encoder(cfg.student_dim, 1, 2, cfg.context)
        self.student_rep = nn.Linear(cfg.student_dim, cfg.output_dim)
        self.gate_emb = nn.Embedding(VOCAB, cfg.dim)
        self.w_g = nn.Linear(cfg.dim, cfg.slots, bias=False)
        self.w_noise = nn.Linear(cfg.dim, cfg.slots, bias=False)
        # A balanced gate at the start (Shazeer et al.): every neighbour equally likely.
        nn.init.zeros_(self.w_g.weight)
        nn.init.zeros_(self.w_noise.weight)
        self.register_buffer("basis", torch.from_numpy(standard_basis(VOCAB, cfg.output_dim)))

    def local_parameters(self) -> list[nn.Parameter]:
        """f_i's parameters: what a neighbour's gradient may move."""
        return [*self.local.parameters(), *self.gate_in.parameters(), *self.head.parameters()]

    def local_forward(self, tokens: torch.Tensor, joined: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens `[b, t]`, joined `[b, t, output_dim]` -> (served representation
        `[b, t, output_dim]`: softmax(logits) @ basis, logits `[b, t, 256]`)."""
        h = self.local.forward_embedded(self.local.embed(tokens) + self.gate_in(joined))
        logits = self.head(h)
        return torch.softmax(logits, dim=-1) @ self.basis, logits

    def dist(self, tokens: torch.Tensor) -> torch.Tensor:
        """dist(x): the student's stand-in for G(x), `[b, t, output_dim]`."""
        return self.student_rep(self.student.forward_embedded(self.student.embed(tokens)))

    def serve(self, tokens: torch.Tensor) -> torch.Tensor:
        """What the axon answers: f_i fed by the student (a query goes one hop deep)."""
        rep, _ = self.local_forward(tokens, self.dist(tokens).detach())
        return rep

    def gate_logits(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """H(x) = x̄ W_g and its noise scale softplus(x̄ W_noise), `[b, slots]` each."""
        xbar = self.gate_emb(tokens).mean(dim=1)
        return self.w_g(xbar), F.softplus(self.w_noise(xbar))


def next_byte_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))


@dataclass
class StepReport:
    loss: float
    answering: int
    # uid -> d loss / d (its answer), `[b, t, output_dim]`: what goes back in a Backward.
    grads: dict[int, np.ndarray] = field(default_factory=dict)


class Learner:
    """The model with its optimiser, routing state and lock. Training, serving and remote
    gradients share the model, so each holds the lock for its step."""

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.model = Nucleus(cfg)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.fail_rate = np.zeros(cfg.slots, dtype=np.float64)
        self.noise = torch.Generator().manual_seed(cfg.seed ^ 0x9E3779B9)
        self.steps = 0
        self.lock = threading.RLock()
        # Parameter updates so far (training steps and remote gradients): the model version is
        # hashed again only after one, not for every answer.
        self._updates = 0
        self._version: tuple[int, wire.ModelVersion] | None = None

    # -------------------------------------------------------- serving

    def serve(self, tokens: np.ndarray) -> wire.Versioned:
        """Forward for a caller: TEXT `[batch, seq]` bytes -> `[batch, seq, output_dim]`, with
        the version of the model that computed it (MACed into the answer, protocol 5)."""
        x = _tokens(tokens, self.cfg.context)
        with self.lock, torch.no_grad():
            return wire.Versioned(self.model.serve(x).numpy(), self.model_version())

    def model_version(self) -> wire.ModelVersion:
        """BLAKE3 over the parameters (by name, shape and little-endian float32 bytes) and the
        training step; recomputed only after an update."""
        with self.lock:
            if self._version is None or self._version[0] != self._updates:
                h = blake3()
                for name, p in self.model.state_dict().items():
                    data = p.detach().to(torch.float32).contiguous().numpy().astype("<f4", copy=False)
                    h.update(name.encode() + b"\0" + str(list(p.shape)).encode() + b"\0")
                    h.update(data.tobytes())
                self._version = (self._updates, wire.ModelVersion(h.digest(), self.steps))
            return self._version[1]

    def apply_remote_gradient(self, tokens: np.ndarray, grads: np.ndarray, weight: float) -> float:
        """A caller's gradient for our answer to `tokens` (market paper §9 step 4): clipped to
        `remote_grad_max_norm`, scaled by `weight` (its stake share), carried into f_i by the
        chain rule, the parameter step clipped to `grad_clip` and applied by SGD at
        `remote_lr`. Returns the norm applied. A hostile sender moves us at most
        remote_lr * grad_clip per call, whatever it sends."""
        x = _tokens(tokens, self.cfg.context)
        expected = (x.shape[0], x.shape[1], self.cfg.output_dim)
        if tuple(grads.shape) != expected:
            raise wire.BadTensor(wire.REQUEST_SHAPE_ERROR, f"gradient of shape {list(grads.shape)}, expected {list(expected)}")
        g = torch.from_numpy(np.array(grads, dtype=np.float32))
        # The norm in float64: squares of large float32 values overflow float32 (1e30 each
        # gives inf), and an infinite norm would scale a hostile gradient to nothing instead of
        # clipping it.
        norm = float(np.linalg.norm(np.asarray(grads, dtype=np.float64)))
        if not math.isfinite(norm):
            raise wire.BadTensor(wire.NON_FINITE, "the gradient has a NaN or infinite value")
        scale = min(1.0, self.cfg.remote_grad_max_norm / norm) * weight if norm > 0 else 0.0
        if scale == 0.0 or self.cfg.remote_lr == 0.0:
            return 0.0
        with self.lock:
            params = self.model.local_parameters()
            rep, _ = self.model.local_forward(x, self.model.dist(x).detach())
            # The scaled gradient in float64 then back: 1e30 * 1e-32 is fine, 1e30 squared is not.
            g = (g.double() * scale).float()
            pgrads = torch.autograd.grad((rep * g).sum(), params, allow_unused=True)
            total = math.sqrt(sum(float(p.pow(2).sum()) for p in pgrads if p is not None))
            clip = min(1.0, self.cfg.grad_clip / total) if total > 0 else 0.0
            with torch.no_grad():
                for p, pg in zip(params, pgrads):
                    if pg is not None:
                        p -= self.cfg.remote_lr * clip * pg
            self._updates += 1
        return norm * scale

    # -------------------------------------------------------- routing and joining

    def route(self, tokens: np.ndarray, candidates: list[int]) -> list[int]:
        """Noisy top-k: each candidate's logit is the batch mean of H(x) with fresh noise,
        minus `fail_penalty` times its smoothed failure rate."""
        uniq = sorted({c for c in candidates if c < self.cfg.slots})
        if not uniq:
            return []
        with self.lock, torch.no_grad():
            clean, noise = self.model.gate_logits(_tokens(tokens, self.cfg.context))
            eps = torch.randn(clean.shape, generator=self.noise)
            logits = (clean + noise * eps).mean(dim=0).numpy()
        scored = sorted(uniq, key=lambda u: (-(logits[u] - self.cfg.fail_penalty * self.fail_rate[u]), u))
        return scored[: self.cfg.top_k]

    def _accept(self, batch: Batch, responses: dict[int, np.ndarray | None]) -> tuple[list[int], list[torch.Tensor], list[int]]:
        b, t = batch.tokens.shape
        uids, answers, failed = [], [], []
        for uid, r in responses.items():
            if r is None or uid >= self.cfg.slots or r.shape != (b, t, self.cfg.output_dim) or not np.isfinite(r).all():
                failed.append(uid)
                continue
            clip = self.cfg.response_clip
            answers.append(torch.from_numpy(np.array(r, dtype=np.float32)).clamp(-clip, clip))
            uids.append(uid)
        return uids, answers, failed

    def _gates(self, x: torch.Tensor, uids: list[int], noisy: bool) -> torch.Tensor:
        """Softmax over the joined peers' gate logits, `[b, k]` (failed peers left out)."""
        clean, noise = self.model.gate_logits(x)
        logits = clean + noise * torch.randn(clean.shape, generator=self.noise) if noisy else clean
        return torch.softmax(logits[:, uids], dim=-1)

    @staticmethod
    def _join(gates: torch.Tensor, answers: list[torch.Tensor]) -> torch.Tensor:
        """G(x) = sum_j g_j(x) f_j(x) (eq. 10)."""
        return sum(gates[:, j, None, None] * a for j, a in enumerate(answers))

    def _update_fail_rate(self, joined: list[int], failed: list[int]) -> None:
        f = self.cfg.fail_smoothing
        for u in joined:
            self.fail_rate[u] *= 1 - f
        for u in failed:
            if u < self.cfg.slots:
                self.fail_rate[u] = (1 - f) * self.fail_rate[u] + f

    # -------------------------------------------------------- learning

    def pretrain_step(self, batch: Batch) -> float:
        """f_i alone, fed by the student, while the student learns f_i's own served
        representation: the model keeps reading network-standard input, so neighbours'
        answers are of use from the first step they arrive (as `Nucleus::pretrain_step`)."""
        x, y = _tokens(batch.tokens, self.cfg.context), torch.from_numpy(batch.targets.astype(np.int64))
        with self.lock:
            dist = self.model.dist(x)
            rep, logits = self.model.local_forward(x, dist.detach())
            loss = next_byte_loss(logits, y)
            total = loss + self.cfg.distill_weight * F.mse_loss(dist, rep.detach())
            self._optimise(total)
            self.steps += 1
        return loss.item()

    def train_step(self, batch: Batch, responses: dict[int, np.ndarray | None]) -> StepReport:
        """One step of f_i, the gate and the student on the neighbours' answers; returns the
        gradient of the loss w.r.t. each answer, for the Backward calls."""
        x, y = _tokens(batch.tokens, self.cfg.context), torch.from_numpy(batch.targets.astype(np.int64))
        uids, answers, failed = self._accept(batch, responses)
        with self.lock:
            if not uids:
                _, logits = self.model.local_forward(x, self.model.dist(x).detach())
                loss = next_byte_loss(logits, y)
                self._optimise(loss)
                report = StepReport(loss.item(), 0)
            else:
                for a in answers:
                    a.requires_grad_(True)
                gates = self._gates(x, uids, noisy=True)
                g_x = self._join(gates, answers)
                _, logits = self.model.local_forward(x, g_x)
                loss = next_byte_loss(logits, y)
                # Eq. (11): the student learns to stand in for G: f_i's predictions fed by
                # dist(x) against those fed by G(x) (teacher detached), plus the MSE of the two.
                dist = self.model.dist(x)
                _, logits_dist = self.model.local_forward(x, dist)
                kl = F.kl_div(F.log_softmax(logits_dist, -1).reshape(-1, VOCAB),
                              F.log_softmax(logits.detach(), -1).reshape(-1, VOCAB), log_target=True,
                              reduction="batchmean")
                distill = kl + F.mse_loss(dist, g_x.detach())
                self._optimise(loss + self.cfg.distill_weight * distill)
                grads = {u: a.grad.numpy().copy() for u, a in zip(uids, answers) if a.grad is not None}
                report = StepReport(loss.item(), len(uids), grads)
            self._update_fail_rate(uids, failed)
            self.steps += 1
        return report

    def _optimise(self, total: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if not torch.isfinite(norm):
            self.opt.zero_grad(set_to_none=True)
            raise FloatingPointError(f"gradient norm {float(norm)}; step skipped")
        self.opt.step()
        self._updates += 1

    # -------------------------------------------------------- evaluation

    def evaluate(self, batch: Batch, responses: dict[int, np.ndarray | None]) -> tuple[float, dict[int, float]]:
        """Held-out loss with the answering neighbours joined by the clean gate, and each
        neighbour's value on this batch: the loss increase when its answers are shuffled
        between the batch's sequences (permutation importance; `Nucleus::ablation`). A shuffled
        answer keeps its distribution and loses only what it says about this input, so a noise
        peer is worth 0 in expectation. Failed neighbours get 0."""
        x, y = _tokens(batch.tokens, self.cfg.context), torch.from_numpy(batch.targets.astype(np.int64))
        uids, answers, failed = self._accept(batch, responses)
        out = {u: 0.0 for u in failed}
        with self.lock, torch.no_grad():
            if not uids:
                _, logits = self.model.local_forward(x, self.model.dist(x))
                return float(next_byte_loss(logits, y)), out
            gates = self._gates(x, uids, noisy=False)
            g_x = self._join(gates, answers)
            _, logits = self.model.local_forward(x, g_x)
            loss = float(next_byte_loss(logits, y))
            b = x.shape[0]
            roll = [(s + 1) % b for s in range(b)]
            for j, (u, a) in enumerate(zip(uids, answers)):
                if b < 2:
                    g_perm = g_x - gates[:, j, None, None] * a
                else:
                    g_perm = g_x + gates[:, j, None, None] * (a[roll] - a)
                _, lp = self.model.local_forward(x, g_perm)
                out[u] = float(next_byte_loss(lp, y)) - loss
        return loss, out

    def student_loss(self, batch: Batch) -> float:
        x, y = _tokens(batch.tokens, self.cfg.context), torch.from_numpy(batch.targets.astype(np.int64))
        with self.lock, torch.no_grad():
            _, logits = self.model.local_forward(x, self.model.dist(x))
            return float(next_byte_loss(logits, y))

    # -------------------------------------------------------- checkpoints

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with self.lock:
            torch.save({"config": asdict(self.cfg), "model": self.model.state_dict(), "opt": self.opt.state_dict(),
                        "steps": self.steps, "fail_rate": self.fail_rate.tolist()}, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Learner":
        state = torch.load(path, map_location="cpu", weights_only=True)
        learner = cls(ModelConfig(**state["config"]))
        learner.model.load_state_dict(state["model"])
        learner.opt.load_state_dict(state["opt"])
        learner.steps = int(state["steps"])
        learner.fail_rate = np.asarray(state["fail_rate"], dtype=np.float64)
        return learner


def _tokens(tokens: np.ndarray, context: int) -> torch.Tensor:
    """TEXT `[batch, seq]` (uint8 bytes, or int64 ids that are bytes) -> int64 tensor."""
    if tokens.ndim != 2 or tokens.shape[0] == 0 or not 0 < tokens.shape[1] <= context:
        raise wire.BadTensor(wire.REQUEST_SHAPE_ERROR, f"TEXT must be [batch, seq] with seq <= {context}, got {list(tokens.shape)}")
    if tokens.dtype != np.uint8:
        if tokens.dtype != np.int64 or tokens.min() < 0 or tokens.max() > 255:
            raise wire.BadTensor(wire.REQUEST_SHAPE_ERROR, "TEXT tokens must be bytes (uint8, or int64 in 0..255)")
    return torch.from_numpy(tokens.astype(np.int64))


# ---------------------------------------------------------------- scores and weights


@dataclass
class Score:
    """A smoothed score and the variance of that estimate (learner.rs's `Score`)."""

    mean: float
    var: float

    @classmethod
    def of_round(cls, values: list[float]) -> "Score":
        n = max(len(values), 1)
        mean = sum(values) / n
        var = sum((v - mean) ** 2 for v in values) / (n - 1) / n if len(values) > 1 else 0.0
        return cls(mean, var)

    def fold(self, r: "Score") -> None:
        a = SCORE_SMOOTHING
        self.mean = (1 - a) * self.mean + a * r.mean
        self.var = (1 - a) ** 2 * self.var + a * a * r.var

    def weight(self) -> float:
        """Its mean if it is SIGNIFICANCE standard errors above 0, else 0: a neighbour whose
        answers change the loss by noise alone earns nothing."""
        return self.mean if self.mean > SIGNIFICANCE * math.sqrt(self.var) else 0.0


class Scores:
    """The peer's running opinion of each neighbour, by uid."""

    def __init__(self) -> None:
        self.scores: dict[int, Score] = {}
        self.misses: dict[int, int] = {}

    def update(self, per_batch: dict[int, list[float]], answered: set[int]) -> None:
        for u, values in per_batch.items():
            if u in answered:
                self.misses[u] = 0
                r = Score.of_round(values)
                if u in self.scores:
                    self.scores[u].fold(r)
                else:
                    self.scores[u] = r
            else:
                self.misses[u] = self.misses.get(u, 0) + 1
                s = self.scores.setdefault(u, Score(0.0, 0.0))
                if self.misses[u] >= MISSES_BEFORE_ZERO:
                    self.scores[u] = Score(0.0, 0.0)
                else:
                    s.fold(Score(0.0, s.var))

    def weights(self) -> dict[int, float]:
        return {u: s.weight() for u, s in self.scores.items()}


def weight_row(scores: dict[int, float], n: int, max_len: int) -> list[tuple[int, float]]:
    """Scores -> a valid row: finite positive scores of known uids, the `max_len` largest
    (ties to the lower uid), sorted by uid, summing to 1; empty when none is positive."""
    entries = [(u, s) for u, s in scores.items() if u < n and math.isfinite(s) and s > 0]
    if len(entries) > max_len:
        entries = sorted(entries, key=lambda e: (-e[1], e[0]))[:max_len]
    entries.sort()
    total = math.fsum(s for _, s in entries)
    return [(u, s / total) for u, s in entries]


def bounded_row(target: list[tuple[int, float]], current: list[tuple[int, float]], max_change: float | None,
                max_len: int) -> list[tuple[int, float]]:
    """Moves from `current` toward `target` by at most `max_change` in L2 (the chain's bounded
    change; 5% margin for the chain's integer rounding), as `WeightSetter::bounded`."""
    if max_change is None or not current:
        return target
    both: dict[int, list[float]] = {}
    for u, w in current:
        both.setdefault(u, [0.0, 0.0])[0] = w
    for u, w in target:
        both.setdefault(u, [0.0, 0.0])[1] = w
    d = math.sqrt(sum((t - c) ** 2 for c, t in both.values()))
    eps = max_change * 0.95
    if d <= eps:
        return target
    k = eps / d
    moved = {u: c + k * (t - c) for u, (c, t) in both.items()}
    return weight_row(moved, 1 << 16, max_len)


# ---------------------------------------------------------------- the peer process


@dataclass
class RunConfig:
    chain: str
    hotkey: Keypair
    coldkey: bytes
    train: bytes
    held_out: bytes
    out: Path
    model: ModelConfig
    weights_interval: int = 10
    status_every: float = 10.0
    checkpoint_every: int = 200
    timeout: float = 5.0
    pretrain_steps: int = 0
    max_steps: int | None = None
    axon_addr: str = "127.0.0.1:0"
    trusted: list[bytes] = field(default_factory=list)


class StatusWriter:
    """`status.csv` in the Rust peer's columns (crates/peer/src/files.rs), flushed per row."""

    HEADER = "time_s,step,block,loss,heldout_loss,peers_answering,stake,incentive\n"

    def __init__(self, out: Path) -> None:
        self.path = out / "status.csv"
        self.f = open(self.path, "w", buffering=1)
        self.f.write(self.HEADER)

    def append(self, time_s: float, step: int, block: int, loss: float, heldout: float, answering: int, stake: int,
               incentive: float) -> None:
        self.f.write(f"{time_s},{step},{block},{loss},{heldout},{answering},{stake},{incentive}\n")


def write_json(path: Path, value: Any) -> None:
    """Through a temporary file and a rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


class Peer:
    """One participant: chain link, axon, dendrite, learner, scores."""

    def __init__(self, cfg: RunConfig, stop: threading.Event) -> None:
        self.cfg, self.stop = cfg, stop
        self.chain = Chain(cfg.chain)
        self.dendrite = wire.Dendrite(cfg.hotkey)
        self.stakes = wire.StakeTable()
        self.scores = Scores()
        self.rng = random.Random(cfg.model.seed)
        held_rng = random.Random(cfg.model.seed ^ 0x68656C64)
        self.held_out = [sample(cfg.held_out, cfg.model.batch, cfg.model.context, held_rng) for _ in range(HELD_OUT_BATCHES)]
        self.rounds = 0
        self.backward_pool = ThreadPoolExecutor(max_workers=2)
        self.learner: Learner | None = None
        self.axon: wire.Axon | None = None
        self.uid = -1
        self.view: Metagraph | None = None

    # -------------------------------------------------------- the axon's handlers

    def _forward(self, inputs: np.ndarray, caller: wire.Caller) -> np.ndarray:
        assert self.learner is not None
        return self.learner.serve(inputs)

    def _backward(self, inputs: np.ndarray, grads: np.ndarray, caller: wire.Caller) -> None:
        assert self.learner is not None
        total = self.stakes.total()
        weight = min(1.0, caller.stake / total) if total > 0 else 0.0
        self.learner.apply_remote_gradient(inputs, grads, weight)
        return None

    # -------------------------------------------------------- network

    def candidates(self) -> dict[int, wire.Target]:
        """Serving neighbours inside the gate (uid < slots), not us."""
        assert self.view is not None
        return {u: wire.Target(e.address, hk) for u, hk, e in self.view.serving()
                if u != self.uid and u < self.cfg.model.slots}

    def query(self, batch: Batch, uids: list[int], targets: dict[int, wire.Target]) -> dict[int, np.ndarray | None]:
        chosen = [u for u in uids if u in targets]
        answers = self.dendrite.forward_many([targets[u] for u in chosen], batch.tokens, self.cfg.timeout)
        return {u: (r.tensor if r.ok else None) for u, r in zip(chosen, answers)}

    def sync(self) -> None:
        self.view = self.chain.metagraph()
        self.stakes.replace({hk: int(s) for hk, s in zip(self.view.hotkeys, self.view.S)})

    # -------------------------------------------------------- phases

    def join(self) -> None:
        """Register (proof of work) unless registered, load or pretrain the model, start the
        axon, publish its endpoint."""
        out = self.cfg.out
        out.mkdir(parents=True, exist_ok=True)
        self.uid = self.chain.register(self.cfg.hotkey, self.cfg.coldkey)
        print(f"registered as uid {self.uid} ({self.cfg.hotkey.public_hex})", flush=True)
        ckpt = out / CHECKPOINT_FILE
        if ckpt.is_file():
            self.learner = Learner.load(ckpt)
            print(f"resumed from {ckpt} at step {self.learner.steps}", flush=True)
        else:
            self.learner = Learner(self.cfg.model)
        pretrain(self.learner, self.cfg.train, self.cfg.pretrain_steps, ckpt, self.cfg.status_every, self.stop)
        self.sync()
        self.axon = wire.Axon(self.cfg.hotkey, self._forward, self._backward, stakes=self.stakes,
                              trusted=self.cfg.trusted)
        host = self.cfg.axon_addr.rsplit(":", 1)[0].strip("[]")
        port = self.axon.start(self.cfg.axon_addr, workers=4)
        ip = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        self.chain.serve(self.cfg.hotkey, ip, port)
        print(f"axon serving on {ip}:{port}", flush=True)

    def train_step(self) -> StepReport:
        assert self.learner is not None
        batch = sample(self.cfg.train, self.cfg.model.batch, self.cfg.model.context, self.rng)
        targets = self.candidates()
        chosen = self.learner.route(batch.tokens, list(targets))
        responses = self.query(batch, chosen, targets)
        report = self.learner.train_step(batch, responses)
        if report.grads:
            uids = list(report.grads)
            # Not waited for, as the Rust peer does: the neighbour learns; we move on.
            self.backward_pool.submit(self.dendrite.backward_many, [targets[u] for u in uids], batch.tokens,
                                      [report.grads[u] for u in uids], self.cfg.timeout)
        return report

    def evaluate(self, batches: list[Batch], everyone: bool) -> tuple[float, dict[int, list[float]], set[int]]:
        """Mean loss over `batches` with every serving neighbour (scoring, final report) or the
        gate's choice (status line), and each neighbour's per-batch values."""
        assert self.learner is not None
        targets = self.candidates()
        loss, per_batch, answered = 0.0, {}, set()
        for b in batches:
            uids = list(targets) if everyone else self.learner.route(b.tokens, list(targets))
            responses = self.query(b, uids, targets)
            answered |= {u for u, r in responses.items() if r is not None}
            l, values = self.learner.evaluate(b, responses)
            loss += l
            for u, v in values.items():
                per_batch.setdefault(u, []).append(v)
        return loss / max(len(batches), 1), per_batch, answered

    def scoring_round(self) -> dict[int, float]:
        start = self.rounds * SCORE_BATCHES % len(self.held_out)
        batches = [self.held_out[(start + k) % len(self.held_out)] for k in range(SCORE_BATCHES)]
        self.rounds += 1
        _, per_batch, answered = self.evaluate(batches, everyone=True)
        self.scores.update(per_batch, answered)
        return self.scores.weights()

    def set_weights(self, scores: dict[int, float]) -> int | None:
        """The row for `scores`, moved within the chain's bounded change and submitted unless
        the rate limit forbids it. Returns the block that applied it."""
        assert self.view is not None
        rules = self.chain.genesis()["weights"]
        row = weight_row(scores, self.view.n, int(rules["max_len"]))
        if not row:
            print("weights not set: no neighbour scored significantly above 0 yet", flush=True)
            return None
        current = self.view.weight_rows[self.uid] if self.uid < len(self.view.weight_rows) else []
        row = bounded_row(row, current, rules.get("max_change"), int(rules["max_len"]))
        last = int(self.view.last_update[self.uid])
        head = self.chain.head().height
        if last >= 0 and head + 1 < last + int(rules["rate_limit"]):
            return None
        uids, values = zip(*row)
        return self.chain.set_weights(self.cfg.hotkey, list(uids), list(values))

    def write_axon_stats(self) -> None:
        if self.axon is None:
            return
        s = self.axon.stats
        with s.lock:
            calls = {f"{call}/{code}": n for (call, code), n in sorted(s.calls.items())}
            callers = sorted(c.hex() for c in s.callers)
        write_json(self.cfg.out / "axon.json", {"calls": calls, "callers": callers})

    def run(self) -> int:
        """The loop until SIGTERM or `max_steps`; then the final report. Exit code 0."""
        self.join()
        assert self.learner is not None and self.view is not None
        status = StatusWriter(self.cfg.out)
        started = last_status = time.monotonic()
        last_weights: int | None = None
        last = StepReport(float("nan"), 0)
        steps_here = 0
        while not self.stop.is_set():
            if self.cfg.max_steps is not None and steps_here >= self.cfg.max_steps:
                break
            head = self.chain.head().height
            if head > self.view.block:
                self.sync()
            last = self.train_step()
            steps_here += 1
            if last_weights is None or head >= last_weights + self.cfg.weights_interval:
                scores = self.scoring_round()
                try:
                    height = self.set_weights(scores)
                    if height is not None:
                        last_weights = height
                        print(f"weights set in block {height}: {sum(1 for v in scores.values() if v > 0)} peers", flush=True)
                except (TxError, AgoraError) as e:
                    print(f"weights not set: {e}", flush=True)
            if self.learner.steps % self.cfg.checkpoint_every == 0:
                self.learner.save(self.cfg.out / CHECKPOINT_FILE)
            if time.monotonic() - last_status >= self.cfg.status_every:
                last_status = time.monotonic()
                heldout, _, _ = self.evaluate(self.held_out[:1], everyone=False)
                stake = int(self.view.S[self.uid])
                incentive = float(self.view.I[self.uid])
                print(f"step {self.learner.steps:>6}  block {head:>5}  loss {last.loss:.3f}  held-out {heldout:.3f}  "
                      f"peers answering {last.answering}  stake {stake / 1e9:.3f}  incentive {incentive:.4f}", flush=True)
                status.append(time.monotonic() - started, self.learner.steps, head, last.loss, heldout, last.answering,
                              stake, incentive)
                self.write_axon_stats()
        print(f"shutting down: final evaluation on {HELD_OUT_BATCHES} held-out batches", flush=True)
        loss, per_batch, _ = self.evaluate(self.held_out, everyone=True)
        student = sum(self.learner.student_loss(b) for b in self.held_out) / len(self.held_out)
        ablation = {str(u): sum(v) / len(v) for u, v in sorted(per_batch.items())}
        write_json(self.cfg.out / "final.json", {"uid": self.uid, "steps": self.learner.steps, "heldout_loss": loss,
                                                 "student_loss": student, "ablation": ablation})
        self.learner.save(self.cfg.out / CHECKPOINT_FILE)
        self.write_axon_stats()
        # The other peers are shutting down too and query us for their own final evaluation.
        print(f"serving {FINAL_LINGER_S:.0f} s more for the other peers' final evaluations", flush=True)
        time.sleep(FINAL_LINGER_S)
        if self.axon is not None:
            self.axon.stop()
        self.write_axon_stats()
        self.backward_pool.shutdown(wait=False, cancel_futures=True)
        print(f"final held-out loss {loss:.4f} (student alone {student:.4f}); wrote {self.cfg.out / 'final.json'}", flush=True)
        return 0


def pretrain(learner: Learner, train: bytes, steps: int, ckpt: Path, status_every: float, stop: threading.Event) -> None:
    """Trains alone until the model has `steps` steps (a checkpoint's count included), then
    saves it: a peer arrives with a model that has something to offer, as a miner would."""
    todo = steps - learner.steps
    if todo <= 0:
        return
    print(f"pretraining alone for {todo} steps before joining the network", flush=True)
    rng = random.Random(learner.cfg.seed ^ 0x707265747261696E)
    started = last = time.monotonic()
    for done in range(1, todo + 1):
        loss = learner.pretrain_step(sample(train, learner.cfg.batch, learner.cfg.context, rng))
        if stop.is_set():
            break
        if time.monotonic() - last >= status_every or done == todo:
            last = time.monotonic()
            print(f"pretrain {done:>6}/{todo}  loss {loss:.3f}  ({time.monotonic() - started:.0f} s)", flush=True)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    learner.save(ckpt)


# ---------------------------------------------------------------- command line


def _dataset(a: argparse.Namespace) -> tuple[bytes, bytes]:
    if a.train:
        train = Path(a.train).read_bytes()
        held = Path(a.held_out).read_bytes() if a.held_out else b""
        return train, held
    if not a.dataset:
        raise SystemExit("give --dataset FILE, or --train FILE and --held-out FILE")
    return split_corpus(Path(a.dataset).read_text(errors="replace"))


def _model_config(a: argparse.Namespace) -> ModelConfig:
    return ModelConfig(**PRESETS[a.model_size], seed=a.seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agora.torch_peer", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(s: argparse.ArgumentParser) -> None:
        s.add_argument("--dataset", help="a text or fortune file, split as the Rust peers split it (no test part)")
        s.add_argument("--train", help="training text (instead of --dataset)")
        s.add_argument("--held-out", help="held-out text for scoring (with --train)")
        s.add_argument("--out", required=True, type=Path, help="status.csv, final.json, checkpoint, axon.json")
        s.add_argument("--model-size", choices=sorted(PRESETS), default="small")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--threads", type=int, default=1, help="torch CPU threads (peers share cores)")
        s.add_argument("--status-every", type=float, default=10.0, help="seconds between two status lines")

    r = sub.add_parser("run", help="join a chain and the market")
    common(r)
    r.add_argument("--chain", default=os.environ.get("AGORA_CHAIN", "ws://127.0.0.1:9960"))
    r.add_argument("--wallet", required=True)
    r.add_argument("--hotkey", default="default")
    r.add_argument("--wallet-dir", default=None, help="wallet root (default AGORA_WALLET_DIR or ~/.agora/wallets)")
    r.add_argument("--weights-interval", type=int, default=10, help="blocks between two set_weights")
    r.add_argument("--pretrain-steps", type=int, default=0)
    r.add_argument("--checkpoint-every", type=int, default=200)
    r.add_argument("--timeout", type=float, default=5.0, help="seconds a neighbour may take to answer")
    r.add_argument("--max-steps", type=int, default=None)
    r.add_argument("--axon-addr", default="127.0.0.1:0")
    r.add_argument("--trust-caller", action="append", default=[], metavar="HOTKEY",
                   help="a hotkey (hex) served though unregistered, e.g. the localnet's judge (repeatable)")
    t = sub.add_parser("pretrain", help="train alone into OUT/torch_checkpoint.pt (no chain)")
    common(t)
    t.add_argument("--steps", type=int, required=True)
    a = p.parse_args(argv)

    torch.set_num_threads(max(a.threads, 1))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    train, held = _dataset(a)
    if a.cmd == "pretrain":
        ckpt = a.out / CHECKPOINT_FILE
        learner = Learner.load(ckpt) if ckpt.is_file() else Learner(_model_config(a))
        pretrain(learner, train, a.steps, ckpt, a.status_every, stop)
        return 0
    wallet = Wallet.open(a.wallet, a.wallet_dir)
    cfg = RunConfig(chain=a.chain, hotkey=wallet.hotkey(a.hotkey), coldkey=wallet.coldkey_public, train=train,
                    held_out=held, out=a.out, model=_model_config(a), weights_interval=a.weights_interval,
                    status_every=a.status_every, checkpoint_every=a.checkpoint_every, timeout=a.timeout,
                    pretrain_steps=a.pretrain_steps, max_steps=a.max_steps, axon_addr=a.axon_addr,
                    trusted=[parse_public_key(h) for h in a.trust_caller])
    try:
        return Peer(cfg, stop).run()
    except AgoraError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
