"""`calibrate` and `backtest` on `datasets synth` logs, whose behaviour parameters are known: the
calibration recovers them, the back-test finds the visit-and-return forecast in line with the
held-out logs and better than the naive forecasts, and a deliberately misspecified world is
reported as a misfit. Then the world directory in `simulate`, the commands' errors and MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import persotool as pt
from persotool.stages.backtest import run as bt
from persotool.stages.backtest.compare import VERDICTS
from persotool.stages.backtest.config import BacktestConfig
from tests.conftest import run_cli

# the quantities the synthetic log's behaviour parameters determine
BEHAVIOUR = (
    "share of users returning",
    "active days per user",
    "returned within 1 days",
    "returned within 7 days",
    "returned within 30 days",
    "gap between active days",
)
PER_USER = ("AUC of returning", "Spearman of active days", "MAE of active days")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> tuple[Path, Path]:
    """A log with enough events that no visit is thinned away (the visit rate is the truth's)."""
    root = tmp_path_factory.mktemp("synth-bt")
    made = run_cli(
        "datasets",
        "synth",
        "-o",
        root / "log",
        "--users",
        "1200",
        "--items",
        "600",
        "--days",
        "100",
        "--events",
        "120000",
        "--seed",
        "4",
        "--no-track",
    )
    assert made.exit_code == 0, made.stderr
    ingested = run_cli(
        "ingest", root / "log" / "events.csv", "--schema", root / "log" / "schema.toml", "-o", root / "ds", "--no-track"
    )
    assert ingested.exit_code == 0, ingested.stderr
    return root / "log", root / "ds"


def test_calibration_recovers_the_synthetic_behaviour(synth, tmp_path):
    log, ds = synth
    made = run_cli("calibrate", ds, "-o", tmp_path / "world", "--json", "--no-track")
    assert made.exit_code == 0, made.stderr
    payload = json.loads(made.stdout)
    means = payload["fit"]["means"]
    truth = np.load(log / "ground_truth.npz")
    users = pl.read_parquet(ds / "users.parquet").sort("user_idx")
    logged = users["user_id"].str.strip_prefix("u").cast(pl.Int64).to_numpy()
    # the users the log shows (some leave before their first visit and are never seen)
    assert means["visit_chance"] == pytest.approx(truth["visit_propensity"][logged].mean(), rel=0.10)
    assert means["leaving_chance"] == pytest.approx(truth["churn_hazard"][logged].mean(), rel=0.30)
    config = json.loads((log / "ground_truth.json").read_text())["config"]
    assert means["return_chance"] == pytest.approx(config["reactivation_probability"], rel=0.40)
    # per user: the posterior mean visit chance ranks users as their true propensity does
    table = pl.read_parquet(tmp_path / "world" / "users.parquet")
    true_p = truth["visit_propensity"][logged[table["user_idx"].to_numpy()]]
    assert np.corrcoef(np.argsort(np.argsort(table["visit_chance"])), np.argsort(np.argsort(true_p)))[0, 1] > 0.8
    assert payload["diagnostics"]["active_days"]["p_value"] > 0.01  # the in-sample check finds no misfit


def test_backtest_on_synthetic_logs_finds_no_misfit_in_visits_and_returns(synth, tmp_path):
    _, ds = synth
    # the synthetic log's users leave whatever they get: the simulator is told so (its default link,
    # a prior, moves the item popularity distribution's KS distance from 0.08 to 0.10 on this log)
    made = run_cli(
        "backtest",
        ds,
        "--cutoff",
        "0.7",
        "-o",
        tmp_path / "bt",
        "--set",
        "bootstrap=100",
        "--set",
        "behaviour.churn_satisfaction=0",
        "--json",
        "--no-track",
    )
    assert made.exit_code == 0, made.stderr
    payload = json.loads(made.stdout)
    rows = {q["quantity"]: q for q in payload["quantities"]}
    for name in BEHAVIOUR:
        assert rows[name]["verdict"] in ("within noise", "better than the naive forecast", "close"), (name, rows[name])
    assert payload["verdict"]["misfit"] == []  # engagement and popularity too
    for name in PER_USER:  # at least as good as the naive forecasts, and at least one clearly better
        assert rows[name]["verdict"] in ("better than the naive forecast", "within noise"), (name, rows[name])
    assert rows["AUC of returning"]["simulated"] > rows["AUC of returning"]["persistence"]
    assert rows["Spearman of active days"]["simulated"] > rows["Spearman of active days"]["persistence"]
    assert rows["MAE of active days"]["simulated"] < rows["MAE of active days"]["persistence"]
    assert any(rows[name]["verdict"] == "better than the naive forecast" for name in PER_USER)
    assert payload["verdict"]["supports_forecast"]
    # the simulation reproduces the fitted model's own closed form
    share = rows["share of users returning"]
    assert share["simulated"] == pytest.approx(share["model (closed form)"], abs=0.03)
    days = rows["active days per user"]
    assert days["simulated"] == pytest.approx(days["model (closed form)"], rel=0.08)
    # the best mixing distribution fits at least as well in sample and forecasts as well here
    assert share["model (best mixing)"] == pytest.approx(share["real"], rel=0.1)
    for name in ("per_user.parquet", "retention.parquet", "retention.png", "active_days.png", "quantities.csv"):
        assert (tmp_path / "bt" / name).is_file()
    # a CI job gates on it from Python: no misfit here
    assert pt.Backtest(tmp_path / "bt").require(ceilings={"misfits": 0}).measures()["misfits"] == 0
    # the truth families are scored on what known users consumed after the cutoff (the synthetic log
    # draws items from softmax(affinity): every fitted family beats popularity alone at predicting them)
    fit = payload["truth_fit"]
    families = {r["family"]: r for r in fit["families"]}
    assert set(families) == {"popularity", "als", "ease", "itemknn", "weighted mixture"}
    assert fit["users"] > 100 and sum(fit["weights"].values()) == pytest.approx(1.0)
    assert fit["truth"].startswith("auto: ")
    assert families["weighted mixture"]["loglik_gain"] > 0.01
    assert "Truth families on held-out behaviour" in pt.Backtest(tmp_path / "bt").to_markdown()
    # the return link is measured before the cutoff and after it
    assert set(payload["return_link"]) == {"before the cutoff", "after the cutoff"}
    assert all(link["link"] for link in payload["return_link"].values())


def test_a_misspecified_world_is_reported_as_a_misfit(synth, tmp_path):
    """Users who never leave and come back within days: a world the calibration would never give."""
    _, ds = synth
    cfg = BacktestConfig(cutoff=0.7, bootstrap=60, behaviour={"churn_hazard": 0.0, "reactivation": 0.3})
    result = bt.forecast(ds, cfg)
    rows = {q["quantity"]: q for q in result["quantities"]}
    assert rows["share of users returning"]["verdict"] == "misfit"
    assert rows["active days per user"]["verdict"] == "misfit"
    assert rows["share of users returning"]["simulated"] > rows["share of users returning"]["real"] + 0.1
    # the fitted model itself forecasts well: the note blames the simulation's departure from it
    assert any("departs from the model" in note for note in result["notes"]), result["notes"]
    # written out, it fails a gate that allows no misfit, naming the count
    bt.write(result, cfg, tmp_path / "bt")
    with pytest.raises(pt.QualityGateFailed, match=r"misfits = [1-9]\d* > 0"):
        pt.Backtest(tmp_path / "bt").require(ceilings={"misfits": 0})


def test_world_directory_feeds_simulate(synth, tmp_path):
    _, ds = synth
    assert run_cli("calibrate", ds, "--until", "0.8", "-o", tmp_path / "world", "--no-track").exit_code == 0
    out = tmp_path / "ab"
    made = run_cli(
        "simulate",
        ds,
        "--config",
        "simulation",
        "-o",
        out,
        "--set",
        f"world.source={tmp_path / 'world'}",
        "--set",
        "world.population=2000",
        "--set",
        "days=10",
        "--set",
        "pre_days=4",
        "--set",
        'arms=[{name="popular",policy="popular",share=1},{name="random",policy="random",share=1}]',
        "--set",
        "control=popular",
        "--no-track",
        "--json",
    )
    assert made.exit_code == 0, made.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    calibration = manifest["calibration"]
    assert calibration["world_dir"] == str(tmp_path / "world")
    world = json.loads((tmp_path / "world" / "manifest.json").read_text())
    assert calibration["window"]["cutoff_day"] == world["window"]["cutoff_day"]
    assert calibration["visit_model"]["params"] == world["fit"]["params"]
    # the world directory weighed the truth families on its window's last 20%; the auto truth uses them
    assert calibration["truth_weights"] == world["truth"]["weights"]
    assert calibration["truth_fit"]["from"] == "world directory"
    assert sum(world["truth"]["weights"].values()) == pytest.approx(1.0)
    # an edited weight is refused in one line, naming the field
    world["truth"]["weights"]["als"] = -1.0
    (tmp_path / "world" / "manifest.json").write_text(json.dumps(world))
    bad = run_cli("simulate", ds, "--config", "simulation", "-o", tmp_path / "ab2", "--set",
                  f"world.source={tmp_path / 'world'}", "--no-track")  # fmt: skip
    assert bad.exit_code != 0 and "truth.weights" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_calibrate_and_backtest_refuse_bad_input_in_one_line(synth, dataset, tmp_path):
    _, ds = synth
    bad = run_cli("calibrate", ds, "--until", "next tuesday", "-o", tmp_path / "w")
    assert bad.exit_code != 0
    assert "neither a fraction" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()
    late = run_cli("backtest", ds, "--cutoff", "1.0", "-o", tmp_path / "b")
    assert late.exit_code != 0 and "after it" in late.stderr
    assert not (tmp_path / "b").exists()
    assert run_cli("calibrate", ds, "-o", tmp_path / "w2", "--no-track").exit_code == 0
    # a world calibrated on the synthetic log, used for MovieLens
    config = "simulation"
    wrong = run_cli(
        "simulate",
        dataset,
        "--config",
        config,
        "-o",
        tmp_path / "s",
        "--set",
        f"world.source={tmp_path / 'w2'}",
        "--no-track",
    )
    assert wrong.exit_code != 0
    assert "was calibrated on dataset" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_backtest_is_recorded_in_mlflow(synth, tmp_path):
    import mlflow

    _, ds = synth
    made = run_cli(
        "backtest", ds, "--cutoff", "0.8", "-o", tmp_path / "bt", "--set", "bootstrap=60", "--set", "clones=5", "--json"
    )
    assert made.exit_code == 0, made.stderr
    run_id = json.loads(made.stdout)["mlflow_run_id"]
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.tags["verdict.share_of_users_returning"] in VERDICTS
    real = run.data.metrics["share_of_users_returning.real"]
    assert 0 < real < 1
    assert "share_of_users_returning.persistence" in run.data.metrics
    assert "share_of_users_returning.model_best_mixing" in run.data.metrics


def test_every_truth_family_ranks_logged_items_above_others(synth):
    """Each family's true affinity, fitted on the logs, prefers what users consumed to random items
    (so the truth agrees with the logs), and no family gives the ALS truth again."""
    from persotool.kernels.models.base import seen_matrix
    from persotool.kernels.simulation import world
    from persotool.kernels.simulation.spec import WorldSpec

    _, ds = synth
    frame = pl.read_parquet(ds / "interactions.parquet", columns=["user_idx", "item_idx"])
    n_users, n_items = int(frame["user_idx"].max()) + 1, int(frame["item_idx"].max()) + 1
    history = seen_matrix(frame, n_users, n_items)
    coo = history.tocoo()
    rng = np.random.default_rng(0)
    others = rng.integers(0, n_items, len(coo.row))
    pairs = rng.integers(0, n_users, 3000), rng.integers(0, n_items, 3000)
    truths = {}
    for family in ("als", "ease", "itemknn", "lightfm", "mixture"):
        users, items, _ = world.fit_truth(history, WorldSpec(truth=family), seed=0)
        seen = np.einsum("nd,nd->n", users[coo.row], items[coo.col])
        other = np.einsum("nd,nd->n", users[coo.row], items[others])
        assert (seen > other).mean() > 0.6, family
        truths[family] = np.einsum("nd,nd->n", users[pairs[0]], items[pairs[1]])
    for family in ("ease", "itemknn", "lightfm"):
        assert np.corrcoef(truths[family], truths["als"])[0, 1] < 0.95, family
    # a mixture is unlike each of its parts
    assert all(np.corrcoef(truths["mixture"], truths[f])[0, 1] < 0.99 for f in ("als", "ease", "itemknn"))
