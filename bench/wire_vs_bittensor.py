#!/usr/bin/env python3
"""Agora's wire protocol against the bittensor SDK's own axon and dendrite, same payloads, same
run, loopback only.

  python3 -m pip install "bittensor<11" numpy
  python3 bench/wire_vs_bittensor.py [--secs 3] [--sizes 4096,262144,4194304] [--conc 1,16]

For each payload x concurrency it runs
  - bittensor 10.x: an Axon (separate process, bound to 127.0.0.1) whose forward echoes a
    bt.Tensor back, and a bt.Dendrite in this process; the tensor field is listed in
    `required_hash_fields`, so the dendrite's signature covers the body as ours does;
  - Agora: `cargo bench -p wire --bench wire -- --json` (a Rust axon echoing a float32 tensor and
    a Rust dendrite, one process, same 2 cores; signatures over the body, validation, NaN scan);
and prints throughput (MB/s of request + response payload) and p50/p99 latency per call, with
the ratios Agora / bittensor.

What the SDK needs here (see /work/shared/notes/bittensor-sdk.md): the 10.x line (11 dropped the
axon); no torch (a module flag lets numpy arrays through the dtype check); no IP lookup (patched
to 127.0.0.1); sys.argv cleared before Axon.config() parses it.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import ClassVar, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def patch_sdk():
    """Loopback only, numpy only."""
    import bittensor.utils.networking as networking

    networking.get_external_ip = lambda: "127.0.0.1"
    import bittensor.core.axon as axon_mod
    import bittensor.core.dendrite as dendrite_mod

    for mod in (axon_mod, dendrite_mod):
        if hasattr(mod, "networking"):
            mod.networking.get_external_ip = lambda: "127.0.0.1"
    import bittensor.core.tensor as tensor_mod

    # Marks the torch dtypes as already added: numpy arrays pass the dtype check, no torch import.
    tensor_mod.dtypes.torch = True


def echo_synapse():
    import bittensor as bt

    class Echo(bt.Synapse):
        tensor: Optional[bt.Tensor] = None
        required_hash_fields: ClassVar[tuple] = ("tensor",)

    return Echo


def run_bt_axon(port: int, wallet_dir: str):
    sys.argv = sys.argv[:1]
    patch_sdk()
    import bittensor as bt

    Echo = echo_synapse()
    wallet = bt.Wallet(name="bench", hotkey="axon", path=wallet_dir)
    wallet.create_coldkey_from_uri("//Bench", use_password=False, overwrite=True, suppress=True)
    wallet.create_hotkey_from_uri("//BenchAxon", use_password=False, overwrite=True, suppress=True)

    def forward(synapse: Echo) -> Echo:
        return synapse  # the tensor goes back as it came

    axon = bt.Axon(wallet=wallet, ip="127.0.0.1", external_ip="127.0.0.1", port=port)
    axon.attach(forward_fn=forward)
    axon.start()
    print("READY", flush=True)
    sys.stdin.read()
    axon.stop()


def percentile(values, p):
    s = sorted(values)
    i = max(1, min(len(s), int(-(-len(s) * p // 1)))) - 1
    return s[i]


async def bt_cell(dendrite, target, synapse_factory, size, conc, secs):
    for _ in range(3):
        await dendrite.call(target_axon=target, synapse=synapse_factory(), timeout=60, deserialize=False)
    latencies, failures = [], 0
    stop = time.perf_counter() + secs

    async def loop():
        nonlocal failures
        n = 0
        while time.perf_counter() < stop or n < 5:
            t = time.perf_counter()
            r = await dendrite.call(target_axon=target, synapse=synapse_factory(), timeout=60, deserialize=False)
            latencies.append(time.perf_counter() - t)
            n += 1
            ok = r.dendrite.status_code == 200 and r.tensor is not None and r.tensor.shape == [size // 4]
            failures += 0 if ok else 1

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(conc)))
    elapsed = time.perf_counter() - start
    return {
        "calls": len(latencies),
        "failures": failures,
        "mb_per_s": 2 * size * len(latencies) / elapsed / 1e6,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
    }


def bittensor_results(sizes, concs, secs):
    import numpy as np

    sys.argv = sys.argv[:1]
    patch_sdk()
    import bittensor as bt

    Echo = echo_synapse()
    wallet_dir = tempfile.mkdtemp(prefix="bt-bench-")
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen(
        [sys.executable, __file__, "--bt-axon", str(port), wallet_dir],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        line = server.stdout.readline()
        if line.strip() != "READY":
            raise SystemExit(f"bittensor axon did not start: {line!r}")
        time.sleep(0.5)
        dendrite = bt.Dendrite(wallet=bt.Keypair.create_from_uri("//BenchDendrite"))
        target = bt.AxonInfo(version=1, ip="127.0.0.1", port=port, ip_type=4,
                             hotkey=bt.Keypair.create_from_uri("//BenchAxon").ss58_address,
                             coldkey=bt.Keypair.create_from_uri("//Bench").ss58_address)
        # One event loop for every cell: the dendrite's HTTP session belongs to it.
        async def all_cells():
            out = {}
            for size in sizes:
                array = (np.arange(size // 4, dtype=np.float32) % 1000) * 0.001
                tensor = bt.Tensor.serialize(array)
                for conc in concs:
                    cell = await bt_cell(dendrite, target, lambda: Echo(tensor=tensor), size, conc, secs)
                    out[(size, conc)] = cell
                    print(f"  bittensor {size:>8} B x{conc:<3} {cell['mb_per_s']:9.1f} MB/s"
                          f"  p50 {cell['p50_ms']:8.2f} ms  p99 {cell['p99_ms']:8.2f} ms"
                          f"  ({cell['calls']} calls, {cell['failures']} failed)", flush=True)
            return out

        out = asyncio.run(all_cells())
        return out
    finally:
        server.stdin.close()
        server.wait(timeout=10)


def agora_results(secs):
    cmd = ["cargo", "bench", "--quiet", "-p", "wire", "--bench", "wire", "--", "--json", "--skip-tcp",
           "--secs", str(secs)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            out[(row["payload"], row["concurrency"])] = row
            print(f"  agora     {row['payload']:>8} B x{row['concurrency']:<3} {row['mb_per_s']:9.1f} MB/s"
                  f"  p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  ({row['calls']} calls)", flush=True)
    return out


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--bt-axon":
        run_bt_axon(int(sys.argv[2]), sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--secs", type=float, default=3.0)
    ap.add_argument("--sizes", default="4096,262144,4194304")
    ap.add_argument("--conc", default="1,16")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    concs = [int(c) for c in args.conc.split(",")]
    print("agora (cargo bench -p wire --bench wire -- --json):", flush=True)
    ours = agora_results(args.secs)
    print("bittensor SDK axon + dendrite:", flush=True)
    theirs = bittensor_results(sizes, concs, args.secs)
    print()
    print(f"{'payload':>9} {'conc':>4} | {'agora MB/s':>10} {'bt MB/s':>8} {'ratio':>7} | {'agora p50':>9} {'bt p50':>8}"
          f" | {'agora p99':>9} {'bt p99':>8} {'ratio':>7}")
    for size in sizes:
        for conc in concs:
            a, b = ours.get((size, conc)), theirs.get((size, conc))
            if not a or not b:
                continue
            label = f"{size >> 20} MB" if size >= 1 << 20 else f"{size >> 10} KB"
            print(f"{label:>9} {conc:>4} | {a['mb_per_s']:10.1f} {b['mb_per_s']:8.1f} {a['mb_per_s'] / b['mb_per_s']:6.1f}x"
                  f" | {a['p50_ms']:8.2f}ms {b['p50_ms']:6.2f}ms | {a['p99_ms']:8.2f}ms {b['p99_ms']:6.2f}ms"
                  f" {b['p99_ms'] / a['p99_ms']:6.1f}x")
    print("\nratio: throughput agora / bittensor; p99 ratio: bittensor p99 / agora p99 (higher is better for agora)")


if __name__ == "__main__":
    main()
