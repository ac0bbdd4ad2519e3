"""Outputs stay consistent: one writer per output, inputs never overwritten, interrupted and killed
runs leave nothing behind (or nothing the next run does not clean), permissions follow the umask."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import MOVIELENS, run_cli

PERSOTOOL = Path(sys.executable).parent / "persotool"


def _spawn(*args, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [str(PERSOTOOL), *map(str, args)], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_writers_of_one_output_never_both_succeed(tmp_path: Path) -> None:
    args = ("ingest", MOVIELENS / "ratings.csv", "--preset", "movielens", "-o", tmp_path / "ds", "--no-track")
    first, second = _spawn(*args, cwd=tmp_path), _spawn(*args, cwd=tmp_path)
    outcomes = sorted([(p.wait(timeout=120), p.stderr.read()) for p in (first, second)])
    assert [code for code, _ in outcomes] == [0, 7], outcomes
    loser = outcomes[1][1]
    reasons = ("another persotool command is writing", "already exists", "was created by another command")
    assert any(reason in loser for reason in reasons), loser
    assert (tmp_path / "ds" / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.parametrize("where", ["same", "above", "inside", "cwd"])
def test_output_over_an_input_is_refused_even_with_force(tmp_path: Path, where: str, monkeypatch) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    ratings = logs / "ratings.csv"
    ratings.write_bytes((MOVIELENS / "ratings.csv").read_bytes()[:5000].rsplit(b"\n", 1)[0] + b"\n")
    monkeypatch.chdir(logs)
    out = {"same": ratings, "above": logs, "inside": logs / "ds", "cwd": Path(".")}[where]
    source = logs if where == "inside" else ratings
    result = run_cli("ingest", source, "--preset", "movielens", "-o", out, "--force", "--no-track")
    assert result.exit_code == 7, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert ratings.is_file() and sorted(p.name for p in logs.iterdir()) == ["ratings.csv"]


def test_split_and_train_outputs_over_their_inputs_are_refused(tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    assert (
        run_cli("ingest", MOVIELENS / "ratings.csv", "--preset", "movielens", "-o", dataset, "--no-track").exit_code
        == 0
    )
    over = run_cli("split", dataset, "-o", dataset, "--force", "--no-track")
    assert over.exit_code == 7 and "would replace the input" in over.stderr
    assert (dataset / "interactions.parquet").is_file()


def test_stale_temporary_directories_are_removed_by_the_next_run(tmp_path: Path) -> None:
    # What `kill -9` leaves: a temporary directory and the old copy of a replaced output.
    stale = [tmp_path / ".ds.tmp-999999-deadbeef", tmp_path / ".ds.old-999999"]
    for path in stale:
        (path / "sub").mkdir(parents=True)
        (path / "sub" / "big.bin").write_bytes(b"x" * 1000)
    other = tmp_path / ".other.tmp-1-aa"  # another output's: not ours to touch
    other.mkdir()
    result = run_cli("ingest", MOVIELENS / "ratings.csv", "--preset", "movielens", "-o", tmp_path / "ds", "--no-track")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-1-aa", "ds"]


def test_sigterm_unwinds_like_ctrl_c(tmp_path: Path) -> None:
    config = "simulation"
    dataset = tmp_path / "ds"
    assert (
        run_cli("ingest", MOVIELENS / "ratings.csv", "--preset", "movielens", "-o", dataset, "--no-track").exit_code
        == 0
    )
    process = _spawn("simulate", dataset, "--config", config, "-o", tmp_path / "sim", "--no-track", cwd=tmp_path)
    time.sleep(4)  # well into the work: the environment loads in about two seconds
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=60)
    assert code == 130, process.stderr.read()
    assert "interrupted" in process.stderr.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_output_directories_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        out = tmp_path / "ds"
        assert (
            run_cli("ingest", MOVIELENS / "ratings.csv", "--preset", "movielens", "-o", out, "--no-track").exit_code
            == 0
        )
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755
