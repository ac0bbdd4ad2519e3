"""Where a wrong input used to give a plausible wrong answer (or a crash), it now gets one clear
line: models on another dataset's split, tampered model directories, bad hyperparameters, metric
typos in gates, NaN in JSON, novelty on new users, cold-start-heavy temporal splits."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from persotool.kernels.metrics import beyond
from persotool.kernels.metrics.segments import OTHER, segment_table
from tests.conftest import MOVIELENS, run_cli


def _ingest(out: Path, ratings: Path) -> None:
    result = run_cli("ingest", ratings, "--preset", "movielens", "-o", out, "--no-track")
    assert result.exit_code == 0, result.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Two datasets of the same shape (the second has every rating shifted by one second), a
    split of each, and an EASE model trained on the first."""
    root = tmp_path_factory.mktemp("silent")
    shifted = root / "shifted" / "ratings.csv"
    shifted.parent.mkdir()
    frame = pl.read_csv(MOVIELENS / "ratings.csv").with_columns(pl.col("timestamp") + 1)
    frame.write_csv(shifted)
    paths = {"a": root / "a", "b": root / "b"}
    _ingest(paths["a"], MOVIELENS / "ratings.csv")
    _ingest(paths["b"], shifted)
    for name in ("a", "b"):
        args = [
            "split",
            paths[name],
            "-o",
            root / f"split-{name}",
            "--strategy",
            "leave-last",
            "--leave-last",
            "5",
            "--min-item-interactions",
            "10",
        ]
        assert run_cli(*args, "--no-track").exit_code == 0
    model = root / "ease"
    result = run_cli("train", root / "split-a", "--model", "ease", "-o", model, "--no-track")
    assert result.exit_code == 0, result.stderr
    return {"root": root, "model": model, "split_a": root / "split-a", "split_b": root / "split-b"}


def test_model_on_a_split_of_another_dataset_is_refused(world: dict[str, Path]) -> None:
    result = run_cli("evaluate", world["model"], "--split", world["split_b"], "--no-track")
    assert result.exit_code == 4, result.stderr
    assert "was trained on dataset" in result.stderr and "evaluate it on a split of its own dataset" in result.stderr
    ok = run_cli("evaluate", world["model"], "--split", world["split_a"], "--metrics", "ndcg", "--no-track")
    assert ok.exit_code == 0, ok.stderr


def test_tampered_model_directory_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "ease"
    shutil.copytree(world["model"], copy)
    with np.load(copy / "arrays.npz") as stored:
        arrays = dict(stored)
    arrays["popularity_"] = arrays["popularity_"] * 2
    np.savez(copy / "arrays.npz", **arrays)
    result = run_cli("evaluate", copy, "--no-track")
    assert result.exit_code == 5
    assert "arrays.npz does not match the digest recorded when the model was trained" in result.stderr


@pytest.mark.parametrize(
    ("model", "setting", "fragment"),
    [
        ("ease", "l2=nan", "l2: Input should be a finite number"),
        ("als", "factors=-5", "factors: Input should be greater than or equal to 1"),
        ("lightfm", "epochs=0", "epochs: Input should be greater than or equal to 1"),
        ("bpr", "num_threads=0", "num_threads: Input should be greater than or equal to 1"),
        ("lightfm", "loss='hinge'", "loss: Input should be 'warp', 'bpr', 'logistic' or 'warp-kos'"),
        ("itemknn", "neighbors='many'", "neighbors: Input should be a valid integer"),
        ("ease", "seed=-1", "seed: Input should be greater than or equal to 0"),
    ],
)
def test_hyperparameters_are_checked_before_training(
    world: dict[str, Path], tmp_path: Path, model: str, setting: str, fragment: str
) -> None:
    result = run_cli("train", world["split_a"], "--model", model, "--set", setting, "-o", tmp_path / "m", "--no-track")
    assert result.exit_code == 3, result.stderr
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_negative_seed_is_a_config_error(world: dict[str, Path], tmp_path: Path) -> None:
    """An option value out of range is a config error (exit 3), on the command line as from Python."""
    result = run_cli("split", world["root"] / "a", "-o", tmp_path / "s", "--seed", "-1", "--no-track")
    assert result.exit_code == 3
    assert "--seed: Input should be greater than or equal to 0" in result.stderr


