"""`impressions.epsilon`: arms as epsilon-mixtures of whole slates, and each arm's impression log
with exact propensities. The random slate is uniform over what the user can still be served; each
logged propensity is the logging arm's own action distribution at that item and position; the
rows' exact expected rewards agree with the rewards the simulation drew, position by position; the
log goes through `ingest` and `ope`, where IPS of the logger on its own log is the logged mean; a
log too large to hold is refused before the days run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from persotool.errors import ConfigError
from persotool.kernels.simulation.impressions import check_size, explore
from tests.conftest import run_cli

CONFIG = """
days = 10
pre_days = 3
slate_size = 3
[world]
population = 1500
[behaviour]
examination = "log-discount"
similarity_weight = 0.0
[impressions]
epsilon = {epsilon}
[[arms]]
name = "popular"
policy = "popular"
share = 1
[[arms]]
name = "oracle"
policy = "oracle"
share = 1
"""


def test_the_random_slate_is_uniform_over_what_can_be_served() -> None:
    rng = np.random.default_rng(0)
    n, k, width = 60_000, 3, 6
    items = np.tile(np.array([4, 2, 0, 5, 1, -1]), (n, 1))
    available = items >= 0
    available[:, 1] = False  # item 2 consumed: never served
    own = np.tile(np.array([0, 2, 3]), (n, 1))
    chance = rng.random(n)
    keys = rng.random((n, width), dtype=np.float32)
    pos = explore(items, available, own, chance, keys, 0.4)
    kept = chance >= 0.4
    assert (pos[kept] == own[kept]).all()
    served = np.take_along_axis(items[~kept], np.maximum(pos[~kept], 0), axis=1)
    assert (pos[~kept] >= 0).all() and not (served == 2).any()
    for j in range(k):
        assert (served[:, j][:, None] != served[:, [i for i in range(k) if i != j]]).all()  # distinct
        freq = np.bincount(served[:, j], minlength=6)[[0, 1, 4, 5]] / len(served)
        assert np.abs(freq - 0.25).max() < 0.012  # m = 4 servable items, each 1/4 at every position


def test_a_log_too_large_to_hold_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"about 22\.4 GiB .* fewer items"):
        check_size(1e6, 1000, 3, 2)
    with pytest.raises(ConfigError, match=r"lineups of 500,000 simulated users x 9,742 items .* fewer users"):
        check_size(1e4, 9742, 3, 2, users=500_000)
    check_size(1e4, 60, 3, 2, users=2000)  # the loop benchmark's size passes


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    root = tmp_path_factory.mktemp("impressions")
    synth = ("datasets", "synth", "--users", "600", "--items", "40", "--events", "12000", "--days", "60")
    assert run_cli(*synth, "-o", root / "raw", "--no-track").exit_code == 0
    got = run_cli("ingest", root / "raw/events.csv", "--schema", root / "raw/schema.toml", "-o", root / "ds")
    assert got.exit_code == 0, got.stderr
    (root / "sim.toml").write_text(CONFIG.format(epsilon=0.3))
    got = run_cli("simulate", root / "ds", "--config", root / "sim.toml", "-o", root / "sim", "--no-track")
    assert got.exit_code == 0, got.stderr
    assert "impression logs with exact propensities (epsilon 0.3) of popular, oracle" in got.stderr
    return root


def test_each_logged_propensity_is_the_loggers_own_action_distribution(simulated: Path) -> None:
    folder = simulated / "sim" / "impressions"
    truth = json.loads((folder / "truth.json").read_text())
    assert truth["exact"] and truth["epsilon"] == 0.3
    for arm in ("popular", "oracle"):
        log = pl.read_parquet(folder / f"{arm}.parquet")
        assert log.columns == ["user_id", "day", "slate_id", "item_id", "position", "click", "propensity_score"]
        items = sorted(log["item_id"].unique().to_list())
        code = {item: i for i, item in enumerate(items)}
        dist = np.load(folder / "targets" / arm / f"{arm}.npy")
        assert dist.shape == (len(log), len(items), 3)
        assert np.allclose(dist.sum(axis=1), 1, atol=1e-5)
        at = dist[np.arange(len(log)), [code[i] for i in log["item_id"]], log["position"].to_numpy() - 1]
        assert np.allclose(at, log["propensity_score"].to_numpy(), atol=1e-6)
        # most slates are the arm's own (probability 0.7 + 0.3 / m of each item), the rest uniform
        own = log["propensity_score"].to_numpy() > 0.5
        assert 0.6 < own.mean() < 0.8
        # every user in a log is assigned to that arm: the two logs share none
        other = pl.read_parquet(folder / f"{'oracle' if arm == 'popular' else 'popular'}.parquet")
        assert not set(log["user_id"]) & set(other["user_id"])


def test_exact_values_agree_with_the_drawn_rewards_at_every_position(simulated: Path) -> None:
    """The recorder's expected reward of each row under the logging arm (engagement chance in the
    user's state x examination at the position) against the rewards the day loop drew."""
    from persotool.kernels.config import load_config
    from persotool.kernels.simulation import build, engine
    from persotool.kernels.simulation.spec import SimulationConfig
    from persotool.stages.simulate import impressions

    cfg = load_config(SimulationConfig, simulated / "sim.toml", {})
    built = build.build(simulated / "ds", cfg)
    recorder = impressions.recorder(built, cfg)
    engine.run_days(built, cfg, built.calibration["dataset_digest"], recorder=recorder)
    for arm, log in recorder.finish().items():
        for j in range(3):
            at = log.position == j
            gap = log.reward[at].mean() - log.values[arm][at].mean()
            se = log.reward[at].std() / np.sqrt(at.sum())
            assert abs(gap) < 4 * se, (arm, j, gap, se)
        # the position discount is in the values: a first slot is worth more than a third
        assert log.values[arm][log.position == 0].mean() > 1.5 * log.values[arm][log.position == 2].mean()


def test_the_log_goes_through_ingest_and_ope(simulated: Path) -> None:
    folder = simulated / "sim" / "impressions"
    got = run_cli("ingest", folder / "popular.parquet", "--schema", folder / "schema.toml", "-o", simulated / "lp")
    assert got.exit_code == 0, got.stderr
    targets = folder / "targets" / "popular"
    got = run_cli(
        "ope", simulated / "lp", "--policy", targets / "popular.npy", "--policy", targets / "oracle.npy",
        "-o", simulated / "ope", "--no-track", "--json",
    )  # fmt: skip
    assert got.exit_code == 0, got.stderr
    found = json.loads(got.stdout)
    log = pl.read_parquet(folder / "popular.parquet")
    by = {p["name"]: {e["estimator"]: e for e in p["estimates"]} for p in found["policies"]}
    assert by["popular"]["IPS"]["value"] == pytest.approx(log["click"].mean(), abs=1e-6)  # float32 targets
    truth = json.loads((folder / "truth.json").read_text())["loggers"]["popular"]["targets"]["oracle"]["value"]
    assert by["oracle"]["DR"]["low"] - 0.05 < truth < by["oracle"]["DR"]["high"] + 0.05
