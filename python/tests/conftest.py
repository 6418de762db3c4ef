"""Shared fixtures: the repository root, the shared vectors, the `agora` binary and a dev node.

Tests that need the binary are marked `node`; they are skipped when it cannot be found, except
under CI (`CI` set), where a missing binary is a failure: a green run must not hide them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The tests are of the installed package (`pip install ./python`: its gRPC stubs exist only in
# the build). `python3 -m pytest` run inside python/ puts that directory first on sys.path,
# where `agora` is the source tree without stubs: take it out before anything imports agora.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "python"]
VECTORS = ROOT / "docs" / "vectors" / "transactions.json"


def agora_bin() -> Path | None:
    """`AGORA_BIN`, else the workspace's debug or release build, else `agora` on the PATH."""
    env = os.environ.get("AGORA_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for p in (target / "debug" / "agora", target / "release" / "agora"):
        if p.is_file():
            return p
    found = shutil.which("agora")
    return Path(found) if found else None


def need_agora() -> Path:
    path = agora_bin()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("no agora binary (set AGORA_BIN or build it: cargo build --bin agora)")
        pytest.skip("no agora binary (set AGORA_BIN or build it: cargo build --bin agora)")
    return path


@pytest.fixture(scope="session")
def vectors() -> dict:
    return json.loads(VECTORS.read_text())


class DevNode:
    """`agora node --dev --instant` on a free loopback port, stopped at the end."""

    def __init__(self, binary: Path, data: Path) -> None:
        self.log = open(data / "node.log", "w+")
        self.proc = subprocess.Popen(
            [str(binary), "node", "--dev", "--instant", "--data-dir", str(data / "chain"), "--rpc-addr", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        deadline = time.monotonic() + 60
        self.addr = ""
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.match(r"rpc listening on http://(\S+)", line)
            if m:
                self.addr = m.group(1)
                break
        if not self.addr:
            self.stop()
            self.log.seek(0)
            raise RuntimeError(f"the node did not start: {self.log.read()[-2000:]}")

    @property
    def http(self) -> str:
        return f"http://{self.addr}"

    @property
    def ws(self) -> str:
        return f"ws://{self.addr}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def dev_node() -> Iterator[DevNode]:
    binary = need_agora()
    with tempfile.TemporaryDirectory(prefix="agora-py-node-") as d:
        node = DevNode(binary, Path(d))
        try:
            yield node
        finally:
            node.stop()


def run_agora(*args: str, env: dict | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs the agora CLI; a failure shows its output."""
    p = subprocess.run([str(need_agora()), *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"agora {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


sys.path.insert(0, str(Path(__file__).parent))
