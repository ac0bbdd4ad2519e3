"""How much two models' lists differ (`evaluate MODEL --compare OTHER`): Jaccard and rank-biased
overlap checked by hand and against a direct implementation of RBO's definition; a model against
itself is identical, against another it is not; the measures are gates, in --json and per segment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import persotool as pt
from persotool.kernels.metrics.stability import jaccard, rbo
from tests.conftest import run_cli


def _rbo_by_definition(x: list[int], y: list[int], p: float = 0.9) -> float:
    k = len(x)
    agreement = [len(set(x[:d]) & set(y[:d])) / d for d in range(1, k + 1)]
    return agreement[-1] * p**k + (1 - p) / p * sum(a * p**d for d, a in enumerate(agreement, start=1))


def test_overlap_measures_by_hand() -> None:
    a = np.array([[1, 2, 3, 4, 5]])
    assert rbo(a, a)[0] == pytest.approx(1.0) and jaccard(a, a)[0] == 1.0
    assert rbo(a, a + 10)[0] == 0.0 and jaccard(a, a + 10)[0] == 0.0
    swapped = np.array([[2, 1, 3, 4, 5]])
    assert rbo(a, swapped)[0] == pytest.approx(0.9)  # p^5 + (1-p)/p (p^2 + p^3 + p^4 + p^5) = 0.9
    rng = np.random.default_rng(0)
    x = np.array([rng.permutation(30)[:10] for _ in range(200)])
    y = np.array([rng.permutation(30)[:10] for _ in range(200)])
    expected = [_rbo_by_definition(list(u), list(v)) for u, v in zip(x, y, strict=True)]
    np.testing.assert_allclose(rbo(x, y), expected, rtol=1e-12)
    assert jaccard(x[:1], y[:1])[0] == len(set(x[0]) & set(y[0])) / len(set(x[0]) | set(y[0]))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("stability")
    log = pt.synth(out=root / "synth", users=300, items=120, events=9_000, days=30, seed=8)
    ds = pt.ingest(log.log, out=root / "ds", schema=log.schema)
    sp = pt.split(ds, out=root / "split", strategy="leave-last", leave_last=2)
    ease = pt.train(sp, out=root / "ease", model="ease", params={"l2": 100}).path
    knn = pt.train(sp, out=root / "knn", model="itemknn").path
    other = pt.synth(out=root / "synth2", users=100, items=50, events=2_000, days=20, seed=9)
    ds2 = pt.ingest(other.log, out=root / "ds2", schema=other.schema)
    sp2 = pt.split(ds2, out=root / "split2", strategy="leave-last", leave_last=2)
    foreign = pt.train(sp2, out=root / "foreign", model="popular").path
    return ease, knn, foreign


def test_a_model_against_itself_and_another(models) -> None:
    ease, knn, _ = models
    same = run_cli("evaluate", ease, "--compare", ease, "--json", "--no-track")
    assert same.exit_code == 0, same.stderr
    payload = json.loads(same.stdout)
    assert payload["jaccard@10"] == 1.0 and payload["rbo@10"] == pytest.approx(1.0) and payload["changed@10"] == 0.0
    other = run_cli("evaluate", ease, "--compare", knn, "--json", "--no-track", "--min", "jaccard@10=0.99")
    assert other.exit_code == 1 and "jaccard@10" in other.stderr  # the gate fails: the lists differ
    payload = json.loads(other.stdout)
    assert 0 < payload["jaccard@10"] < 1 and 0 < payload["rbo@10"] < 1
    band = payload["stability"]["rbo@10"]
    assert band["ci_low"] < band["mean"] < band["ci_high"]
    assert {row["metric"] for row in payload["segments"]} >= {"jaccard@10", "rbo@10", "changed@10"}


def test_a_stability_gate_without_compare_is_a_typo_and_a_foreign_model_is_refused(models) -> None:
    ease, _, foreign = models
    typo = run_cli("evaluate", ease, "--min", "jaccard@10=0.5", "--no-track")
    assert typo.exit_code == 2 and "jaccard@10" in typo.stderr
    refused = run_cli("evaluate", ease, "--compare", foreign, "--no-track")
    assert refused.exit_code == 4 and "foreign: was trained on dataset" in refused.stderr


def test_a_benchmark_says_how_much_each_model_overlaps_the_baseline(models, tmp_path: Path) -> None:
    ease, _, _ = models
    split = pt.TrainedModel(ease).manifest.split.path
    config = pt.BenchmarkConfig(
        name="overlap",
        baseline="popular",
        k=[10],
        metrics=["ndcg"],
        models={"popular": {"model": "popular"}, "ease": {"model": "ease", "params": {"l2": 100}}},
    )
    bench = pt.benchmark(split, config, tmp_path / "bench")
    rows = {row["model"]: row for row in bench.results.iter_rows(named=True)}
    assert rows["popular"]["rbo_vs_baseline@10"] == pytest.approx(1.0)
    assert rows["popular"]["jaccard_vs_baseline@10"] == 1.0
    assert 0 <= rows["ease"]["jaccard_vs_baseline@10"] < 1
    assert "rbo vs baseline@10" in bench.to_markdown()
