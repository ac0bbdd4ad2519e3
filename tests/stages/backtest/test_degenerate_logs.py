"""Degenerate logs get a verdict that says so or a refusal in the user's own words, never a crash
or a meaningless number: a log where every user returns, a log shorter than its cutoff needs."""

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

import persotool as pt
from tests.conftest import run_cli


def _log(path: Path, users: int, days: int, every: int = 1, start: int = 1_700_000_000) -> Path:
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["u", "i", "t"])
        for u in range(users):
            for d in range(0, days, every):
                out.writerow([f"u{u}", f"i{(u + d) % 60}", start + d * 86_400 + u * 60])
    return path


def _dataset(tmp_path: Path, **log) -> Path:
    raw = _log(tmp_path / "log.csv", **log)
    return pt.ingest(raw, out=tmp_path / "ds", user_col="u", item_col="i", time_col="t").path


def test_a_log_where_every_user_returns_gets_undefined_not_a_crash(tmp_path: Path) -> None:
    """20 users active every day: everyone returns, so who-returns scores cannot be computed."""
    ds = _dataset(tmp_path, users=20, days=40)
    made = run_cli("backtest", ds, "--cutoff", "0.8", "-o", tmp_path / "bt", "--no-track", "--json")
    assert made.exit_code == 0, made.stderr
    result = pt.Backtest(tmp_path / "bt")
    auc = next(q for q in result.quantities if q["quantity"] == "AUC of returning")
    assert auc["verdict"] == "undefined" and "every known user returned (20)" in auc["note"]
    assert result.manifest.verdict["counts"]["undefined"] >= 1
    # every naive forecast a verdict may compare against is on the table, and per-user verdicts name theirs
    shown = result.to_markdown()
    assert "| nobody |" in shown and "vs persistence" in shown


def test_a_cutoff_too_early_is_refused_in_the_options_own_name(tmp_path: Path) -> None:
    ds = _dataset(tmp_path, users=30, days=2, start=int(datetime(2024, 1, 1, 4, 54, tzinfo=UTC).timestamp()))
    made = run_cli("backtest", ds, "--cutoff", "0.5", "-o", tmp_path / "bt", "--no-track")
    assert made.exit_code == 3
    assert "--cutoff '0.5' leaves fewer than 2 days" in made.stderr and "until" not in made.stderr
    assert "runs from 2024-01-01 04:54" in made.stderr  # the log's real first time, not midnight


def test_an_experiment_nobody_enters_is_refused(tmp_path: Path) -> None:
    ds = _dataset(tmp_path, users=20, days=40)
    config = tmp_path / "sim.toml"
    config.write_text(
        'name = "nobody"\ndays = 2\npre_days = 0\n[world]\npopulation = 3\nstart = "cutoff"\n'
        "[behaviour]\nchurn_hazard = 0.999\nreactivation = 0.0\n"
        '[[arms]]\nname = "popular"\npolicy = "popular"\nshare = 0.5\n'
        '[[arms]]\nname = "random"\npolicy = "random"\nshare = 0.5\n'
    )
    made = run_cli("simulate", ds, "--config", config, "-o", tmp_path / "sim", "--no-track")
    assert made.exit_code == 4, made.stderr
    assert "enrolled too few users to analyse" in made.stderr and made.stderr.count("\n") == 1
    assert not (tmp_path / "sim").exists()


@pytest.mark.parametrize("cutoff", ["1.5", "next tuesday"])
def test_a_cutoff_that_is_not_one_says_so(tmp_path: Path, cutoff: str) -> None:
    ds = _dataset(tmp_path, users=20, days=10)
    made = run_cli("backtest", ds, "--cutoff", cutoff, "-o", tmp_path / "bt", "--no-track")
    assert made.exit_code == 3 and "--cutoff" in made.stderr
