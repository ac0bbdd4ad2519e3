"""`tune` when things go wrong: a storage it cannot open, a journal cut short or corrupt, a space
or metric no trial could use, a study whose every trial fails. Each is one line with its exit
status, and nothing is left behind or lost."""

from pathlib import Path

import polars as pl
import pytest

import persotool as pt
from persotool.kernels.config import CONFIGS
from tests.conftest import run_cli

POPULAR = CONFIGS / "spaces" / "popular.toml"


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tune-errors")
    log = pt.synth(out=root / "synth", users=150, items=60, events=3_000, days=30, seed=5)
    ds = pt.ingest(log.log, out=root / "ds", schema=log.schema)
    return pt.split(ds, out=root / "split", strategy="leave-last", leave_last=2, valid=True).path


def _tune(split: Path, out: Path, *more):
    return run_cli("tune", split, "--space", POPULAR, "--trials", "2", "-o", out, "--no-track", *more)


@pytest.mark.parametrize(
    ("storage", "reason"),
    [
        ("postgresql://tuner:secret@127.0.0.1:1/optuna", "Connection refused"),
        ("postgresql://tuner@nohost.invalid/optuna", "failed to resolve host"),
        ("sqlite:////nonexistent/dir/study.db", "No such file or directory"),
        ("garbage", "file is not a database"),
        ("directory", "it is a directory"),
        ("/proc/persotool.journal", "No such file or directory"),
    ],
)
def test_a_storage_it_cannot_open_is_one_line_and_leaves_nothing(split, tmp_path, storage, reason) -> None:
    if storage == "garbage":
        (tmp_path / "garbage.db").write_text("not a database\n")
        storage = f"sqlite:///{tmp_path / 'garbage.db'}"
    elif storage == "directory":
        (tmp_path / "journal").mkdir()
        storage = str(tmp_path / "journal")
    outcome = _tune(split, tmp_path / "study", "--storage", storage)
    assert outcome.exit_code == 3, outcome.stderr
    assert (
        outcome.stderr.count("\n") == 1
        and reason in outcome.stderr
        and "cannot open the study's storage" in outcome.stderr
    )
    assert "secret" not in outcome.stderr  # passwords never printed
    assert not (tmp_path / "study").exists()


def test_a_journal_cut_short_is_set_aside_and_the_study_goes_on(split, tmp_path) -> None:
    """Run as a separate process, as after a crash: the trial whose end was cut off belonged to a
    worker that is gone, so it is run again."""
    import subprocess
    import sys

    out = tmp_path / "study"
    first = [str(Path(sys.executable).parent / "persotool"), "tune", str(split), "--space", str(POPULAR)]
    first += ["--trials", "2", "-o", str(out), "--no-track"]
    assert subprocess.run(first, capture_output=True, check=False).returncode == 0
    journal = out / "study.journal"
    whole = journal.read_bytes()
    journal.write_bytes(whole[:-30])  # the last entry cut short, as a crash leaves it
    torn = whole[whole[:-30].rfind(b"\n") + 1 : -30]
    outcome = run_cli("tune", split, "--space", POPULAR, "--trials", "4", "-o", out, "--no-track")
    assert outcome.exit_code == 0, outcome.stderr
    assert "line cut short" in outcome.stderr and "study.journal.torn-1" in outcome.stderr
    assert (out / "study.journal.torn-1").read_bytes() == torn  # set aside, not deleted
    trials = pl.read_parquet(out / "trials.parquet")
    assert trials.filter(pl.col("state") == "complete").height == 4
    assert any("line cut short" in note for note in pt.Tuning(out).notes())


def test_a_corrupt_journal_is_refused_naming_the_line(split, tmp_path) -> None:
    out = tmp_path / "study"
    assert _tune(split, out).exit_code == 0
    journal = out / "study.journal"
    lines = journal.read_bytes().split(b"\n")
    lines[2] = lines[2][:12]
    journal.write_bytes(b"\n".join(lines))
    before = journal.read_bytes()
    outcome = run_cli("tune", split, "--space", POPULAR, "--trials", "4", "-o", out, "--no-track")
    assert outcome.exit_code == 4, outcome.stderr
    assert f"{journal}:3: is not a journal entry" in outcome.stderr
    assert journal.read_bytes() == before  # untouched


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            'model = "ease"\n[params.l2]\ntype = "float"\nlow = -5\nhigh = 10\n',
            "params.l2: -5.0 is outside what ease accepts",
        ),
        ('model = "ease"\n[params.l2]\ntype = "float"\nlow = 1\nhigh = inf\n', "must be finite numbers"),
        ('model = "lightfm"\n[fixed]\nepochs = 0\n[params.components]\ntype = "int"\nlow = 2\nhigh = 8\n', "epochs"),
    ],
)
def test_a_space_outside_the_models_bounds_is_refused_before_any_trial(split, tmp_path, space, message) -> None:
    path = tmp_path / "space.toml"
    path.write_text(space)
    outcome = run_cli("tune", split, "--space", path, "--trials", "2", "-o", tmp_path / "s", "--no-track")
    assert outcome.exit_code == 3 and message in outcome.stderr, outcome.stderr
    assert not (tmp_path / "s").exists()


def test_an_objective_no_trial_can_measure_is_refused(split, tmp_path) -> None:
    outcome = _tune(split, tmp_path / "s", "--metric", "foo@10")
    assert outcome.exit_code == 3 and "unknown metric 'foo@10'" in outcome.stderr
    assert not (tmp_path / "s").exists()


def test_a_study_whose_every_trial_fails_says_so_and_exits_non_zero(split, tmp_path) -> None:
    path = tmp_path / "diverge.toml"  # BPR's factors blow up to NaN at this step size
    path.write_text(
        'model = "bpr"\n[fixed]\niterations = 2\nlearning_rate = 1e30\n'
        '[params.factors]\ntype = "int"\nlow = 2\nhigh = 4\n'
    )
    outcome = run_cli("tune", split, "--space", path, "--trials", "2", "-o", tmp_path / "s", "--no-track")
    assert outcome.exit_code == 5, outcome.stderr
    assert "no trial completed (2 fail)" in outcome.stderr and "NaN" in outcome.stderr
    assert not (tmp_path / "s" / "best.toml").exists()
    trials = pl.read_parquet(tmp_path / "s" / "trials.parquet")
    assert trials["error"].is_not_null().all()
