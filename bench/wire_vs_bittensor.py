#!/usr/bin/env python3
"""Agora's wire protocol against the bittensor SDK's own axon and dendrite, and the references
`cargo bench -p wire` measures (Python grpcio echo, raw TCP echo), same payloads, same run,
loopback only.

  python3 -m pip install "bittensor<11" numpy grpcio
  python3 bench/wire_vs_bittensor.py [--secs 1] [--rounds 3] [--sizes 4096,262144,1048576,4194304] [--conc 1,16]
                                     [--workers N]

For each payload x concurrency, `--rounds` times, the systems take turns (the order rotated
each round, so load from other processes falls on all of them alike):
  - bittensor 10.x: an Axon (its own process, bound to 127.0.0.1) whose forward echoes a
    bt.Tensor back, and a bt.Dendrite in this process; the tensor field is listed in
    `required_hash_fields`, so the dendrite's signature covers the body as ours does;
  - the wire bench binary (`cargo bench -p wire --bench wire`, built once): Agora (a Rust axon
    echoing a float32 tensor in its own process, a Rust dendrite; signatures over the body,
    validation, NaN scans), the raw TCP echo and the Python grpcio echo, in turns;
and prints medians over the rounds of throughput (MB/s of request + response payload) and p50/p99
latency per call, with Agora's ratios to each. `--sizes` and `--conc` apply to every system.

What the SDK needs here (see /work/shared/notes/bittensor-sdk.md): the 10.x line (11 dropped the
axon); no torch (a module flag lets numpy arrays through the dtype check); no IP lookup (patched
to 127.0.0.1); its uvicorn server bound to 127.0.0.1 (it hard-codes 0.0.0.0); sys.argv cleared
before Axon.config() parses it.
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
    # The SDK builds its uvicorn config with host 0.0.0.0 whatever `ip` says: loopback only.
    axon.fast_server.config.host = "127.0.0.1"
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
        # Only answered calls count: a failed call moved no payload back.
        "mb_per_s": 2 * size * (len(latencies) - failures) / elapsed / 1e6,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
    }


class BittensorSide:
    """The SDK's axon in its own process and a dendrite here, kept across cells."""

    def __init__(self):
        sys.argv = sys.argv[:1]
        patch_sdk()
        import bittensor as bt

        self.bt = bt
        self.Echo = echo_synapse()
        self.wallet_dir = tempfile.mkdtemp(prefix="bt-bench-")
        self.port = 18000 + os.getpid() % 1000
        self.server = subprocess.Popen(
            [sys.executable, __file__, "--bt-axon", str(self.port), self.wallet_dir],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        line = self.server.stdout.readline()
        if line.strip() != "READY":
            raise SystemExit(f"bittensor axon did not start: {line!r}")
        time.sleep(0.5)
        self.dendrite = bt.Dendrite(wallet=bt.Keypair.create_from_uri("//BenchDendrite"))
        self.target = bt.AxonInfo(version=1, ip="127.0.0.1", port=self.port, ip_type=4,
                                  hotkey=bt.Keypair.create_from_uri("//BenchAxon").ss58_address,
                                  coldkey=bt.Keypair.create_from_uri("//Bench").ss58_address)

    async def cell(self, size, conc, secs):
        import numpy as np

        array = (np.arange(size // 4, dtype=np.float32) % 1000) * 0.001
        tensor = self.bt.Tensor.serialize(array)
        return await bt_cell(self.dendrite, self.target, lambda: self.Echo(tensor=tensor), size, conc, secs)

    def close(self):
        self.server.stdin.close()
        self.server.wait(timeout=10)


def wire_bench_binary():
    """Builds the wire bench once and returns its executable."""
    cmd = ["cargo", "bench", "--quiet", "-p", "wire", "--bench", "wire", "--no-run", "--message-format=json"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "wire" \
                and "bench" in msg["target"].get("kind", []) and msg.get("executable"):
            return msg["executable"]
    raise SystemExit("cargo did not report the wire bench executable")


def wire_cell(binary, size, conc, secs, workers=None):
    """One round of Agora, TCP and grpcio (in turns) for one cell: {impl: row}."""
    cmd = [binary, "--json", "--rounds", "1", "--secs", str(secs), "--sizes", str(size), "--conc", str(conc)]
    if workers:
        cmd += ["--workers", str(workers)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return {row["impl"]: row for row in map(json.loads, filter(lambda l: l.startswith("{"), proc.stdout.splitlines()))}


def median(values):
    s = sorted(values)
    return s[len(s) // 2]


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--bt-axon":
        run_bt_axon(int(sys.argv[2]), sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--secs", type=float, default=1.0, help="seconds per system, cell and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="4096,262144,1048576,4194304")
    ap.add_argument("--conc", default="1,16")
    ap.add_argument("--workers", type=int, default=None,
                    help="tokio worker threads in each Rust process (default: one per core, as a peer runs)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    concs = [int(c) for c in args.conc.split(",")]
    binary = wire_bench_binary()
    print(f"load average before: {load_average()}", flush=True)

    async def all_cells():
        # One event loop for every cell: the SDK dendrite's HTTP session belongs to it.
        bt_side = BittensorSide()
        try:
            table = {}
            for size in sizes:
                for conc in concs:
                    rows = {"agora": [], "bittensor": [], "grpcio": [], "tcp": []}
                    for r in range(args.rounds):
                        turns = ["wire", "bittensor"] if r % 2 == 0 else ["bittensor", "wire"]
                        for turn in turns:
                            if turn == "wire":
                                for name, row in wire_cell(binary, size, conc, args.secs, args.workers).items():
                                    rows[name].append(row)
                            else:
                                rows["bittensor"].append(await bt_side.cell(size, conc, args.secs))
                    table[(size, conc)] = {
                        name: {k: median([row[k] for row in cells]) for k in ("mb_per_s", "p50_ms", "p99_ms")}
                        | {"calls": sum(row["calls"] for row in cells), "failures": sum(row["failures"] for row in cells)}
                        for name, cells in rows.items() if cells
                    }
                    print(f"  {size:>8} B x{conc:<3} " + "  ".join(
                        f"{name} {v['mb_per_s']:.1f} MB/s" for name, v in table[(size, conc)].items()), flush=True)
            return table
        finally:
            bt_side.close()

    table = asyncio.run(all_cells())
    print(f"load average after: {load_average()}")
    print(f"\nmedians of {args.rounds} round(s), {args.secs} s per system per round; MB/s counts request + response payload")
    print(f"{'payload':>8} {'conc':>4} | {'agora MB/s':>10} {'p50':>6} {'p99 ms':>7} | {'bt MB/s':>8} {'p50':>7} {'p99 ms':>7}"
          f" | {'grpcio':>7} {'TCP':>7} | {'/bt':>6} {'/grpcio':>7} {'/TCP':>5}")
    for (size, conc), v in table.items():
        a, b = v.get("agora"), v.get("bittensor")
        g, t = v.get("grpcio"), v.get("tcp")
        label = f"{size >> 20} MB" if size >= 1 << 20 else f"{size >> 10} KB"
        ratio = lambda x: f"{a['mb_per_s'] / x['mb_per_s']:.1f}x" if x and x["mb_per_s"] > 0 else "-"
        mbs = lambda x: f"{x['mb_per_s']:.1f}" if x else "-"
        print(f"{label:>8} {conc:>4} | {a['mb_per_s']:10.1f} {a['p50_ms']:6.2f} {a['p99_ms']:7.2f} | {b['mb_per_s']:8.1f}"
              f" {b['p50_ms']:7.1f} {b['p99_ms']:7.1f} | {mbs(g):>7} {mbs(t):>7} | {ratio(b):>6} {ratio(g):>7} {ratio(t):>5}")
        for name, x in v.items():
            if x["failures"]:
                print(f"         {name}: {x['failures']} of {x['calls']} calls failed")


if __name__ == "__main__":
    main()
