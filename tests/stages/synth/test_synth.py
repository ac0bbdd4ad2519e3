"""`datasets synth`: deterministic by seed, with ground truth that matches the log it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from persotool.stages.synth.config import SynthConfig
from persotool.stages.synth.run import generate
from tests.conftest import run_cli


def test_same_seed_same_log_other_seed_other_log() -> None:
    a, _, _ = generate(SynthConfig(events=3000, seed=3))
    b, _, _ = generate(SynthConfig(events=3000, seed=3))
    c, _, _ = generate(SynthConfig(events=3000, seed=4))
    assert a.equals(b)
    assert not a.equals(c)


def test_size_long_tail_and_rhythm() -> None:
    frame, truth, meta = generate(SynthConfig(users=3000, items=2000, events=200_000, seed=1))
    assert abs(len(frame) - 200_000) / 200_000 < 0.03
    counts = frame.group_by("item_id").len()["len"].sort(descending=True).to_numpy()
    assert counts[: len(counts) // 100].sum() / counts.sum() > 0.15  # top 1% of items: a long tail
    hours = frame.select(pl.col("timestamp").str.slice(11, 2).cast(pl.Int32))["timestamp"].to_numpy()
    by_hour = np.bincount(hours, minlength=24)
    assert by_hour[20] > 3 * by_hour[3]  # evening peak, quiet night
    assert truth["user_factors"].shape == (3000, 16) and truth["item_factors"].shape == (2000, 16)
    assert meta["event_counts"]["view"] > meta["event_counts"]["click"] > meta["event_counts"]["purchase"] > 0


def test_users_follow_their_true_preferences() -> None:
    cfg = SynthConfig(users=400, items=300, events=60_000, popularity_exponent=0.0, seed=2)
    frame, truth, _ = generate(cfg)
    users = frame["user_id"].str.slice(1).cast(pl.Int64).to_numpy()
    items = frame["item_id"].str.slice(1).cast(pl.Int64).to_numpy()
    affinity = truth["user_factors"] @ truth["item_factors"].T
    chosen = affinity[users, items].mean()
    assert chosen > affinity.mean() + 0.5 * affinity.std()


def test_churn_and_returns_are_recorded() -> None:
    _, truth, _ = generate(SynthConfig(users=2000, events=20_000, churn_hazard_mean=0.05, days=120, seed=5))
    churned = truth["first_churn_day"] >= 0
    assert 0.5 < churned.mean() < 1.0
    assert truth["returns"].sum() > 0
    low = SynthConfig(users=2000, events=20_000, churn_hazard_mean=0.0, reactivation_probability=0.0, days=120)
    _, quiet, _ = generate(low)
    assert (quiet["first_churn_day"] < 0).all()


def test_cli_writes_log_truth_schema_and_manifest(tmp_path: Path) -> None:
    result = run_cli(
        "datasets", "synth", "-o", tmp_path / "s", "--events", "2000", "--seed", "9", "--no-track", "--json"
    )
    assert result.exit_code == 0, result.stderr
    names = {p.name for p in (tmp_path / "s").iterdir()}
    assert names == {"events.csv", "ground_truth.npz", "ground_truth.json", "schema.toml", "manifest.json"}
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["kind"] == "synthetic-log" and manifest["config"]["seed"] == 9
    with np.load(tmp_path / "s" / "ground_truth.npz") as npz:
        assert set(npz.files) >= {"user_factors", "item_factors", "item_bias", "visit_propensity", "churn_hazard"}
    bad = run_cli("datasets", "synth", "-o", tmp_path / "t", "--users", "3", "--no-track")
    assert bad.exit_code == 3 and "users" in bad.stderr and not (tmp_path / "t").exists()
