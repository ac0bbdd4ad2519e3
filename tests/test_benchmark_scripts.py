"""The benchmark scripts run end to end at toy size (their figures come from `make bench`), so they
cannot rot unnoticed; their built-in cross-checks must hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--users", "600", "--items", "400", "--components", "8", "--epochs", "1", "--repeat", "1", "--per-user", "20"]


def test_evaluate_benchmark_small(tmp_path: Path) -> None:
    out = tmp_path / "evaluate.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "evaluate.py"), *SMALL, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    for key in ("seconds", "lightfm_seconds", "floor_seconds", "speedup_vs_lightfm", "ratio_to_floor"):
        assert report[key] > 0
    assert report["speedup_vs_lightfm"] == pytest.approx(
        report["lightfm_seconds"] / report["seconds"], rel=0.05
    )  # both rounded to ms
    # persotool and lightfm.evaluation score the same model identically
    for ours, theirs in report["agreement_on_bare_model"].values():
        assert ours == pytest.approx(theirs, abs=1e-6)
