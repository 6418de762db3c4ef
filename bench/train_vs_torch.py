#!/usr/bin/env python3
"""Training throughput of Agora's local model f_i in Rust (candle) against the same
architecture in PyTorch on the CPU, in the same run; prints tokens/s of both and the ratio.

Same work on both sides: byte embedding + learned positions + a linear map of the (zero)
joined peer input, `depth` pre-LN blocks (causal attention, 4x MLP with GELU as x*sigmoid(1.702x)), final LN,
projection to output_dim, byte head; mean cross-entropy, backward, global-norm clip 1.0,
AdamW (lr 2e-3, no weight decay). Batches are random windows of the same built-in text.

    pip install torch            # CPU wheel; or --index-url https://download.pytorch.org/whl/cpu
    python3 bench/train_vs_torch.py [--steps 30] [--threads 1] [--rounds 3]

Run from the repository root. The Rust side is the `bench_train` example
(`cargo run --release -p nucleus --example bench_train -- --json --steps N`), run with
RAYON_NUM_THREADS=--threads (the pool of candle's matrix products and of nucleus's fused
kernels) and CANDLE_NUM_THREADS=1 (candle's second, element-wise pool, which `agora` turns
off by default: it spins and fights the first for the cores). So each side uses --threads
cores.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def standard_basis(vocab, width, seed=0x61676F72615F7631):
    """nucleus::model::standard_basis: ±1 from the top bit of splitmix64(seed + i)."""
    m = (1 << 64) - 1

    def splitmix64(x):
        z = (x + 0x9E3779B97F4A7C15) & m
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        return z ^ (z >> 31)

    bits = [splitmix64((seed + i) & m) >> 63 for i in range(vocab * width)]
    return torch.tensor(bits, dtype=torch.float32).reshape(vocab, width) * 2 - 1


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x, mask):
        b, t, d = x.shape
        hd = d // self.heads
        qkv = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd)) + mask[:t, :t]
        att = att.softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        h = self.fc1(self.ln2(x))
        return x + self.fc2(h * torch.sigmoid(1.702 * h))


class LocalModel(nn.Module):
    def __init__(self, dim, depth, heads, context, output_dim, vocab=256):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(context, dim) * 0.02)
        self.gate_in = nn.Linear(output_dim, dim)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.ln_f = nn.LayerNorm(dim)
        self.rep = nn.Linear(dim, output_dim)
        self.head = nn.Linear(output_dim, vocab)
        mask = torch.triu(torch.full((context, context), -1e9), diagonal=1)
        self.register_buffer("mask", mask)
        self.register_buffer("basis", standard_basis(vocab, output_dim))
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif "ln" in name:
                nn.init.ones_(p)
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, tokens, joined):
        t = tokens.shape[1]
        x = self.tok(tokens) + self.pos[:t] + self.gate_in(joined)
        for blk in self.blocks:
            x = blk(x, self.mask)
        hidden = self.rep(self.ln_f(x))
        logits = self.head(hidden)
        # What a peer serves: its next-byte distribution on the network's standard basis
        # (nucleus::model::standard_basis; computed by the Rust model too, so timed here too).
        rep = logits.softmax(dim=-1) @ self.basis
        return rep, logits


def torch_bench(cfg, steps, text):
    torch.manual_seed(0)
    m = LocalModel(cfg["dim"], cfg["depth"], cfg["heads"], cfg["context"], cfg["output_dim"])
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=0.0)
    b, t = cfg["batch"], cfg["context"]
    data = torch.tensor(list(text), dtype=torch.long)
    joined = torch.zeros(b, t, cfg["output_dim"])
    g = torch.Generator().manual_seed(0)
    losses = []
    start = time.perf_counter()
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        idx = torch.randint(0, len(data) - t - 1, (b,), generator=g)
        x = torch.stack([data[j:j + t] for j in idx])
        y = torch.stack([data[j + 1:j + t + 1] for j in idx])
        _, logits = m(x, joined)
        loss = F.cross_entropy(logits.reshape(b * t, -1), y.reshape(b * t))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        if i >= 2:
            losses.append(loss.item())
    secs = time.perf_counter() - start
    params = sum(p.numel() for p in m.parameters())
    return {"tokens_per_s": steps * b * t / secs, "seconds": secs, "parameters": params,
            "first_loss": losses[0], "last_loss": losses[-1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30, help="timed steps per round (default 30)")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for each side (default 1): torch.set_num_threads, and "
                         "RAYON_NUM_THREADS for ours (with CANDLE_NUM_THREADS=1)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of (ours, then PyTorch); the ratio reported is the median "
                         "of the per-round ratios, so a noisy neighbour hits both (default 3)")
    ap.add_argument("--rust-json", help="use this bench_train --json output instead of running ours")
    args = ap.parse_args()
    if args.steps < 1 or args.threads < 1 or args.rounds < 1:
        ap.error("--steps, --threads and --rounds must be at least 1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    binary = os.path.join(root, "target", "release", "examples", "bench_train")
    if not args.rust_json:
        print("building the Rust side (cargo build --release -p nucleus --example bench_train)...",
              file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "nucleus", "--example",
                        "bench_train"], cwd=root, check=True)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), CANDLE_NUM_THREADS="1")

    def ours_once():
        if args.rust_json:
            return json.loads(open(args.rust_json).read())
        out = subprocess.run([binary, "--json", "--steps", str(args.steps)], cwd=root, env=env,
                             check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    torch.set_num_threads(args.threads)
    text = open(os.path.join(root, "crates/nucleus/data/food"), "rb").read()
    rounds = []
    for r in range(args.rounds):
        ours = ours_once()
        theirs = torch_bench(ours, args.steps, text)
        ratio = ours["tokens_per_s"] / theirs["tokens_per_s"]
        rounds.append((ratio, ours, theirs))
        print(f"round {r + 1}/{args.rounds}: candle {ours['tokens_per_s']:.0f} tokens/s, "
              f"pytorch {theirs['tokens_per_s']:.0f} tokens/s, ratio {ratio:.2f}", file=sys.stderr)
    rounds.sort(key=lambda x: x[0])
    ratio, ours, theirs = rounds[len(rounds) // 2]
    if theirs["parameters"] != ours["parameters"]:
        print(f"warning: parameter counts differ: torch {theirs['parameters']}, "
              f"candle {ours['parameters']}", file=sys.stderr)
    shape = (f"dim {ours['dim']} depth {ours['depth']} heads {ours['heads']} "
             f"context {ours['context']} batch {ours['batch']}, {ours['parameters']} parameters")
    print(f"model: {shape}; {args.steps} timed steps x {args.rounds} rounds; "
          f"{args.threads} thread(s) each, torch {torch.__version__}")
    print(f"candle (agora nucleus): {ours['tokens_per_s']:10.0f} tokens/s  "
          f"loss {ours['first_loss']:.3f} -> {ours['last_loss']:.3f}   (median round)")
    print(f"pytorch:                {theirs['tokens_per_s']:10.0f} tokens/s  "
          f"loss {theirs['first_loss']:.3f} -> {theirs['last_loss']:.3f}")
    print(f"ratio candle/pytorch: {ratio:.2f} (median of {args.rounds}; "
          f"range {rounds[0][0]:.2f}-{rounds[-1][0]:.2f})")


if __name__ == "__main__":
    main()
