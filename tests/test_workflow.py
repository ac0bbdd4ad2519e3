"""split -> train -> evaluate through the CLI on MovieLens, with tracking, gates and outside lists."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from mlflow.tracking import MlflowClient

import persotool as pt
from persotool.errors import UsageError
from persotool.kernels.config import CONFIGS
from tests.conftest import MOVIELENS, run_cli


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wf")
    assert (
        run_cli("ingest", MOVIELENS / "ratings.csv", "--preset", "movielens", "-o", root / "ds", "--no-track").exit_code
        == 0
    )
    result = run_cli(
        "split",
        root / "ds",
        "-o",
        root / "split",
        "--strategy",
        "leave-last",
        "--leave-last",
        "10",
        "--valid",
        "--min-item-interactions",
        "5",
        "--no-track",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    return root / "split"


def test_train_evaluate_and_track(split_dir: Path, tmp_path: Path, scratch_cwd: Path) -> None:
    model = tmp_path / "lightfm"
    trained = run_cli(
        "train",
        split_dir,
        "--model",
        "lightfm",
        "--set",
        "epochs=6",
        "--set",
        "components=16",
        "-o",
        model,
        "--experiment",
        "wf",
        "--json",
    )
    assert trained.exit_code == 0, trained.stderr
    info = json.loads(trained.stdout)
    assert info["epochs"] == 6 and info["item_features"] == 20  # MovieLens genres
    client = MlflowClient(f"sqlite:///{scratch_cwd / 'mlflow.db'}")
    run = client.get_run(info["mlflow_run_id"])
    assert run.data.params["params.components"] == "16"
    history = client.get_metric_history(run.info.run_id, "valid_ndcg_at_10")
    assert [m.step for m in history] == list(range(6))
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 6
    assert {a.path for a in client.list_artifacts(run.info.run_id, "model")} >= {"model/arrays.npz", "model/model.json"}

    evaluated = run_cli("evaluate", model, "--k", "5,10", "--json", "--no-track", "-o", tmp_path / "ev")
    assert evaluated.exit_code == 0, evaluated.stderr
    flat = json.loads(evaluated.stdout)
    for key in (
        "precision@5",
        "recall@10",
        "ndcg@10",
        "map@10",
        "mrr@10",
        "hit_rate@10",
        "auc",
        "coverage@10",
        "gini@10",
        "novelty@10",
        "diversity@10",
        "personalization@10",
        "popularity@10",
    ):
        assert key in flat, key
    assert 0.5 < flat["auc"] <= 1 and flat["users_evaluated"] == 671
    per_user = pl.read_parquet(tmp_path / "ev" / "per_user.parquet")
    assert per_user["ndcg@10"].mean() == pytest.approx(flat["ndcg@10"])
    segments = pl.read_parquet(tmp_path / "ev" / "segments.parquet")
    assert set(segments.columns) == {"segment", "metric", "users", "mean", "ci_low", "ci_high", "note"}
    row = segments.filter(pl.col("metric") == "ndcg@10").row(0, named=True)
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]

    # the same gate from Python: the library raises, the command maps it to exit 1
    evaluation = pt.Evaluation(tmp_path / "ev")
    assert evaluation.require({"ndcg@10": flat["ndcg@10"] - 1e-9}) is evaluation
    with pytest.raises(pt.QualityGateFailed, match=r"ndcg@10 = 0\.\d+ < 0\.99"):
        evaluation.require({"ndcg@10": 0.99})
    with pytest.raises(pt.QualityGateFailed, match="gini@10"):
        evaluation.require(ceilings={"gini@10": 0.0})
    with pytest.raises(UsageError, match="does not measure 'foo@10'"):
        evaluation.require({"foo@10": 0.1})
    gate = run_cli("evaluate", model, "--k", "10", "--metrics", "ndcg", "--min", "ndcg@10=0.99", "--no-track")
    assert gate.exit_code == 1 and "gate failed: ndcg@10" in gate.stderr
    ok = run_cli("evaluate", model, "--k", "10", "--metrics", "ndcg", "--min", "ndcg@10=0.001", "--no-track")
    assert ok.exit_code == 0


def test_personalised_models_beat_popularity(split_dir: Path, tmp_path: Path) -> None:
    scores = {}
    for name in ("popular", "ease"):
        assert run_cli("train", split_dir, "--model", name, "-o", tmp_path / name, "--no-track").exit_code == 0
        result = run_cli("evaluate", tmp_path / name, "--metrics", "ndcg", "--k", "10", "--json", "--no-track")
        scores[name] = json.loads(result.stdout)["ndcg@10"]
    assert scores["ease"] > 1.15 * scores["popular"]


def test_evaluate_outside_lists(tmp_path: Path) -> None:
    recs = tmp_path / "recs.csv"
    truth = tmp_path / "truth.csv"
    recs.write_text("user_id,item_id,rank\na,x,1\na,y,2\nb,z,1\nb,x,2\n")
    truth.write_text("user_id,item_id,relevance\na,y,1\nb,q,1\nb,x,0\n")
    result = run_cli(
        "evaluate",
        "--recommendations",
        recs,
        "--truth",
        truth,
        "--k",
        "2",
        "--metrics",
        "precision,recall,ndcg,hit_rate",
        "--json",
        "--no-track",
    )
    assert result.exit_code == 0, result.stderr
    flat = json.loads(result.stdout)
    # a: hit at rank 2 of 1 relevant; b: its only relevant item (q) is not recommended
    assert flat["precision@2"] == pytest.approx((0.5 + 0) / 2)
    assert flat["recall@2"] == pytest.approx(0.5)
    assert flat["hit_rate@2"] == pytest.approx(0.5)
    assert flat["ndcg@2"] == pytest.approx((1 / 1.5849625007211563) / 2)
    auc = run_cli("evaluate", "--recommendations", recs, "--truth", truth, "--metrics", "auc", "--no-track")
    assert auc.exit_code == 3 and "auc needs every item's score" in auc.stderr


def test_train_rejects_unknown_model_and_parameter(split_dir: Path, tmp_path: Path) -> None:
    bad = run_cli("train", split_dir, "--model", "deepfm", "-o", tmp_path / "m", "--no-track")
    assert bad.exit_code == 3 and "unknown model 'deepfm'" in bad.stderr
    bad = run_cli("train", split_dir, "--model", "ease", "--set", "lambda=3", "-o", tmp_path / "m", "--no-track")
    assert bad.exit_code == 3 and "ease has no parameter 'lambda'" in bad.stderr
    assert not (tmp_path / "m").exists()


BENCHMARK_TOML = """
name = "wf-bench"
baseline = "pop"
k = [5, 10]
metrics = ["ndcg", "recall", "auc"]

