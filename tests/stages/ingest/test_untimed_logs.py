"""Logs without event times (Million Song Dataset triplets `user<TAB>song<TAB>count`, rating dumps
such as Book-Crossing's): they ingest with a warning naming what needs times; random and user-random
splits, training and evaluation work on them; whatever needs times refuses with one line, before
writing anything."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import run_cli

WARNING = "this log has no timestamps"


@pytest.fixture(scope="module")
def triplets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MSD-style taste profile: no header, tabs, play counts; 120 users x 12 songs each."""
    rng = random.Random(7)
    root = tmp_path_factory.mktemp("msd")
    lines = []
    for user in range(120):
        for song in rng.sample(range(200), 12):
            user_id = f"b80344d063b5ccb3212f76538f3d9e43d87dca9e{user:03d}"
            lines.append(f"{user_id}\tSOAKIMP12A8C130995{song:03d}\t{rng.randint(1, 30)}")
    path = root / "train_triplets.txt"
    path.write_text("\n".join(lines) + "\n")
    out = root / "ds"
    result = run_cli(
        "ingest", path, "-o", out, "--no-track", "--json", "--no-header", "--delimiter", "\t",
        "--columns", "user,song,play_count", "--user-col", "user", "--item-col", "song", "--value-col", "play_count",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert WARNING in result.stderr and "random or user-random" in result.stderr
    return out


def test_triplets_ingest_with_null_times_and_one_session_per_user(triplets: Path) -> None:
    manifest = json.loads((triplets / "manifest.json").read_text())
    assert manifest["time_min"] is None and manifest["time_max"] is None
    assert manifest["counts"]["rows_kept"] == 120 * 12 and manifest["counts"]["n_sessions"] == 120
    rows = pl.read_parquet(triplets / "interactions.parquet")
    assert rows["timestamp"].null_count() == len(rows)
    assert rows["value"].sum() > 0  # the play counts were kept
    users = pl.read_parquet(triplets / "users.parquet")
    assert users["first_seen"].null_count() == len(users) == 120
    info = run_cli("datasets", "info", triplets)
    assert info.exit_code == 0 and "no timestamps" in info.stdout


@pytest.mark.parametrize("strategy", ["random", "user-random"])
def test_random_splits_train_and_evaluate(triplets: Path, tmp_path: Path, strategy: str) -> None:
    split = tmp_path / "split"
    result = run_cli("split", triplets, "-o", split, "--strategy", strategy, "--no-track", "--json")
    assert result.exit_code == 0, result.stderr
    counts = json.loads((split / "manifest.json").read_text())["counts"]
    assert counts["train_interactions"] + counts["test_interactions"] == 120 * 12
    assert 0 < counts["test_interactions"] < 120 * 12 / 2
    model = tmp_path / "model"
    result = run_cli("train", split, "-o", model, "--model", "lightfm", "--no-track", "--set", "epochs=3")
    assert result.exit_code == 0, result.stderr
    result = run_cli("evaluate", model, "-o", tmp_path / "eval", "--no-track", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["users_evaluated"] > 0


def test_rating_dump_with_quotes_and_semicolons(tmp_path: Path) -> None:
    """Book-Crossing's BX-Book-Ratings.csv layout: quoted fields, `;`, no time column."""
    path = tmp_path / "BX-Book-Ratings.csv"
    rows = ['"User-ID";"ISBN";"Book-Rating"']
    rows += [f'"{u}";"0{i:09d}";"{(u * i) % 11}"' for u in range(1, 31) for i in range(1, 9)]
    path.write_text("\n".join(rows) + "\n", encoding="latin-1")
    out = tmp_path / "ds"
    result = run_cli(
        "ingest", path, "-o", out, "--no-track", "--json",
        "--user-col", "User-ID", "--item-col", "ISBN", "--value-col", "Book-Rating",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert WARNING in result.stderr
    assert json.loads(result.stdout)["rows_kept"] == 30 * 8
    assert json.loads(result.stdout)["time_min"] is None


@pytest.mark.parametrize(
    ("command", "needs"),
    [
        (["split", "--strategy", "temporal"], "strategy temporal needs event times"),
        (["split", "--strategy", "leave-last"], "strategy leave-last needs event times"),
        (["calibrate"], "calibrate"),
        (["backtest"], "back-test"),
        (["simulate"], "simulate"),
    ],
)
def test_what_needs_times_refuses_in_one_line(triplets: Path, tmp_path: Path, command: list[str], needs: str) -> None:
    out = tmp_path / "out"
    result = run_cli(command[0], triplets, "-o", out, *command[1:], "--no-track")
    assert result.exit_code == 4, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "has no timestamps" in line and needs in line and "Traceback" not in line
    assert not out.exists()


def test_recent_popularity_window_refuses(triplets: Path, tmp_path: Path) -> None:
    split = tmp_path / "split"
    assert run_cli("split", triplets, "-o", split, "--strategy", "random", "--no-track").exit_code == 0
    out = tmp_path / "model"
    result = run_cli("train", split, "-o", out, "--model", "popular", "--set", "window_days=7", "--no-track")
    assert result.exit_code == 4 and "no timestamps" in result.stderr and "window_days" in result.stderr
    assert not out.exists()
    result = run_cli("train", split, "-o", out, "--model", "popular", "--no-track")
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_untimed_parquet_and_json_lines(tmp_path: Path, suffix: str) -> None:
    frame = pl.DataFrame({"user": ["a", "a", "b", "c"], "song": ["x", "y", "x", "z"], "plays": [3, 1, 2, 5]})
    path = tmp_path / f"plays.{suffix}"
    frame.write_parquet(path) if suffix == "parquet" else frame.write_ndjson(path)
    result = run_cli(
        "ingest", path, "-o", tmp_path / "ds", "--no-track", "--json", "--user-col", "user", "--item-col", "song",
        "--value-col", "plays",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows_kept"] == 4 and summary["time_min"] is None and WARNING in result.stderr
