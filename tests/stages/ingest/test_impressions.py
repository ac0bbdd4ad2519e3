"""Impression logs (`columns.reward` given): every row kept in log order, duplicates included, no
user id needed, items coded in ascending raw-id order (numeric ids numerically), positions as
0-based ranks, context columns kept (numeric or text), bad rows rejected with a reason, and the
shipped `obd` schema reading the Open Bandit Dataset's layout. Interaction-log commands refuse
the result in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.conftest import run_cli


def _obd_csv(path: Path, n: int = 300, seed: int = 0, bad: dict[int, dict] | None = None) -> pl.DataFrame:
    """A log in the OBD layout (an unnamed index column, ISO timestamps, positions 1-3)."""
    rng = np.random.default_rng(seed)
    items = np.array([2, 10, 7, 33, 100])
    frame = pl.DataFrame(
        {
            "": np.arange(n),
            "timestamp": [f"2019-11-24 00:{i // 60 % 60:02d}:{i % 60:02d}.000000+00:00" for i in range(n)],
            "item_id": rng.choice(items, n).astype(str),
            "position": rng.integers(1, 4, n).astype(str),
            "click": (rng.random(n) < 0.2).astype(int).astype(str),
            "propensity_score": np.full(n, "0.2"),
            "user_feature_0": rng.choice(["a1f", "b2e", "c3d"], n),
            "user-item_affinity_0": rng.normal(size=n).round(4).astype(str),
            "user-item_affinity_1": rng.normal(size=n).round(4).astype(str),
        }
    )
    for row, values in (bad or {}).items():
        for column, value in values.items():
            frame[row, column] = value
    frame.write_csv(path)
    return frame


def test_the_obd_layout_ingests_every_impression_in_order(tmp_path: Path) -> None:
    raw = _obd_csv(tmp_path / "all.csv")
    done = run_cli("ingest", tmp_path / "all.csv", "--schema", "obd", "-o", tmp_path / "ds", "--no-track", "--json")
    assert done.exit_code == 0, done.stderr
    table = pl.read_parquet(tmp_path / "ds" / "impressions.parquet")
    assert table["row"].to_list() == list(range(len(raw)))
    assert table["item_id"].to_list() == raw["item_id"].to_list()
    # items in ascending numeric order: 2 < 7 < 10 < 33 < 100 (not "10" < "100" < "2")
    order = {"2": 0, "7": 1, "10": 2, "33": 3, "100": 4}
    assert table["item_idx"].to_list() == [order[i] for i in raw["item_id"].to_list()]
    assert table["position"].to_list() == [int(p) - 1 for p in raw["position"].to_list()]
    assert table["reward"].to_list() == [float(c) for c in raw["click"].to_list()]
    assert table.schema["user_feature_0"] == pl.String and table.schema["user-item_affinity_0"] == pl.Float64
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["layout"] == "impressions" and c["rows_kept"] == len(raw) and c["n_items"] == 5 and c["n_positions"] == 3
    assert c["n_users"] == 0 and c["has_propensity"] and c["binary_reward"]
    assert manifest["context"] == ["user_feature_0", "user-item_affinity_0", "user-item_affinity_1"]
    assert manifest["positions"] == {"1": 0, "2": 1, "3": 2}
    # every timestamp differs: each impression is its own slate
    assert c["n_slates"] == len(raw) and c["slates_from"] == "identical timestamp and context"


def test_identical_impressions_are_two_impressions(tmp_path: Path) -> None:
    raw = _obd_csv(tmp_path / "a.csv", n=20)
    doubled = pl.concat([raw, raw.head(5)])
    doubled.write_csv(tmp_path / "b.csv")
    done = run_cli("ingest", tmp_path / "b.csv", "--schema", "obd", "-o", tmp_path / "ds", "--no-track")
    assert done.exit_code == 0, done.stderr
    table = pl.read_parquet(tmp_path / "ds" / "impressions.parquet")
    assert len(table) == 25
    # the repeated rows share timestamp and context: each pair is one slate
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["counts"]["n_slates"] == 20


def test_bad_rows_are_rejected_with_their_reason(tmp_path: Path) -> None:
    bad = {3: {"propensity_score": "0"}, 5: {"position": "1.5"}, 8: {"click": "yes"}, 9: {"item_id": ""}}
    _obd_csv(tmp_path / "all.csv", bad=bad)
    done = run_cli("ingest", tmp_path / "all.csv", "--schema", "obd", "-o", tmp_path / "ds", "--no-track")
    assert done.exit_code == 0, done.stderr
    rejects = pl.read_parquet(tmp_path / "ds" / "rejects.parquet").sort("line")
    assert rejects["line"].to_list() == [5, 7, 10, 11]  # header is line 1, row 0 line 2
    assert rejects["reason"].to_list() == ["propensity_invalid", "position_invalid", "reward_invalid", "item_missing"]
    assert len(pl.read_parquet(tmp_path / "ds" / "impressions.parquet")) == 296
    # too many rejects: one line, nothing written
    many = {i: {"propensity_score": "1.7"} for i in range(0, 300, 5)}
    _obd_csv(tmp_path / "worse.csv", bad=many)
    failed = run_cli("ingest", tmp_path / "worse.csv", "--schema", "obd", "-o", tmp_path / "ds2", "--no-track")
    assert failed.exit_code == 4 and "propensity is not a probability" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1 and not (tmp_path / "ds2").exists()


def test_flags_a_slate_column_and_no_propensity(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "uid": ["u1", "u1", "u2", "u2"],
            "sku": ["b", "a", "a", "c"],
            "slot": ["0", "1", "0", "1"],
            "bought": ["0", "1", "2.5", "0"],
            "impression": ["s1", "s1", "s2", "s2"],
        }
    )
    frame.write_csv(tmp_path / "log.csv")
    done = run_cli(
        "ingest",
        tmp_path / "log.csv",
        "--user-col",
        "uid",
        "--item-col",
        "sku",
        "--position-col",
        "slot",
        "--reward-col",
        "bought",
        "--slate-col",
        "impression",
        "-o",
        tmp_path / "ds",
        "--no-track",
    )
    assert done.exit_code == 0, done.stderr
    table = pl.read_parquet(tmp_path / "ds" / "impressions.parquet")
    assert table["item_idx"].to_list() == [1, 0, 0, 2] and table["slate"].to_list() == [0, 0, 1, 1]
    assert "propensity" not in table.columns and table["user_id"].to_list() == ["u1", "u1", "u2", "u2"]
    c = json.loads((tmp_path / "ds" / "manifest.json").read_text())["counts"]
    assert not c["binary_reward"] and not c["has_propensity"] and c["n_users"] == 2 and c["n_slates"] == 2
    assert "not logged" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--item-col", "item_id", "--time-col", "timestamp"), "say which column holds the user id"),
        (("--item-col", "item_id", "--user-col", "x", "--position-col", "position"), "give its reward column"),
        (("--schema", "obd", "--context-cols", "nothing_*"), "matches no column"),
        (("--schema", "obd", "--reward-col", "clicks"), "column 'clicks' not found"),
    ],
)
def test_impression_config_errors_are_one_line(tmp_path: Path, args, message) -> None:
    _obd_csv(tmp_path / "all.csv", n=20)
    done = run_cli("ingest", tmp_path / "all.csv", *args, "-o", tmp_path / "ds", "--no-track")
    assert done.exit_code in (3, 4) and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "ds").exists()


def test_interaction_commands_refuse_an_impression_log(tmp_path: Path) -> None:
    _obd_csv(tmp_path / "all.csv", n=20)
    assert (
        run_cli("ingest", tmp_path / "all.csv", "--schema", "obd", "-o", tmp_path / "ds", "--no-track").exit_code == 0
    )
    for command in (
        ("split", tmp_path / "ds", "-o", tmp_path / "sp"),
        ("calibrate", tmp_path / "ds", "-o", tmp_path / "w"),
    ):
        done = run_cli(*command, "--no-track")
        assert done.exit_code == 4 and "is an impression log" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_an_impression_log_is_recorded_in_mlflow(tmp_path: Path) -> None:
    _obd_csv(tmp_path / "all.csv", n=50)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    done = run_cli("ingest", tmp_path / "all.csv", "--schema", "obd", "-o", tmp_path / "ds", "--json", env=env)
    assert done.exit_code == 0, done.stderr
    run_id = json.loads(done.stdout)["mlflow_run_id"]
    import mlflow

    run = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(run_id)
    assert run.data.metrics["rows_kept"] == 50 and run.data.metrics["n_positions"] == 3
    assert "nearly every slate is a single impression" in done.stderr or "nearly every slate" in done.stdout


def test_a_slate_as_list_columns_is_one_impression_per_entry(tmp_path: Path) -> None:
    rows = [
        {"uid": "u1", "items": [5, 3, 9], "clicks": [0, 1, 0], "p": [0.2, 0.1, 0.3], "f": 0.5},
        {"uid": "u2", "items": [3, 5], "clicks": [1, 0], "p": [0.4, 0.2], "f": -1.0},
    ]
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    done = run_cli(
        "ingest",
        tmp_path / "log.jsonl",
        "--user-col",
        "uid",
        "--item-col",
        "items",
        "--reward-col",
        "clicks",
        "--propensity-col",
        "p",
        "--context-cols",
        "f",
        "-o",
        tmp_path / "ds",
        "--no-track",
    )
    assert done.exit_code == 0, done.stderr
    table = pl.read_parquet(tmp_path / "ds" / "impressions.parquet")
    assert table["item_id"].to_list() == ["5", "3", "9", "3", "5"]
    assert table["position"].to_list() == [0, 1, 2, 0, 1] and table["slate"].to_list() == [0, 0, 0, 1, 1]
    assert table["reward"].to_list() == [0, 1, 0, 1, 0] and table["propensity"].to_list() == [0.2, 0.1, 0.3, 0.4, 0.2]
    assert table["f"].to_list() == [0.5, 0.5, 0.5, -1.0, -1.0] and table["user_id"].to_list()[3] == "u2"
    counts = json.loads((tmp_path / "ds" / "manifest.json").read_text())["counts"]
    assert counts["n_slates"] == 2 and counts["slates_from"] == "one slate per row (list columns)"

    def refused(name: str):
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        flags = ["--user-col", "uid", "--item-col", "items", "--reward-col", "clicks"]
        return run_cli("ingest", tmp_path / f"{name}.jsonl", *flags, "-o", tmp_path / name, "--no-track")

    rows[1]["clicks"] = [1]  # lists that do not line up: one line naming the row
    bad = refused("bad")
    assert bad.exit_code == 4 and "row 2" in bad.stderr and "different lengths" in bad.stderr
    for row in rows:
        row["clicks"] = 1  # one reward for a whole slate: refused, a reward belongs to a shown item
    scalar = refused("scalar")
    assert scalar.exit_code == 4 and "one reward per shown item" in scalar.stderr
