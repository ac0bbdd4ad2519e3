"""Robustness over worlds: Rubin's rules against a hand computation, the verdict's two conditions,
and `simulate --worlds` end to end (parallel workers, JSON, report, robustness.csv, MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from persotool.stages.simulate import robustness
from tests.conftest import run_cli


def _worlds(effects, ses, truth=0.1) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "world": list(range(len(effects))),
            "truth": ["als"] * len(effects),
            "seed": list(range(len(effects))),
            "arm": ["b"] * len(effects),
            "metric": ["engagements"] * len(effects),
            "family": ["primary"] * len(effects),
            "effect": effects,
            "se": ses,
            "p_value": [0.5] * len(effects),
            "true_effect": [truth] * len(effects),
        }
    )


def test_rubins_rules_by_hand():
    """Effects 1, 2, 3 with standard errors 0.5: W = 0.25, B = 1, T = 0.25 + (4/3) 1 = 1.5833;
    df = 2 (1 + 0.25 / (4/3))^2 = 2.8204; the interval is 2 +- t(0.975, 2.8204) sqrt(1.5833)."""
    row = robustness.combine(_worlds([1.0, 2.0, 3.0], [0.5, 0.5, 0.5]), 0.05, 0.9).row(0, named=True)
    total = 0.25 + 4 / 3
    df = 2 * (1 + 0.25 / (4 / 3)) ** 2
    half = stats.t.ppf(0.975, df) * np.sqrt(total)
    assert row["effect"] == pytest.approx(2.0)
    assert row["df"] == pytest.approx(df)
    assert row["ci_low"] == pytest.approx(2 - half)
    assert row["ci_high"] == pytest.approx(2 + half)
    assert row["sign_agreement"] == 1.0
    # the sign agrees everywhere but the world-to-world spread makes the interval hold zero
    assert row["ci_low"] < 0 and row["verdict"] == "not robust: the combined interval holds zero"


def test_verdict_needs_both_sign_agreement_and_an_interval_away_from_zero():
    tight = robustness.combine(_worlds([1.0, 1.1, 0.9, 1.05], [0.05] * 4), 0.05, 0.9).row(0, named=True)
    assert tight["verdict"] == "robust" and tight["robust"]
    # one world of ten disagrees: 90% agreement still passes, two of ten do not
    nine = robustness.combine(_worlds([1.0] * 9 + [-0.1], [0.05] * 10), 0.05, 0.9).row(0, named=True)
    assert nine["sign_agreement"] == pytest.approx(0.9)
    eight = robustness.combine(_worlds([1.0] * 8 + [-0.1, -0.2], [0.05] * 10), 0.05, 0.9).row(0, named=True)
    assert eight["verdict"] == "not robust: the sign agrees in 80% of worlds"


def test_simulate_over_worlds_end_to_end(dataset: Path, tmp_path: Path, scratch_cwd: Path):
    from mlflow.tracking import MlflowClient

    config = tmp_path / "sim.toml"
    config.write_text(
        'name = "worlds"\ndays = 8\npre_days = 4\ncontrol = "random"\n[world]\npopulation = 800\n'
        '[[arms]]\nname = "random"\npolicy = "random"\nshare = 1\n'
        '[[arms]]\nname = "oracle"\npolicy = "oracle"\nshare = 1\n'
    )
    out = tmp_path / "ab"
    made = run_cli(
        "simulate", dataset, "--config", config, "-o", out, "--worlds", "3", "--workers", "2",
        "--set", 'robustness.truths=["itemknn", "als"]', "--experiment", "robustness", "--json",
    )  # fmt: skip
    assert made.exit_code == 0, made.stderr
    payload = json.loads(made.stdout)
    robust = payload["robustness"]
    assert robust["worlds"] == 3
    engagements = next(r for r in robust["combined"] if r["metric"] == "engagements")
    assert [w["truth"] for w in engagements["per_world"]] == ["itemknn", "als", "itemknn"]
    effects = [w["effect"] for w in engagements["per_world"]]
    assert len(set(effects)) == 3  # three different worlds
    assert engagements["effect"] == pytest.approx(np.mean(effects))
    assert engagements["ci"][0] <= engagements["effect"] <= engagements["ci"][1]
    assert engagements["verdict"] == "robust" or engagements["verdict"].startswith("not robust: ")
    table = pl.read_csv(out / "robustness.csv")
    assert set(table["arm"]) == {"oracle"} and len(pl.read_csv(out / "robustness_worlds.csv")) == 3 * len(table)
    assert "Robustness over 3 worlds" in (out / "report.html").read_text()
    run = MlflowClient().get_run(payload["mlflow_run_id"])
    assert run.data.tags["robustness.oracle.engagements"] == engagements["verdict"]
    assert run.data.metrics["oracle.engagements.robust_effect"] == pytest.approx(engagements["effect"])
    import persotool as pt

    # the terminal draws the same blocks as the Markdown
    assert "Robustness over 3 worlds" in pt.Experiment(out).to_markdown()
