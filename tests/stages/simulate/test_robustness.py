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


def _rows(truths, ses, effects=None) -> pl.DataFrame:
    frame = _worlds(effects if effects is not None else list(truths), ses)
    return frame.with_columns(pl.Series("true_effect", truths, dtype=pl.Float64))


def test_predictive_combination_by_hand():
    """True effects 1, 2, 3 with assignment standard errors 0.5: the predicted effect is 2; the
    predictive variance (1 + 1/3) var(T) + mean(se^2) = 4/3 + 0.25 = 1.5833 with Satterthwaite's
    df = 2 x 1.5833^2 / (4/3)^2 = 2.8204; every world's true effect is positive (P(sign) = 4/5 by
    the rule of succession); the power is the mixture's rejection chance at z = 1.96."""
    row = robustness.combine(_rows([1.0, 2.0, 3.0], [0.5] * 3, effects=[5.0, -4.0, 9.0]), 0.05, 0.9).row(0, named=True)
    total = 4 / 3 + 0.25
    df = 2 * total**2 / (4 / 3) ** 2
    half = stats.t.ppf(0.975, df) * np.sqrt(total)
    assert row["effect"] == pytest.approx(2.0) and row["df"] == pytest.approx(df)
    assert row["true_variance"] == pytest.approx(1.0) and row["assignment_variance"] == pytest.approx(0.25)
    assert row["ci_low"] == pytest.approx(2 - half) and row["ci_high"] == pytest.approx(2 + half)
    z = stats.norm.ppf(0.975)
    t = np.array([1.0, 2.0, 3.0]) / 0.5
    assert row["power"] == pytest.approx(np.mean(stats.norm.cdf(t - z) + stats.norm.cdf(-t - z)))
    assert row["sign_probability"] == pytest.approx(4 / 5) and row["verdict"].startswith("not robust: 3 of 3")
    # the per-world estimates (5, -4, 9) play no part: their spread already holds the assignment noise
    assert row["estimate_mean"] == pytest.approx(10 / 3)


def test_the_predictive_interval_covers_a_new_world_at_its_level():
    """Worlds whose true effects are N(1, 1), experiments with se 0.3: the interval from 10 worlds
    covers the estimate of an experiment in an 11th world 95% of the time (a plain mixture of the
    10 worlds' normals covered 86-88% in the validation's oracle arm)."""
    rng = np.random.default_rng(3)
    hits, reps = 0, 4000
    for _ in range(reps):
        truth = rng.normal(1.0, 1.0, 11)
        se = np.full(10, 0.3)
        low, high, _, _ = robustness.predictive_interval(truth[:10], se, 0.05)
        hits += low <= rng.normal(truth[10], 0.3) <= high
    assert abs(hits / reps - 0.95) < 3 * np.sqrt(0.95 * 0.05 / reps)


def test_the_assignment_noise_is_counted_once():
    """One true effect in every world: the predictive interval is the experiment's own +-1.96 se,
    however far apart the worlds' noisy estimates are (Rubin's rules on those would double it)."""
    row = robustness.combine(_rows([0.4] * 8, [0.2] * 8, effects=[0.9, -0.1, 0.5, 0.2, 0.8, 0.0, 0.6, 0.3]), 0.05, 0.9)
    row = row.row(0, named=True)
    assert row["ci_low"] == pytest.approx(0.4 - 1.959964 * 0.2, abs=1e-5)
    assert row["ci_high"] == pytest.approx(0.4 + 1.959964 * 0.2, abs=1e-5)
    assert row["true_variance"] == 0.0


