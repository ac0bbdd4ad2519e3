"""The benchmark scripts run end to end at toy size (their figures come from `make bench`), so they
cannot rot unnoticed; their built-in cross-checks must hold."""

from __future__ import annotations

import importlib.util
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


def _run(script: str, *args: str, out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_validate_simulation_small(tmp_path: Path) -> None:
    report = _run(
        "validate_simulation.py",
        "--replicates",
        "8",
        "--ab-replicates",
        "8",
        "--population",
        "600",
        "--days",
        "10",
        "--power-sizes",
        "600",
        "--power-replicates",
        "4",
        "--sizes",
        "600",
        "--size-replicates",
        "4",
        "--robustness-replicates",
        "3",
        "--robustness-worlds",
        "2",
        "--robustness-pool",
        "3",
        "--harm-replicates",
        "3",
        "--harm-population",
        "600",
        out=tmp_path / "v.json",
    )
    assert report["aa_by_size"][0]["replicates"] == 4 and report["aa_by_size"][0]["false_positive_rate"]
    assert report["sequential_power"][0]["population"] == 600
    for design in ("aa_two_equal_arms", "aa_three_arms_20_30_50"):
        rates = report[design]["false_positive_rate"]
        assert rates and all(0 <= v <= 1 for v in rates.values())
        assert set(report[design]["sequential_any_day_rate"]) >= {"b:engagements", "b:visits"}
    assert {"ab_min_coverage_triggered", "ab_min_coverage_itt", "oracle_minus_random_true_effect"} <= set(report)
    null = report["robustness_null"]
    assert null["replicates"] == 3 and null["worlds_per_replicate"] == 2
    assert set(null["null_robust_rate"]) >= {"random-b:engagements"} and null["predictive_coverage"]
    harm = report["planted_harm"]
    assert harm["replicates"] == 3 and harm["true_effect"]["engagements"] < 0  # the adverse arm does harm


def test_validate_ope_small(tmp_path: Path) -> None:
    report = _run("validate_ope.py", "--replicates", "30", "--no-obd", out=tmp_path / "ope.json")
    for target in ("near", "far"):
        t = report["known_truth"]["targets"][target]
        assert 0 < t["value"] < 1 and 0 < t["ess"] <= 2000
        assert set(t["estimators"]) == {"IPS", "SNIPS", "DM", "DR", "SNDR", "Switch-DR", "DRos"}
        assert abs(t["estimators"]["IPS"]["bias"]) < 5 * t["estimators"]["IPS"]["bias_mc_se"] + 1e-3


def test_ope_speed_benchmark_small(tmp_path: Path) -> None:
    report = _run("ope.py", "--impressions", "30000", "--resamples", "100", out=tmp_path / "ope.json")
    # persotool's block-by-block estimators equal the plain in-memory formulas
    assert max(report["agreement"].values()) < 1e-6
    assert report["seconds"]["estimators"] > 0 and report["seconds"]["bootstrap_per_resample"] >= 0
    assert abs(report["estimates"]["DR"] - report["truth"]) < 0.05


def test_cli_help_benchmark_small(tmp_path: Path) -> None:
    report = _run("cli_help.py", "--repeat", "1", out=tmp_path / "h.json")
    assert "persotool ingest --help" in report["median_seconds"]
    assert report["slowest_seconds"] == max(report["median_seconds"].values())
    assert report["baselines_median_seconds"]["python_start"] < report["slowest_seconds"]


def test_tune_benchmark_small(tmp_path: Path) -> None:
    report = _run("tune.py", "--trials", "2", out=tmp_path / "t.json")
    variants = report["variants"]
    assert set(variants) == {"bare_optuna_in_memory", "persotool_journal", "persotool_sqlite_rdb"}
    for figures in variants.values():
        assert figures["wall_seconds"] >= figures["trial_work_seconds"] > 0
    assert "extra_overhead_vs_bare" in variants["persotool_journal"]


def test_loop_ope_small(tmp_path: Path) -> None:
    """Simulated arms' logs valued off-policy: the exact values are the simulator's, the intervals
    mostly cover them, and the docs render the report."""
    report = _run("loop_ope.py", "--seeds", "8", "--grid-seeds", "1", out=tmp_path / "loop.json")
    for pair in ("oracle from popular", "popular from oracle"):
        t = report["pairs"][pair]
        assert 0 < t["value"] < 1 and t["ess"] > 0 and t["effective_rewards"] > 0
        assert t["estimators"]["DR"]["coverage"] >= 0.5  # 95% intervals: 4 of 8 is already unlikely
    assert sum(b["estimates"] for b in report["grid"]["bins"]) == 5 * 3 * 2  # worlds x directions
    spec = importlib.util.spec_from_file_location("persotool_docs_script", ROOT / "scripts" / "docs.py")
    docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs)
    first, second = docs.bench_loop_ope(report)
    assert "oracle from popular" in first and "effective rewards" in second


def test_validate_segments_small(tmp_path: Path) -> None:
    """The planted segment harm is what it says (negative in the heaviest fifth, the others helped)."""
    report = _run("validate_segments.py", "--replicates", "2", "--population", "3000", out=tmp_path / "seg.json")
    assert 0.15 < report["segment_share"] < 0.25
    assert report["true_effect"] < 0 and all(e > 0 for e in report["other_segments_true_effects"])
    assert 0 <= report["found"] <= 1 and 0 <= report["aa_significant"] <= 1 and report["aa_tests_per_replicate"] > 0
