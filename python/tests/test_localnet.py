"""One Python peer among Rust peers in a real localnet (`agora localnet`, the `python` role):
it registers, is queried by the Rust peers and the judge, sets weights, and earns incentive;
the noise peer, the control, earns none. Minutes long: marked `localnet`, run by CI on its own
(`python3 -m pytest python/tests -m localnet`)."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest

from agora.keys import dev_key

from conftest import ROOT, need_agora, run_agora

pytestmark = pytest.mark.localnet
SCENARIO = ROOT / "python" / "tests" / "data" / "mixed_localnet.toml"
PY_PEER = "py-computers"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not os.environ.get("CI"):
        pytest.importorskip("torch")
    need_agora()
    # AGORA_MIXED_OUT=DIR keeps the run there; a DIR that already holds a finished run
    # (report.md) is checked again without running it.
    out = Path(os.environ.get("AGORA_MIXED_OUT") or tmp_path_factory.mktemp("mixed"))
    if (out / "report.md").is_file():
        return out
    run_agora("localnet", "--scenario", str(SCENARIO), "--out", str(out), env={"AGORA_PYTHON": sys.executable},
              timeout=1800)
    return out


def samples(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(out / "metagraph.csv")))


def last_rows(out: Path) -> dict[str, dict[str, str]]:
    rows = samples(out)
    last = max(int(r["block"]) for r in rows)
    return {r["name"]: r for r in rows if int(r["block"]) == last}


def mean_incentive_second_half(out: Path, name: str) -> float:
    """A peer's incentive averaged over the run's second half (one block's value swings with
    whose weights the last epoch saw; the report uses the same average)."""
    rows = samples(out)
    first, last = min(int(r["block"]) for r in rows), max(int(r["block"]) for r in rows)
    mine = [float(r["incentive"]) for r in rows if r["name"] == name and int(r["block"]) > (first + last) // 2]
    return sum(mine) / len(mine)


def test_the_python_peer_registers_is_queried_sets_weights_and_earns(run: Path) -> None:
    final = last_rows(run)
    me = final[PY_PEER]
    assert me["role"] == "python"
    assert me["last_update"], "it set weights"
    mine, noise = mean_incentive_second_half(run, PY_PEER), mean_incentive_second_half(run, "noise")
    assert mine > 0, f"it earns incentive: {me}"
    assert noise < mine, f"the control earns less: noise {noise}, {PY_PEER} {mine}"
    peer_dir = run / "peers" / PY_PEER
    stats = json.loads((peer_dir / "axon.json").read_text())
    # The judge's key derives from a public name (localnet::judging::judge_key), like a dev key.
    judge = dev_key("localnet-judge").public_hex
    rust_callers = [c for c in stats["callers"] if c != judge]
    assert len(rust_callers) >= 3, f"queried by the Rust peers: {stats}"
    assert stats["calls"].get("Backward/SUCCESS", 0) > 0, f"it received gradients: {stats}"
    status = list(csv.DictReader(open(peer_dir / "status.csv")))
    assert status and int(status[-1]["step"]) > 0
    report = json.loads((peer_dir / "final.json").read_text())
    assert report["uid"] == int(me["uid"]) and report["ablation"], report


def test_the_judge_measures_it_and_the_report_ranks_it(run: Path) -> None:
    uid = last_rows(run)[PY_PEER]["uid"]
    judged = [r for r in csv.DictReader(open(run / "judge.csv")) if r["uid"] == uid]
    assert judged and judged[-1]["quality"], "the judge got its answers"
    report = (run / "report.md").read_text()
    assert PY_PEER in report and "python" in report
