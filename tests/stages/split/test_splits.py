"""Splits: each strategy on a hand-made dataset, k-core, relevance, leakage report, determinism."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from persotool.errors import ConfigError, DataError
from persotool.stages.ingest.config import IngestConfig
from persotool.stages.ingest.run import ingest
from persotool.stages.split.config import SplitConfig
from persotool.stages.split.run import k_core, run


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """6 users x 10 days: user u rates item (u + d) % 8 on day d with value d % 5 + 1."""
    root = tmp_path_factory.mktemp("ds")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    lines = ["u,i,t,v"]
    for u in range(6):
        for d in range(10):
            lines.append(f"u{u},i{(u + d) % 8},{(start + timedelta(days=d, hours=u)).isoformat()},{d % 5 + 1}")
    (root / "log.csv").write_text("\n".join(lines) + "\n")
    spec = IngestConfig.model_validate({"columns": {"user": "u", "item": "i", "time": "t", "value": "v"}})
    ingest(spec, [str(root / "log.csv")], root / "ds")
    return root / "ds"


def split(dataset, out, cfg: SplitConfig) -> dict:
    """The split stage's manifest, as a dict."""
    return run(dataset, cfg, out).manifest.to_dict()


def test_temporal_cutoff_by_fraction_has_no_leakage(dataset: Path, tmp_path: Path) -> None:
    m = split(dataset, tmp_path / "s", SplitConfig(strategy="temporal", cutoff="0.75"))
    train = pl.read_parquet(tmp_path / "s" / "train.parquet")
    test = pl.read_parquet(tmp_path / "s" / "test.parquet")
    assert train["timestamp"].max() < test["timestamp"].min()
    assert m["leakage"]["test"]["interactions_before_users_last_train"] == 0
    assert m["counts"]["train_interactions"] + m["counts"]["test_interactions"] == 60
    assert m["kind"] == "split" and m["n_users"] == 6 and m["n_items"] == 8


def test_temporal_cutoff_by_date(dataset: Path, tmp_path: Path) -> None:
    m = split(dataset, tmp_path / "s", SplitConfig(strategy="temporal", cutoff="2024-01-09"))
    # days 8 and 9 (and no others) are on or after the cutoff
    assert m["counts"]["test_interactions"] == 12


def test_leave_last_holds_out_each_users_newest(dataset: Path, tmp_path: Path) -> None:
    m = split(dataset, tmp_path / "s", SplitConfig(strategy="leave-last", leave_last=2, valid=True))
    test = pl.read_parquet(tmp_path / "s" / "test.parquet")
    valid = pl.read_parquet(tmp_path / "s" / "valid.parquet")
    assert test.group_by("user_idx").len()["len"].to_list() == [2] * 6 or m["counts"]["test_repeats"] > 0
    assert (test["timestamp"].dt.day() >= 9).all()
    assert (valid["timestamp"].dt.day() >= 7).all() and (valid["timestamp"].dt.day() <= 8).all()
    assert m["leakage"]["test"]["cold_start_users"] == 0


def test_random_strategies_are_deterministic_by_seed(dataset: Path, tmp_path: Path) -> None:
    for strategy in ("random", "user-random"):
        a = split(dataset, tmp_path / f"{strategy}-a", SplitConfig(strategy=strategy, seed=1))
        b = split(dataset, tmp_path / f"{strategy}-b", SplitConfig(strategy=strategy, seed=1))
        c = split(dataset, tmp_path / f"{strategy}-c", SplitConfig(strategy=strategy, seed=2))
        assert a["split_digest"] == b["split_digest"] != c["split_digest"]
        # random splits leak time: some test interactions predate the user's last training one
        assert a["leakage"]["test"]["interactions_before_users_last_train"] > 0


def test_user_random_fraction_per_user(dataset: Path, tmp_path: Path) -> None:
    split(dataset, tmp_path / "s", SplitConfig(strategy="user-random", test_fraction=0.3, keep_repeats=True))
    raw_test = pl.read_parquet(tmp_path / "s" / "test.parquet")
    assert raw_test.group_by("user_idx").agg(pl.col("item_idx").n_unique())["item_idx"].max() <= 3


def test_relevance_threshold_marks_low_values(dataset: Path, tmp_path: Path) -> None:
    m = split(
        dataset,
        tmp_path / "s",
        SplitConfig(strategy="temporal", cutoff="0.75", relevance_threshold=4, keep_repeats=True),
    )
    test = pl.read_parquet(tmp_path / "s" / "test.parquet")
    assert test.filter(pl.col("relevant"))["value"].min() >= 4
    assert test.filter(~pl.col("relevant"))["value"].max() < 4
    assert m["counts"]["test_relevant_pairs"] == int(test["relevant"].sum()) < len(test)


def test_k_core_is_iterative() -> None:
    frame = pl.DataFrame({"user_idx": [0, 0, 1, 1, 2], "item_idx": [0, 1, 0, 1, 2]})
    kept, rounds = k_core(frame, 2, 2)
    assert sorted(kept.rows()) == [(0, 0), (0, 1), (1, 0), (1, 1)] and rounds >= 1
    # user 2 keeps item 2 when only items need two interactions... but then user 2 has none left
    kept, _ = k_core(frame, 1, 2)
    assert 2 not in kept["user_idx"].to_list()


def test_bad_cutoffs_are_config_errors(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fraction"):
        split(dataset, tmp_path / "s", SplitConfig(cutoff="1.5"))
    with pytest.raises(ConfigError, match="ISO"):
        split(dataset, tmp_path / "s", SplitConfig(cutoff="next tuesday"))
    with pytest.raises(DataError, match="k-core"):
        split(dataset, tmp_path / "s", SplitConfig(min_user_interactions=1000))
    assert not (tmp_path / "s").exists()
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["kind"] == "dataset"


def test_a_fractional_cutoff_may_be_a_number(dataset: Path, tmp_path: Path) -> None:
    """pt.split(..., cutoff=0.8) as pt.backtest(..., cutoff=0.8) takes it: the same split as "0.8"."""
    import persotool as pt

    number = pt.split(dataset, out=tmp_path / "a", strategy="temporal", cutoff=0.75)
    text = pt.split(dataset, out=tmp_path / "b", strategy="temporal", cutoff="0.75")
    assert number.digest == text.digest and number.manifest.config["cutoff"] == "0.75"