def test_the_verdict_is_the_share_of_worlds_with_the_predicted_sign():
    """P(sign) is (k + 1) / (n + 2) for k of n worlds agreeing: 19 of 20 is 0.909 (robust), 18 of 20
    0.864 and 5 of 5 0.857 (not: five worlds cannot make a sign 90% sure), 10 of 10 0.917."""
    nineteen = robustness.combine(_rows([1.0] * 19 + [-0.1], [0.05] * 20), 0.05, 0.9).row(0, named=True)
    assert nineteen["sign_probability"] == pytest.approx(20 / 22) and nineteen["robust"]
    eighteen = robustness.combine(_rows([1.0] * 18 + [-0.1, -0.2], [0.05] * 20), 0.05, 0.9).row(0, named=True)
    assert eighteen["verdict"] == "not robust: 18 of 20 worlds have a true effect of the predicted sign (P 86%)"
    five = robustness.combine(_rows([1.0] * 5, [0.05] * 5), 0.05, 0.9).row(0, named=True)
    assert five["sign_probability"] == pytest.approx(6 / 7) and not five["robust"]
    ten = robustness.combine(_rows([1.0] * 10, [0.05] * 10), 0.05, 0.9).row(0, named=True)
    assert ten["sign_probability"] == pytest.approx(11 / 12) and ten["robust"]
    # a true effect of exactly zero everywhere has no sign to be robust about, whatever the estimates say
    null = robustness.combine(_rows([0.0] * 10, [0.05] * 10, effects=[0.3] * 10), 0.05, 0.9).row(0, named=True)
    assert null["sign_probability"] == pytest.approx(1 / 12) and not null["robust"]
    assert null["power"] == pytest.approx(0.05)
    # no true effect known: said so, never robust
    unknown = robustness.combine(_rows([None] * 3, [0.1] * 3, effects=[1.0] * 3), 0.05, 0.9).row(0, named=True)
    assert unknown["verdict"] == "not robust: the simulator has no true effect for this metric"


def test_auto_truths_are_drawn_by_weight_and_behaviour_within_its_ranges():
    from persotool.kernels.simulation.spec import SimulationConfig

    arms = [{"name": "a", "policy": "random", "share": 1}, {"name": "b", "policy": "popular", "share": 1}]
    vary = {"fatigue_weight": [0.2, 0.4], "truth_noise": [0.1, 0.1]}
    cfg = SimulationConfig.model_validate({"name": "x", "arms": arms, "robustness": {"worlds": 20, "vary": vary}})
    entries = robustness.plan(cfg, {"als": 0.6, "ease": 0.4, "itemknn": 0.0})
    truths = [e["truth"] for e in entries]
    assert truths.count("als") == 12 and truths.count("ease") == 8  # systematic: proportional to the weights
    assert all(0.2 <= e["behaviour"]["fatigue_weight"] <= 0.4 for e in entries)
    assert {e["behaviour"]["truth_noise"] for e in entries} == {0.1}
    with pytest.raises(ValueError, match="cannot vary"):
        SimulationConfig.model_validate({**cfg.model_dump(), "robustness": {"vary": {"days": [1, 2]}}})


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
        "--experiment", "robustness", "--json",
    )  # fmt: skip
    assert made.exit_code == 0, made.stderr
    payload = json.loads(made.stdout)
    robust = payload["robustness"]
    assert robust["worlds"] == 3
    engagements = next(r for r in robust["combined"] if r["metric"] == "engagements")
    # auto: the truths are drawn by the main world's held-out weights, and behaviour within its priors
    weights = payload["calibration"]["truth_weights"]
    drawn = [w["truth"] for w in engagements["per_world"]]
    assert set(drawn) <= {f for f, w in weights.items() if w > 0}
    assert all(0 <= w["fatigue_weight"] <= 1 and 0.7 <= w["cascade_continue"] <= 0.95 for w in engagements["per_world"])
    truths = [w["true_effect"] for w in engagements["per_world"]]
    assert len(set(truths)) == 3  # three different worlds
    assert engagements["effect"] == pytest.approx(np.mean(truths))  # the predicted effect: the mean true effect
    assert engagements["ci"][0] <= engagements["effect"] <= engagements["ci"][1]
    agree = int(np.sum(np.sign(truths) == np.sign(engagements["effect"])))
    assert engagements["sign_probability"] == pytest.approx((agree + 1) / 5)  # the rule of succession
    assert engagements["verdict"].startswith(f"not robust: {agree} of 3 worlds")  # three worlds cannot be sure
    table = pl.read_csv(out / "robustness.csv")
    assert set(table["arm"]) == {"oracle"} and len(pl.read_csv(out / "robustness_worlds.csv")) == 3 * len(table)
    assert "Robustness over 3 worlds" in (out / "report.html").read_text()
    run = MlflowClient().get_run(payload["mlflow_run_id"])
    assert run.data.tags["robustness.oracle.engagements"] == engagements["verdict"]
    assert run.data.metrics["oracle.engagements.robust_effect"] == pytest.approx(engagements["effect"])
    import persotool as pt

    # the terminal draws the same blocks as the Markdown
    assert "Robustness over 3 worlds" in pt.Experiment(out).to_markdown()
