"""Results that cannot tell models apart say so: an evaluation or benchmark where every evaluated
user is new (all cold start), models that score exactly alike, a study whose best trials tie."""

import csv
from pathlib import Path

import pytest

import persotool as pt
from persotool.kernels.config import CONFIGS
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def cold_split(tmp_path_factory) -> Path:
    """Users 0-59 act in the first 20 days, users 60-99 only after: a temporal split at day 20 holds
    out nobody the model has seen."""
    root = tmp_path_factory.mktemp("cold")
    with open(root / "log.csv", "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["u", "i", "t"])
        for u in range(100):
            days = range(0, 20) if u < 60 else range(21, 40)
            for d in days:
                if (u + d) % 3 == 0:
                    out.writerow([f"u{u}", f"i{(u * 7 + d) % 30}", 1_700_000_000 + d * 86_400 + u])
    ds = pt.ingest(root / "log.csv", out=root / "ds", user_col="u", item_col="i", time_col="t")
    return pt.split(ds, out=root / "split", strategy="temporal", cutoff="0.5").path


def test_an_evaluation_of_only_new_users_says_it_cannot_tell_models_apart(cold_split, tmp_path) -> None:
    model = pt.train(cold_split, out=tmp_path / "m", model="itemknn")
    made = run_cli("evaluate", model.path, "--no-track")
    assert made.exit_code == 0, made.stderr
    assert "has no training history: every model can only rank them by its fallback" in made.stderr
    evaluation = pt.evaluate(model)
    assert evaluation.context["cold"]["cold_users"] == evaluation.context["cold"]["users"] > 0


def test_a_benchmark_of_identical_scores_says_so(cold_split, tmp_path) -> None:
    config = pt.BenchmarkConfig(
        baseline="popular", models={"popular": {"model": "popular"}, "itemknn": {"model": "itemknn"}}
    )
    bench = pt.benchmark(cold_split, config, tmp_path / "b")
    notes = bench.notes()
    assert any("every model scores exactly the same" in note for note in notes), notes
    assert any("no training history" in note for note in notes), notes


def test_a_study_whose_best_trials_tie_says_so(tmp_path) -> None:
    log = pt.synth(out=tmp_path / "synth", users=150, items=60, events=3_000, days=20, seed=9)
    ds = pt.ingest(log.log, out=tmp_path / "ds", schema=log.schema)
    split = pt.split(ds, out=tmp_path / "split", strategy="leave-last", leave_last=2, valid=True)
    space = tmp_path / "space.toml"  # every window longer than the 20-day log counts the same events
    space.write_text('model = "popular"\n[params.window_days]\ntype = "float"\nlow = 100\nhigh = 3650\n')
    tuned = pt.tune(split, out=tmp_path / "t", space=space, trials=4, seed=0)
    assert len(tuned.manifest.best["tied_with"]) == 3
    assert any("4 trials tie exactly at the best ndcg@10" in note for note in tuned.notes()), tuned.notes()
    assert (CONFIGS / "spaces" / "popular.toml").is_file()
