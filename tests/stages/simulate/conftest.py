"""What the simulation tests share: the MovieLens logs ingested once per worker, and a quick way
to configure and run a simulation on them."""

from __future__ import annotations

from pathlib import Path

from persotool.kernels.config import load_config
from persotool.kernels.simulation import build, engine
from persotool.kernels.simulation.spec import SimulationConfig
from persotool.stages.simulate.retrain import retrainer


def config(arms: list[dict], **overrides):
    return load_config(
        SimulationConfig, None, {"days": 14, "pre_days": 7, "world.population": 3000, **overrides} | {"arms": arms}
    )


def simulate(dataset: Path, cfg):
    built = build.build(dataset, cfg)
    return built, engine.run_days(built, cfg, built.calibration["dataset_digest"], retrain=retrainer(cfg, dataset))
