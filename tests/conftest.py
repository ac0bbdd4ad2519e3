"""Shared fixtures: a scratch working directory holding MLflow's default local store (one per test
session, since each new sqlite store runs slow migrations), and a CLI runner."""

from __future__ import annotations

import os

# Before numpy loads OpenBLAS: implicit warns and slows down with a BLAS thread pool.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from persotool.cli import app

REPO = Path(__file__).resolve().parents[1]
MOVIELENS = REPO / "datasets" / "movielens-small"
DATA = Path(__file__).parent / "stages" / "ingest"  # the good and bad corpora of logs


@pytest.fixture(scope="session", autouse=True)
def scratch_cwd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run every test from a scratch directory so MLflow's default store (./mlflow.db, ./mlruns)
    lands there, as it would for a user, and never in the repository."""
    home = tmp_path_factory.mktemp("cwd")
    old = Path.cwd()
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)
    os.chdir(home)
    yield home
    os.chdir(old)


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None


def run_cli(*args: str, env: dict[str, str] | None = None) -> Outcome:
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return Outcome(result.exit_code, result.stdout, result.stderr, exc)


@pytest.fixture
def cli():
    return run_cli
