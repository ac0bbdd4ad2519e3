"""Segments in `evaluate`: a numeric users column (an age, read from an attribute file as text) is
cut into quantile bins or at given edges, not treated as hundreds of categories pooled away; small
segments are pooled under a name no real category has; segments are in --json."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import persotool as pt
from persotool.kernels.metrics.segments import OTHER, binned
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("segments")
    log = pt.synth(out=root / "synth", users=400, items=150, events=12_000, days=30, seed=3)
    ids = sorted(set(pl.read_csv(log.log)["user_id"].to_list()))
    rng = random.Random(1)
    kept = ids[:-7]  # seven users have no attribute row
    pl.DataFrame(
        {
            "user_id": kept,
            "age": [str(rng.randint(16, 70)) for _ in kept],
            "occupation": [rng.choice(["other", "student", "engineer", "doctor"]) for _ in kept],
        }
    ).write_csv(root / "users.csv")
    ds = pt.ingest(
        log.log,
        out=root / "ds",
        schema=log.schema,
        users=root / "users.csv",
        user_key="user_id",
        user_features=["age", "occupation"],
    )
    assert "user_id_right" not in pl.read_parquet(ds.path / "users.parquet").columns
    assert ds.counts["users_without_attributes"] == 7
    sp = pt.split(ds, out=root / "split", strategy="leave-last", leave_last=3)
    return pt.train(sp, out=root / "ease", model="ease", params={"l2": 100}).path


def test_a_numeric_column_is_binned_by_quantiles(model: Path) -> None:
    done = run_cli("evaluate", model, "--segment-by", "age", "--json", "--no-track")
    assert done.exit_code == 0, done.stderr
    payload = json.loads(done.stdout)
    segments = [row for row in payload["segments"] if row["metric"] == "ndcg@10"]
    labels = [row["segment"] for row in segments]
    assert payload["segment_by"] == "age"
    assert len([label for label in labels if " to " in label]) == 4, labels  # four quartile bins
    users = [row["users"] for row in segments if " to " in row["segment"]]
    assert max(users) - min(users) <= 0.25 * max(users)  # quartiles hold about as many users each
    assert all(row["ci_low"] is not None for row in segments if " to " in row["segment"])


def test_explicit_edges_and_a_category_named_other(model: Path) -> None:
    edges = run_cli(
        "evaluate",
        model,
        "--segment-by",
        "age",
        "--segment-edges",
        "18,30,50",
        "--min-segment-users",
        "1",
        "--json",
        "--no-track",
    )
    assert edges.exit_code == 0, edges.stderr
    labels = {row["segment"] for row in json.loads(edges.stdout)["segments"]}
    assert labels >= {"<18", "18 to <30", "30 to <50", "50+"}
    by_job = run_cli(
        "evaluate", model, "--segment-by", "occupation", "--min-segment-users", "1", "--json", "--no-track"
    )
    assert by_job.exit_code == 0, by_job.stderr
    labels = {row["segment"] for row in json.loads(by_job.stdout)["segments"]}
    assert "other" in labels and OTHER not in labels  # the real category keeps its name
    wrong = run_cli("evaluate", model, "--segment-by", "occupation", "--segment-edges", "1,2", "--no-track")
    assert wrong.exit_code == 3 and "segment edges need a numeric column" in wrong.stderr


def test_bins_by_hand() -> None:
    values = pl.Series([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, None, float("nan")])
    assert binned(values, 4, None) == [
        "1 to <2.75",
        "1 to <2.75",
        "2.75 to <4.5",
        "2.75 to <4.5",
        "4.5 to <6.25",
        "4.5 to <6.25",
        "6.25 to 8",
        "6.25 to 8",
        "(missing)",
        "(missing)",
    ]
    assert binned(values, 4, [3, 6]) == [
        "<3",
        "<3",
        "3 to <6",
        "3 to <6",
        "3 to <6",
        "6+",
        "6+",
        "6+",
        "(missing)",
        "(missing)",
    ]
    assert binned(pl.Series([5.0] * 4), 4, None) == ["5"] * 4  # one value: one bin
    assert np.array_equal(np.array(binned(pl.Series([0.5, 0.25]), 2, None)), ["0.375 to 0.5", "0.25 to <0.375"])


def test_the_accuracy_gap_between_user_groups() -> None:
    from persotool.kernels.metrics.segments import accuracy_gap

    per_user = pl.DataFrame({"user_idx": list(range(90)), "ndcg@10": [0.1] * 30 + [0.3] * 30 + [0.2] * 29 + [0.5]})
    labels = pl.DataFrame({"user_idx": list(range(90)), "segment": ["a"] * 30 + ["b"] * 30 + ["c"] * 30})
    gap = accuracy_gap(per_user, labels, "ndcg@10", min_users=20)
    assert (gap["best"], gap["worst"], gap["segments"]) == ("b", "a", 3)
    assert gap["gap"] == pytest.approx(0.2) and gap["ci_low"] == pytest.approx(0.2)  # constant within segments
    assert accuracy_gap(per_user, labels, "ndcg@10", min_users=31) is None  # no segment large enough


def test_the_accuracy_gap_is_in_json(model: Path) -> None:
    done = run_cli("evaluate", model, "--k", "10", "--json", "--no-track")
    assert done.exit_code == 0, done.stderr
    gaps = {g["metric"]: g for g in json.loads(done.stdout)["accuracy_gap"]}
    ndcg = gaps["ndcg@10"]
    assert ndcg["gap"] == pytest.approx(ndcg["best_mean"] - ndcg["worst_mean"]) and ndcg["gap"] >= 0
    assert ndcg["ci_low"] <= ndcg["gap"] <= ndcg["ci_high"]
