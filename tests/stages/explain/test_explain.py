"""`persotool explain`: each model's reasons add up to the score they explain, and they are
faithful by an ablation the model supports: for itemknn and ease, removing the top reason item
from the history lowers the item's score by exactly its contribution; for als, refolding the
user's factors without it (ALS's closed-form user solve) lowers the refolded score; for bpr and
lightfm the history terms, the item bias and the remainder sum to the score; popular gives the
rank. Unknown users are refused in one line."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import persotool as pt
from persotool.kernels.models.base import interaction_matrix
from persotool.kernels.models.explain import als_user_solve, explain
from persotool.kernels.models.serving import id_maps
from tests.conftest import run_cli

PARAMS = {
    "ease": {"l2": 50},
    "itemknn": {"neighbors": 30},
    "als": {"factors": 8, "iterations": 5},
    "bpr": {"factors": 8, "iterations": 20},
    "lightfm": {"components": 8, "epochs": 3},
    "popular": {},
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    log = pt.synth(out=root / "synth", users=300, items=120, events=9000, days=30, seed=4)
    ds = pt.ingest(log.log, out=root / "ds", schema=log.schema)
    sp = pt.split(ds, out=root / "split", strategy="leave-last", leave_last=2)
    return {name: pt.train(sp, out=root / name, model=name, params=params) for name, params in PARAMS.items()}


def _user_and_items(trained, k=3):
    model = trained.model
    user = int(np.flatnonzero(model.known_users_)[0])
    items, _ = model.recommend(np.array([user]), k)
    return model, user, items[0]


@pytest.mark.parametrize("name", ["itemknn", "ease"])
def test_neighbour_reasons_sum_to_the_score_and_removing_the_top_one_lowers_it(models, name) -> None:
    model, user, items = _user_and_items(models[name])
    for e in explain(model, user, items, top=1000):
        assert e.explained == pytest.approx(e.score, rel=1e-4, abs=1e-6)
        top = max(e.reasons, key=lambda r: r["contribution"])
        ablated = copy.copy(model)
        history = model.history_.tolil(copy=True)
        history[user, top["item"]] = 0
        ablated.history_ = history.tocsr()
        after = ablated.score(np.array([user]))[0][e.item]
        assert after == pytest.approx(e.score - top["contribution"], rel=1e-4, abs=1e-6)
        assert after < e.score


def test_als_reasons_refold_the_user_and_removing_the_top_one_lowers_it(models) -> None:
    trained = models["als"]
    model, user, items = _user_and_items(trained)
    split = trained.split
    history = interaction_matrix(split.train, split.n_users, split.n_items)
    row = history[user]
    y = model.item_factors_.astype(np.float64)
    for e in explain(model, user, items, history=history, top=1000):
        inverse, c = als_user_solve(model, row.indices, row.data.astype(np.float64))
        refolded = inverse @ (c[:, None] * y[row.indices]).sum(axis=0)
        assert e.explained == pytest.approx(float(refolded @ y[e.item]), rel=1e-6)
        assert np.sign(e.explained) == np.sign(e.score)  # the refold agrees with the stored factors' verdict
        top = max(e.reasons, key=lambda r: r["contribution"])
        keep = row.indices != top["item"]
        inverse, c = als_user_solve(model, row.indices[keep], row.data[keep].astype(np.float64))
        without = inverse @ (c[:, None] * y[row.indices[keep]]).sum(axis=0)
        assert float(without @ y[e.item]) < e.explained


@pytest.mark.parametrize("name", ["bpr", "lightfm"])
def test_factor_reasons_bias_and_remainder_sum_to_the_score(models, name) -> None:
    model, user, items = _user_and_items(models[name])
    for e in explain(model, user, items, top=1000):
        assert sum(r["contribution"] for r in e.reasons) == pytest.approx(e.score, rel=1e-5, abs=1e-6)
        history = [r for r in e.reasons if r["kind"] == "history item"]
        assert history and all(r["item"] in model.seen_[user].indices for r in history)


def test_popular_gives_the_rank(models) -> None:
    model, user, items = _user_and_items(models["popular"])
    first = explain(model, user, items)[0]
    assert first.reasons[0]["kind"].startswith("popularity: rank ") and first.explained == first.score


def test_the_command_explains_in_json_and_refuses_an_unknown_user(models) -> None:
    path = models["ease"].path
    _, index, _ = _user_and_items(models["ease"])
    user_ids, _ = id_maps(models["ease"].split.dataset_path)
    user = str(user_ids.filter(user_ids["user_idx"] == index)["user_id"][0])
    done = run_cli("explain", path, "--user", user, "--k", "3", "--json", "--no-track")
    assert done.exit_code == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["user"] == user and len(found["items"]) == 3
    for item in found["items"]:
        assert sum(r["contribution"] for r in item["reasons"]) == pytest.approx(item["score"], rel=1e-4, abs=1e-6)
    table = run_cli("explain", path, "--user", user, "--no-track")
    assert "Why ease recommends these" in table.stdout
    missing = run_cli("explain", path, "--user", "nobody", "--no-track")
    assert missing.exit_code != 0 and "user 'nobody' is not in the model's dataset" in missing.stderr
    assert "Traceback" not in missing.stderr