def test_gate_on_a_metric_not_computed_is_a_usage_error(world: dict[str, Path]) -> None:
    typo = run_cli("evaluate", world["model"], "--min", "foo@10=0.1", "--no-track")
    assert typo.exit_code == 2, typo.stderr
    assert "computes no 'foo@10'" in typo.stderr
    other_k = run_cli("evaluate", world["model"], "--k", "10", "--min", "ndcg@20=0.1", "--no-track")
    assert other_k.exit_code == 2
    beyond_ok = run_cli("evaluate", world["model"], "--metrics", "ndcg", "--min", "coverage@10=0.0001", "--no-track")
    assert beyond_ok.exit_code == 0, beyond_ok.stderr


def test_novelty_is_not_negative_when_evaluated_users_are_few() -> None:
    # 1,000 training users made item 0 popular (900 of them); 3 users are evaluated.
    popularity = np.array([900.0, 10.0, 0.0])
    recs = np.array([[0, 1], [0, 2], [0, 1]])
    with_train_users = beyond.summary(recs, popularity=popularity, n_items=3, n_users=1000)["novelty@2"]
    p = (popularity + 1) / 1001
    expected = np.mean(-np.log2(p[recs.ravel()]))
    assert with_train_users == pytest.approx(expected)
    assert with_train_users > 0


def test_evaluate_reports_novelty_from_training_users(world: dict[str, Path]) -> None:
    result = run_cli("evaluate", world["model"], "--metrics", "ndcg", "--json", "--no-track")
    assert json.loads(result.stdout)["novelty@10"] > 0


def test_readme_outside_lists_example_runs_with_default_metrics(tmp_path: Path) -> None:
    recs = tmp_path / "recs.csv"
    truth = tmp_path / "test.csv"
    recs.write_text("user_id,item_id,rank\na,x,1\na,y,2\nb,z,1\n")
    truth.write_text("user_id,item_id\na,y\nb,q\n")
    args = ["evaluate", "--recommendations", recs, "--truth", truth, "--k", "5,10", "--json", "--no-track"]
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    flat = json.loads(result.stdout)
    assert "auc" not in flat and flat["hit_rate@5"] == pytest.approx(0.5)


def test_json_output_never_holds_nan(tmp_path: Path) -> None:
    from persotool.kernels.storage import finite_json

    cleaned = finite_json({"a": math.nan, "b": [1.0, math.inf], "c": {"d": 2.0}})
    assert cleaned["a"] is None and cleaned["b"] == [1.0, None] and cleaned["c"] == {"d": 2.0}
    assert set(cleaned["null_because"]) == {"a", "b[1]"}
    json.loads(json.dumps(cleaned, allow_nan=False))


def test_temporal_split_says_how_many_test_users_lack_history(world: dict[str, Path], tmp_path: Path) -> None:
    base = ["split", world["root"] / "a", "--strategy", "temporal", "--cutoff", "0.8", "--no-track", "--json"]
    everyone = run_cli(*base, "-o", tmp_path / "all")
    assert everyone.exit_code == 0, everyone.stderr
    counts = json.loads(everyone.stdout)
    cold = counts["test_users_without_history"]
    assert 0 < cold < counts["test_users"]
    assert f"{cold:,} of {counts['test_users']:,} test users" in everyone.stderr
    seen = run_cli(*base, "-o", tmp_path / "seen", "--test-users", "seen")
    assert seen.exit_code == 0, seen.stderr
    kept = json.loads(seen.stdout)
    assert kept["test_users"] == counts["test_users"] - cold
    assert kept["leakage"]["test"]["cold_start_users"] == 0
    manifest = json.loads((tmp_path / "seen" / "manifest.json").read_text())
    assert manifest["config"]["test_users"] == "seen"


def test_small_segments_are_pooled_and_get_no_interval() -> None:
    per_user = pl.DataFrame({"user_idx": list(range(60)), "ndcg@10": [float(i % 3 == 0) for i in range(60)]})
    labels = pl.DataFrame({"user_idx": list(range(60)), "segment": ["big"] * 50 + ["x"] * 3 + ["y"] * 2 + ["z"] * 5})
    table = segment_table(per_user, labels, ["ndcg@10"], min_users=20)
    rows = {row["segment"]: row for row in table.iter_rows(named=True)}
    assert set(rows) == {"big", OTHER}
    assert rows[OTHER]["users"] == 10 and rows[OTHER]["ci_low"] is None
    assert "3 segments of fewer than 20 users each, pooled" in rows[OTHER]["note"]
    assert rows["big"]["ci_low"] < rows["big"]["mean"] < rows["big"]["ci_high"]
    single = segment_table(per_user, labels, ["ndcg@10"], min_users=3)
    # y alone is below 3 users: a pool of one segment keeps its name, without an interval
    assert {row["segment"]: row["ci_low"] is None for row in single.iter_rows(named=True)} == {
        "big": False,
        "x": False,
        "y": True,
        "z": False,
    }
