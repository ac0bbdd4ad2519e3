"""`persotool ope` on impression logs written from a world whose policy values are known: the
command's estimates are the estimators' on the log's own arrays, near the truth; without logged
propensities the estimated logging policy is said and still lands near the truth; recommendation
lists become the documented epsilon-mixture; bad targets are refused in one line; the run is in
MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from persotool.kernels.offpolicy.synthetic import ImpressionWorld
from tests.conftest import run_cli

N = 6000


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """An impression log of the synthetic world (items named 10, 20, ... so raw-id order matters),
    ingested with and without its propensities, and the near and far targets' action_dist.npy."""
    root = tmp_path_factory.mktemp("ope")
    world = ImpressionWorld()
    x, log, dists = world.log(N, np.random.default_rng(3))
    names = np.array([10 * (k + 1) for k in range(world.items)])
    frame = pl.DataFrame(
        {
            "user": [f"u{i % 500}" for i in range(N)],
            "item": names[log.item].astype(str),
            "slot": (log.position + 1).astype(str),
            "click": log.reward.astype(int).astype(str),
            "p": log.pscore.astype(str),
            **{f"x{j}": x[:, j].astype(str) for j in range(world.d)},
        }
    )
    frame.write_csv(root / "log.csv")
    base = ["--item-col", "item", "--position-col", "slot", "--reward-col", "click", "--context-cols", "x*"]
    for name, extra in (("ds", ["--propensity-col", "p"]), ("ds-nop", [])):
        done = run_cli("ingest", root / "log.csv", *base, *extra, "-o", root / name, "--no-track")
        assert done.exit_code == 0, done.stderr
    for name, dist in dists.items():
        np.save(root / f"{name}.npy", dist)
    return root, world, log, dists


def _ope(root: Path, *args) -> dict:
    done = run_cli("ope", *args, "--json", "--no-track")
    assert done.exit_code == 0, done.stderr
    return json.loads(done.stdout)


def test_the_command_gives_the_estimators_values_on_the_logs_arrays(logged, tmp_path):
    root, world, log, dists = logged
    result = _ope(root, root / "ds", "--policy", root / "near.npy", "--policy", root / "far.npy", "-o", tmp_path / "o")
    by = {p["name"]: {e["estimator"]: e for e in p["estimates"]} for p in result["policies"]}
    for name in ("near", "far"):
        w = dists[name][np.arange(N), log.item, log.position] / log.pscore
        assert by[name]["IPS"]["value"] == pytest.approx(np.mean(w * log.reward), rel=1e-9)
        assert by[name]["SNIPS"]["value"] == pytest.approx(np.sum(w * log.reward) / np.sum(w), rel=1e-9)
        truth = world.value[name]
        for estimator in ("IPS", "DR"):  # within 4 standard errors of the known value
            e = by[name][estimator]
            assert abs(e["value"] - truth) < 4 * (e["high"] - e["low"]) / (2 * 1.96), (name, estimator, e, truth)
    assert result["logger_value"] == pytest.approx(log.reward.mean())
    assert result["propensities"] == "logged" and not result["warnings"]
    assert {p["name"]: p["selected"] for p in result["policies"]}.keys() == {"near", "far"}
    table = pl.read_csv(tmp_path / "o" / "estimates.csv")
    assert len(table) == 14 and table.filter(pl.col("selected")).height == 2
    assert pl.read_json(tmp_path / "o" / "estimates.json").equals(table)  # the same rows, as JSON
    for name in ("forest.png", "weights.png", "manifest.json"):
        assert (tmp_path / "o" / name).stat().st_size > 0
    page = (tmp_path / "o" / "report.html").read_text()
    assert "Reward model, held out" in page and "data:image/png;base64" in page and "near: ESS" in page


