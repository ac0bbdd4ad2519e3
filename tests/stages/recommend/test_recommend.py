"""`recommend`: real ids in and out, the model's own lists, the documented fallback for users the
model cannot know, and the layout `evaluate --recommendations` reads (same metrics as evaluating
the model itself)."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import persotool as pt
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("recommend")
    log = pt.synth(out=root / "synth", users=300, items=120, events=9_000, days=40, seed=4)
    ds = pt.ingest(log.log, out=root / "ds", schema=log.schema)
    sp = pt.split(ds, out=root / "split", strategy="temporal", cutoff="0.7")
    models = {name: pt.train(sp, out=root / name, model=name) for name in ("popular", "itemknn")}
    return {"root": root, "dataset": ds.path, "split": sp.path, **{k: m.path for k, m in models.items()}}


def test_every_user_gets_the_models_own_top_k_by_real_ids(trained) -> None:
    made = pt.recommend(trained["itemknn"], out=trained["root"] / "recs", all_users=True, k=7)
    recs = made.recs
    dataset = pt.Dataset(trained["dataset"])
    users = dataset.users.sort("user_idx")
    assert made.manifest.counts["users"] == len(users) and len(recs) == 7 * len(users)
    assert set(recs["user_id"]) == set(users["user_id"])  # real ids, never indices
    assert set(recs["item_id"]) <= set(dataset.items["item_id"])
    assert recs.group_by("user_id").agg(pl.col("rank").sort())["rank"].to_list()[0] == list(range(1, 8))
    # the lists are exactly the model's own, mapped to ids
    model = pt.TrainedModel(trained["itemknn"])
    items, scores = model.recommend(np.arange(len(users)), 7)
    ids = dataset.items.sort("item_idx")["item_id"]
    first = users["user_id"][5]
    mine = recs.filter(pl.col("user_id") == first).sort("rank")
    assert mine["item_id"].to_list() == ids.gather(items[5]).to_list()
    assert mine["score"].to_numpy() == pytest.approx(scores[5])
    # nothing the user had in training comes back
    train = pt.Split(trained["split"]).train
    seen = set(zip(train["user_idx"].to_list(), train["item_idx"].to_list(), strict=True))
    id_to_idx = dict(zip(dataset.items["item_id"], dataset.items["item_idx"], strict=True))
    user_to_idx = dict(zip(users["user_id"], users["user_idx"], strict=True))
    assert not any((user_to_idx[u], id_to_idx[i]) in seen for u, i in recs.select("user_id", "item_id").iter_rows())


def test_users_the_model_cannot_know_get_the_popularity_ranking_marked_as_such(trained) -> None:
    split = pt.Split(trained["split"])
    users = pt.Dataset(trained["dataset"]).users
    trained_on = set(split.train["user_idx"].to_list())
    cold = users.filter(~pl.col("user_idx").is_in(list(trained_on)))["user_id"][0]  # in the dataset, not in training
    warm = users.filter(pl.col("user_idx").is_in(list(trained_on)))["user_id"][0]
    file = trained["root"] / "users.txt"
    file.write_text(f"{warm}\n{cold}\nnobody-42\n{warm}\n")
    made = pt.recommend(trained["itemknn"], out=trained["root"] / "some", users=file, k=5)
    recs = made.recs
    assert made.manifest.counts == {
        "users": 3,
        "rows": 15,
        "k": 5,
        "model": 1,
        "no_training_history": 1,
        "unknown_user": 1,
    }
    source = dict(recs.select("user_id", "source").unique().iter_rows())
    assert source == {warm: "model", cold: "fallback: no training history", "nobody-42": "fallback: unknown user"}
    popular = pt.TrainedModel(trained["popular"]).model.popularity_
    order = (
        pt.Dataset(trained["dataset"]).items.sort("item_idx")["item_id"].gather(np.argsort(-popular, kind="stable")[:5])
    )
    assert recs.filter(pl.col("user_id") == "nobody-42").sort("rank")["item_id"].to_list() == order.to_list()
    assert any("not in the model's dataset" in note for note in made.notes())


def test_evaluating_the_lists_gives_the_models_own_metrics(trained, tmp_path: Path) -> None:
    """recs.parquet is the layout `evaluate --recommendations` reads: the same lists, the same NDCG."""
    made = pt.recommend(trained["itemknn"], out=tmp_path / "recs", all_users=True, k=10)
    dataset = pt.Dataset(trained["dataset"])
    test = pt.Split(trained["split"]).test
    truth = (
        test.join(dataset.users.select("user_idx", "user_id"), on="user_idx")
        .join(dataset.items.select("item_idx", "item_id"), on="item_idx")
        .select("user_id", "item_id", relevance=pl.col("relevant").cast(pl.Int8))
    )
    truth.write_csv(tmp_path / "truth.csv")
    lists = pt.evaluate(None, recommendations=made.path / "recs.parquet", truth=tmp_path / "truth.csv", k=[10])
    model = pt.evaluate(trained["itemknn"], k=[10])
    for metric in ("ndcg@10", "recall@10", "precision@10", "hit_rate@10"):
        assert lists.summary[metric] == pytest.approx(model.summary[metric], abs=1e-12), metric
    assert lists.summary["users_evaluated"] == model.summary["users_evaluated"]


def test_the_command_and_its_refusals(trained, tmp_path: Path) -> None:
    made = run_cli("recommend", trained["popular"], "--all", "--k", "3", "-o", tmp_path / "r", "--json", "--no-track")
    assert made.exit_code == 0, made.stderr
    payload = json.loads(made.stdout)
    assert payload["k"] == 3 and payload["rows"] == 3 * payload["users"]
    both = run_cli("recommend", trained["popular"], "--all", "--users", tmp_path / "x.txt", "-o", tmp_path / "b")
    assert both.exit_code == 3 and "not both" in both.stderr
    (tmp_path / "empty.csv").write_text("name\nx\n")
    bad = run_cli(
        "recommend", trained["popular"], "--users", tmp_path / "empty.csv", "-o", tmp_path / "c", "--no-track"
    )
    assert bad.exit_code == 4 and "needs a user_id column" in bad.stderr
    gate = run_cli(
        "recommend",
        trained["popular"],
        "--all",
        "--k",
        "3",
        "-o",
        tmp_path / "g",
        "--no-track",
        "--max",
        "unknown_user=-1",
    )
    assert gate.exit_code == 1 and "gate failed: unknown_user" in gate.stderr