[models.pop]
model = "popular"

[models.ease]
config = "{models}/ease.toml"

[models.knn]
model = "itemknn"
params = {{ neighbors = 50 }}

[models.lfm]
config = "{models}/lightfm.toml"
params = {{ epochs = 3, components = 8, patience = 2 }}
"""


def test_benchmark_tables_tests_models_and_nested_runs(split_dir: Path, tmp_path: Path, scratch_cwd: Path) -> None:
    config = tmp_path / "bench.toml"
    config.write_text(BENCHMARK_TOML.format(models=CONFIGS / "models"))
    out = tmp_path / "bench"
    result = run_cli("benchmark", split_dir, "--config", config, "-o", out, "--experiment", "wf-bench", "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert [r["model"] for r in payload["results"]] == ["pop", "ease", "knn", "lfm"]
    assert len(payload["tests"]) == 3 * 5  # three challengers x (ndcg@5, ndcg@10, recall@5, recall@10, auc)
    for name in ("results.csv", "results.md", "tests.csv", "per_user.parquet", "comparison.png", "manifest.json"):
        assert (out / name).is_file(), name
    assert payload["results"][2]["model"] == "knn"

    # EASE clearly beats popularity on this split: both tests, after Holm over the whole family
    ease = next(t for t in payload["tests"] if t["model"] == "ease" and t["metric"] == "ndcg@10")
    assert ease["difference"] > 0 and ease["significant"] and ease["t_p_holm"] < 0.05

    # the saved model reproduces its row when evaluated on its own
    again = run_cli("evaluate", out / "models" / "ease", "--k", "10", "--metrics", "ndcg", "--json", "--no-track")
    assert json.loads(again.stdout)["ndcg@10"] == pytest.approx(payload["results"][1]["ndcg@10"])
    per_user = pl.read_parquet(out / "per_user.parquet")
    assert per_user.group_by("model").len()["len"].to_list() == [payload["users_evaluated"]] * 4

    client = MlflowClient(f"sqlite:///{scratch_cwd / 'mlflow.db'}")
    parent = client.get_run(payload["mlflow_run_id"])
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "benchmark")} >= {
        "benchmark/comparison.png",
        "benchmark/results.md",
        "benchmark/tests.csv",
    }
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    by_label = {run.data.params["label"]: run for run in children}
    assert set(by_label) == {"pop", "ease", "knn", "lfm"}
    assert {label: run.info.run_name for label, run in by_label.items()} == {
        label: f"{label} · benchmark" for label in by_label
    }
    assert parent.info.run_name == "wf-bench · benchmark"
    best = max(payload["results"], key=lambda row: row["ndcg@10"])
    assert parent.data.tags["best_ndcg_at_10.model"] == best["model"]
    assert parent.data.metrics["best_ndcg_at_10"] == pytest.approx(best["ndcg@10"])
    (dataset_input,) = parent.inputs.dataset_inputs
    assert dataset_input.dataset.digest == json.loads((out / "manifest.json").read_text())["dataset"]["digest"]
    assert parent.info.end_time - parent.info.start_time >= 1000 * sum(r["fit_seconds"] for r in payload["results"])
    assert by_label["ease"].data.metrics["ndcg_at_10"] == pytest.approx(payload["results"][1]["ndcg@10"])
    assert len(client.get_metric_history(by_label["lfm"].info.run_id, "train_loss")) == 3
    assert by_label["knn"].data.params["params.neighbors"] == "50"


def test_benchmark_rejects_bad_configs_before_writing(split_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "bench.toml"
    config.write_text('baseline = "nope"\n[models.a]\nmodel = "popular"\n[models.b]\nmodel = "random"\n')
    out = tmp_path / "bench"
    bad = run_cli("benchmark", split_dir, "--config", config, "-o", out, "--no-track")
    assert bad.exit_code == 3 and "baseline 'nope' is not one of the models" in bad.stderr
    config.write_text('baseline = "a"\n[models.a]\nmodel = "popular"\n[models.b]\nmodel = "ease"\nparams = {l3 = 1}\n')
    bad = run_cli("benchmark", split_dir, "--config", config, "-o", out, "--no-track")
    assert bad.exit_code == 3 and "ease has no parameter 'l3'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".bench*"))