def test_bootstrap_intervals_agree_with_the_normal_ones(logged, tmp_path):
    root, *_ = logged
    normal = _ope(root, root / "ds", "--policy", root / "near.npy", "-o", tmp_path / "n")
    boot = _ope(
        root,
        root / "ds",
        "--policy",
        root / "near.npy",
        "--interval",
        "bootstrap",
        "--bootstrap",
        "400",
        "-o",
        tmp_path / "b",
    )
    for a, b in zip(normal["policies"][0]["estimates"], boot["policies"][0]["estimates"], strict=True):
        assert a["value"] == b["value"]  # the same point estimate
        if a["estimator"] in ("IPS", "SNIPS", "DR", "SNDR"):  # widths agree within bootstrap noise
            assert (b["high"] - b["low"]) == pytest.approx(a["high"] - a["low"], rel=0.2), a["estimator"]


def test_without_propensities_the_estimated_logger_is_said_and_close(logged, tmp_path):
    root, world, *_ = logged
    result = _ope(root, root / "ds-nop", "--policy", root / "near.npy", "-o", tmp_path / "o")
    assert result["propensities"] == "estimated"
    assert "estimated logging policy" in result["warnings"][0]
    ips = next(e for e in result["policies"][0]["estimates"] if e["estimator"] == "IPS")
    # the logger is a softmax of linear scores: the multinomial model is well specified
    assert abs(ips["value"] - world.value["near"]) < 4 * (ips["high"] - ips["low"]) / (2 * 1.96)


def test_a_low_effective_sample_size_is_warned(logged, tmp_path):
    root, *_ = logged
    done = run_cli(
        "ope", root / "ds", "--policy", root / "far.npy", "--set", "min_ess=5000", "-o", tmp_path / "o", "--no-track"
    )
    assert done.exit_code == 0 and "effective sample size" in done.stderr and "do not trust" in done.stderr


def test_few_effective_rewards_are_warned(logged, tmp_path):
    """The fixture's log clears the default of 50 (no warning, see the first test); a higher floor
    shows the line, with the figure the manifest records."""
    root, *_ = logged
    floor = ("--set", "min_effective_rewards=1e6")
    done = _ope(root, root / "ds", "--policy", root / "far.npy", *floor, "-o", tmp_path / "o")
    rewards = done["policies"][0]["diagnostics"]["effective_rewards"]
    assert 50 < rewards < 1e6
    assert any(f"about {rewards:,.1f} effective rewards" in w for w in done["warnings"])


def test_the_gates_hold_a_target_to_its_loss_against_the_logger(logged, tmp_path):
    """`--max POLICY.loss_high` passes when the interval rules out a larger loss and fails (exit 1,
    one line naming the measure) when it does not; `--min POLICY.diff_low` likewise."""
    root, *_ = logged
    done = _ope(root, root / "ds", "--policy", root / "near.npy", "-o", tmp_path / "a")
    chosen = next(e for e in done["policies"][0]["estimates"] if e["selected"])
    loss_high = -chosen["diff_low"]
    base = ["ope", root / "ds", "--policy", root / "near.npy", "--no-track"]
    assert run_cli(*base, "-o", tmp_path / "b", "--max", f"near.loss_high={loss_high + 1e-6}").exit_code == 0
    failed = run_cli(*base, "-o", tmp_path / "c", "--max", f"near.loss_high={loss_high - 1e-6}")
    assert failed.exit_code == 1 and "near.loss_high" in failed.stderr
    failed = run_cli(*base, "-o", tmp_path / "d", "--min", f"near.diff_low={chosen['diff_low'] + 1e-6}")
    assert failed.exit_code == 1 and "near.diff_low" in failed.stderr


