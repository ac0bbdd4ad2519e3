"""Fixtures the stages' tests share: the bundled MovieLens log, ingested once per session."""

from pathlib import Path

import pytest

from tests.conftest import MOVIELENS, run_cli


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "ml"
    result = run_cli("ingest", MOVIELENS / "ratings.csv", "--preset", "movielens", "-o", out, "--no-track")
    assert result.exit_code == 0, result.stderr
    return out
