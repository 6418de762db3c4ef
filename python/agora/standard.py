"""The network standard every peer serves: the next-byte distribution projected on a shared
basis (`nucleus::model::standard_basis`).

A peer's answer to TEXT `[batch, seq]` bytes is `[batch, seq, OUTPUT_DIM]` float32:
`softmax(logits) @ standard_basis()`, its distribution over the byte at t+1 written in the same
±1 coordinates as everyone else's, so a gate that sums its neighbours' answers (market paper
eq. 10) adds predictions, not unrelated features. Sequences are at most CONTEXT bytes.
"""

from __future__ import annotations

import numpy as np

VOCAB = 256
OUTPUT_DIM = 32
CONTEXT = 64
# "agora_v1": part of the standard; another seed makes peers unintelligible to each other.
STANDARD_BASIS_SEED = 0x61676F72615F7631
_M64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Steele, Lea and Flood's SplitMix64 output function on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def standard_basis(vocab: int = VOCAB, width: int = OUTPUT_DIM) -> np.ndarray:
    """`[vocab, width]` float32 of ±1: entry (v, d) is +1 when the top bit of
    splitmix64(seed + v * width + d) is set."""
    i = np.arange(vocab * width, dtype=np.uint64)
    with np.errstate(over="ignore"):
        bits = _splitmix64(np.uint64(STANDARD_BASIS_SEED) + i) >> np.uint64(63)
    return (bits.astype(np.float32) * 2 - 1).reshape(vocab, width)