def test_recommendation_lists_become_an_epsilon_mixture(logged, with_users, tmp_path):
    root, world, _log, _ = logged
    recs = pl.DataFrame(
        {"user_id": ["u0", "u0", "u1"], "item_id": ["20", "70", "30"], "rank": [1, 2, 1], "score": [1.0, 0.5, 1.0]}
    )
    (tmp_path / "lists").mkdir()
    recs.write_parquet(tmp_path / "lists" / "recs.parquet")
    result = _ope(
        root,
        with_users / "imp",
        "--policy",
        tmp_path / "lists" / "recs.parquet",
        "--epsilon",
        "0.2",
        "-o",
        tmp_path / "o",
    )
    assert result["policies"][0]["name"] == "lists" and "epsilon 0.2" in result["policies"][0]["note"]
    dist = np.load(tmp_path / "o" / "policies" / "lists.npy")
    users = np.array([f"u{i % 500}" for i in range(N)])
    k = world.items
    i0 = int(np.flatnonzero(users == "u0")[0])
    np.testing.assert_allclose(dist[i0, :, 0].sum(), 1, rtol=1e-6)
    assert dist[i0, 1, 0] == pytest.approx(0.8 + 0.2 / k) and dist[i0, 6, 1] == pytest.approx(0.8 + 0.2 / k)
    i2 = int(np.flatnonzero(users == "u2")[0])  # no list: uniform at every position
    np.testing.assert_allclose(dist[i2], 1 / k, rtol=1e-6)


