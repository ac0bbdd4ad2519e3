"""What the simulation tests share: the MovieLens logs ingested once per worker, and a quick way
to configure and run a simulation on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from persotool.kernels.config import load_config
from persotool.kernels.simulation import build, engine
from persotool.kernels.simulation.spec import SimulationConfig
from persotool.stages.simulate.retrain import retrainer
from tests.conftest import MOVIELENS, run_cli


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "ml"
    result = run_cli("ingest", MOVIELENS / "ratings.csv", "--preset", "movielens", "-o", out, "--no-track")
    assert result.exit_code == 0, result.stderr
    return out


def config(arms: list[dict], **overrides):
    return load_config(
        SimulationConfig, None, {"days": 14, "pre_days": 7, "world.population": 3000, **overrides} | {"arms": arms}
    )


def simulate(dataset: Path, cfg):
    built = build.build(dataset, cfg)
    return built, engine.run_days(built, cfg, built.calibration["dataset_digest"], retrain=retrainer(cfg, dataset))