@pytest.mark.parametrize("bad", ["shape", "not_a_distribution", "pickled", "interactions", "none"])
def test_bad_targets_are_refused_in_one_line(logged, tmp_path, bad):
    root, _world, _log, dists = logged
    target, source = tmp_path / "t.npy", root / "ds"
    if bad == "shape":
        np.save(target, dists["near"][:10])
    elif bad == "not_a_distribution":
        np.save(target, dists["near"] * 1.5)
    elif bad == "pickled":
        np.save(target, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif bad == "interactions":
        np.save(target, dists["near"])
        pl.DataFrame({"u": ["a", "b"], "i": ["x", "y"], "t": ["1", "2"]}).write_csv(tmp_path / "i.csv")
        run_cli(
            "ingest",
            tmp_path / "i.csv",
            "--user-col",
            "u",
            "--item-col",
            "i",
            "--time-col",
            "t",
            "--time-format",
            "s",
            "-o",
            tmp_path / "ids",
            "--no-track",
        )
        source = tmp_path / "ids"
    args = [] if bad == "none" else ["--policy", target]
    done = run_cli("ope", source, *args, "-o", tmp_path / "o", "--no-track")
    assert done.exit_code == (3 if bad == "none" else 4), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    expected = {
        "shape": "has shape",
        "not_a_distribution": "sums to",
        "pickled": "cannot read it",
        "interactions": "is an interaction log",
        "none": "at least one target policy",
    }[bad]
    assert expected in done.stderr


def test_the_run_is_recorded_in_mlflow(logged, tmp_path):
    root, *_ = logged
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    done = run_cli("ope", root / "ds", "--policy", root / "near.npy", "-o", tmp_path / "o", "--json", env=env)
    assert done.exit_code == 0, done.stderr
    import mlflow

    run = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(json.loads(done.stdout)["mlflow_run_id"])
    assert run.data.metrics["near.IPS.value"] == pytest.approx(
        next(e["value"] for e in json.loads(done.stdout)["policies"][0]["estimates"] if e["estimator"] == "IPS")
    )
    assert run.data.metrics["near.ess"] > 0 and run.data.params["propensities"] == "logged"


def test_synth_impressions_ingest_and_ope_end_to_end(tmp_path):
    """`datasets synth --impressions` writes the OBD layout with exact propensities, the targets'
    action distributions and their true values; ingest reads it with its schema, ope recovers them."""
    made = run_cli(
        "datasets",
        "synth",
        "-o",
        tmp_path / "s",
        "--impressions",
        "--items",
        "10",
        "--events",
        "8000",
        "--seed",
        "2",
        "--no-track",
    )
    assert made.exit_code == 0, made.stderr
    truth = json.loads((tmp_path / "s" / "ground_truth.json").read_text())["values"]
    assert set(truth) == {"logger", "near", "far"}
    done = run_cli(
        "ingest",
        tmp_path / "s" / "impressions.csv",
        "--schema",
        tmp_path / "s" / "schema.toml",
        "-o",
        tmp_path / "ds",
        "--no-track",
    )
    assert done.exit_code == 0, done.stderr
    result = _ope(tmp_path, tmp_path / "ds", "--policy", tmp_path / "s" / "targets" / "far.npy", "-o", tmp_path / "o")
    assert result["logger_value"] == pytest.approx(truth["logger"], abs=0.02)
    for e in result["policies"][0]["estimates"]:
        if e["estimator"] in ("IPS", "DR", "SNIPS"):
            assert abs(e["value"] - truth["far"]) < 4 * (e["high"] - e["low"]) / (2 * 1.96), e


def test_synth_impressions_refuses_targets_too_large_to_write(tmp_path):
    done = run_cli(
        "datasets",
        "synth",
        "-o",
        tmp_path / "s",
        "--impressions",
        "--items",
        "5000",
        "--events",
        "1000000",
        "--no-track",
    )
    assert done.exit_code == 3 and "GiB" in done.stderr and not (tmp_path / "s").exists()


def test_slate_logs_get_the_slate_estimators(tmp_path):
    world = ImpressionWorld(positions=3)
    log, slate, dists = world.slates(3000, np.random.default_rng(4), targets=("near",))
    pl.DataFrame(
        {
            "item": log.item.astype(str),
            "slot": log.position.astype(str),
            "click": log.reward.astype(int).astype(str),
            "p": log.pscore.astype(str),
            "page": slate.astype(str),
        }
    ).write_csv(tmp_path / "log.csv")
    np.save(tmp_path / "near.npy", dists["near"])
    done = run_cli(
        "ingest",
        tmp_path / "log.csv",
        "--item-col",
        "item",
        "--position-col",
        "slot",
        "--reward-col",
        "click",
        "--propensity-col",
        "p",
        "--slate-col",
        "page",
        "-o",
        tmp_path / "ds",
        "--no-track",
    )
    assert done.exit_code == 0, done.stderr
    result = _ope(tmp_path, tmp_path / "ds", "--policy", tmp_path / "near.npy", "-o", tmp_path / "o")
    found = {e["estimator"]: e for e in result["policies"][0]["estimates"]}
    assert {"IIPS", "RIPS", "SIPS"} <= set(found) and "over 3,000 slates" in result["slates"]
    assert found["IIPS"]["value"] == pytest.approx(found["IPS"]["value"])  # per-position weights: the same sum
    for name in ("IIPS", "RIPS", "SIPS"):
        e = found[name]
        assert abs(e["value"] - world.value["near"]) < 4 * (e["high"] - e["low"]) / (2 * 1.96), e
    assert not found["SIPS"]["selected"]


def test_logs_without_slates_say_the_slate_estimators_are_skipped(logged, tmp_path):
    root, *_ = logged
    result = _ope(root, root / "ds", "--policy", root / "near.npy", "-o", tmp_path / "o")
    assert result["slates"].startswith("slate estimators skipped")
    assert not {"IIPS", "RIPS", "SIPS"} & {e["estimator"] for e in result["policies"][0]["estimates"]}


@pytest.fixture(scope="module")
def with_users(logged, tmp_path_factory):
    """The log ingested with its user ids, and a popular and an ItemKNN model trained on its clicks
    (the same user and item ids)."""
    root, *_ = logged
    home = tmp_path_factory.mktemp("models")
    pl.read_csv(root / "log.csv").filter(pl.col("click") == 1).select("user", "item").write_csv(home / "clicks.csv")
    impressions = ["--position-col", "slot", "--reward-col", "click", "--propensity-col", "p"]
    steps = [
        ("ingest", home / "clicks.csv", "--user-col", "user", "--item-col", "item", "-o", home / "ids"),
        ("split", home / "ids", "--strategy", "random", "-o", home / "sp"),
        ("train", home / "sp", "--model", "popular", "-o", home / "pop"),
        ("train", home / "sp", "--model", "itemknn", "-o", home / "knn"),
        ("ingest", root / "log.csv", "--user-col", "user", "--item-col", "item", *impressions, "-o", home / "imp"),
    ]
    for step in steps:
        done = run_cli(*step, "--no-track")
        assert done.exit_code == 0, (step[0], done.stderr)
    return home


def test_a_trained_model_is_a_target_through_its_lists(logged, with_users, tmp_path):
    """A model directory's target is its `recommend` lists as the epsilon-mixture: the mass sits on
    the item `recommend` lists at each rank for that impression's user."""
    _root, world, *_ = logged
    home = with_users
    result = _ope(tmp_path, home / "imp", "--policy", home / "pop", "-o", tmp_path / "o")
    policy = result["policies"][0]
    assert policy["name"] == "pop" and policy["kind"] == "model"
    dist = np.load(tmp_path / "o" / "policies" / "pop.npy")
    (tmp_path / "who.txt").write_text("u7\n")
    listed = run_cli(
        "recommend",
        home / "pop",
        "--users",
        tmp_path / "who.txt",
        "--k",
        str(world.positions),
        "-o",
        tmp_path / "recs",
        "--no-track",
    )
    assert listed.exit_code == 0, listed.stderr
    recs = pl.read_parquet(tmp_path / "recs" / "recs.parquet").sort("rank")
    row = int(np.flatnonzero(np.array([f"u{i % 500}" for i in range(N)]) == "u7")[0])
    for rank, item in enumerate(recs["item_id"].to_list()):
        assert dist[row, int(item) // 10 - 1, rank] == pytest.approx(0.9 + 0.1 / world.items)


def test_a_model_with_a_temperature_is_a_softmax_of_its_scores(logged, with_users, tmp_path):
    _root, world, *_ = logged
    home = with_users
    result = _ope(tmp_path, home / "imp", "--policy", home / "knn", "--temperature", "0.5", "-o", tmp_path / "o")
    assert "softmax" in result["policies"][0]["note"]
    dist = np.load(tmp_path / "o" / "policies" / "knn.npy")
    import persotool as pt

    model = pt.TrainedModel(home / "knn")
    users = pl.read_parquet(home / "ids" / "users.parquet")
    items = pl.read_parquet(home / "ids" / "items.parquet").sort("item_idx")["item_id"].to_list()
    row = 11  # impression 11's user is u11
    s = model.model.score(np.array([users.filter(pl.col("user_id") == "u11")["user_idx"][0]]))[0] / 0.5
    expected = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    by_log = np.zeros(world.items)
    for k, item in enumerate(items):
        by_log[int(item) // 10 - 1] = expected[k]
    for position in range(world.positions):
        np.testing.assert_allclose(dist[row, :, position], by_log, rtol=1e-5, atol=1e-7)


def test_a_log_without_a_single_click_is_warned(tmp_path):
    pl.DataFrame({"item": ["1", "2", "1", "3"] * 10, "click": ["0"] * 40, "p": ["0.5"] * 40}).write_csv(
        tmp_path / "l.csv"
    )
    assert (
        run_cli(
            "ingest",
            tmp_path / "l.csv",
            "--item-col",
            "item",
            "--reward-col",
            "click",
            "--propensity-col",
            "p",
            "-o",
            tmp_path / "ds",
            "--no-track",
        ).exit_code
        == 0
    )
    target = np.full((40, 3, 1), 1 / 3)
    np.save(tmp_path / "t.npy", target)
    done = run_cli("ope", tmp_path / "ds", "--policy", tmp_path / "t.npy", "-o", tmp_path / "o", "--no-track")
    assert done.exit_code == 0 and "every logged reward is 0" in done.stderr
