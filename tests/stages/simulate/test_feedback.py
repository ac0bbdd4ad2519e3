"""The feedback loop: retraining on an arm's own simulated engagements, moving state onto new
candidate lists, and the homogenization measure (mean Jaccard of consumed sets)."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from persotool.kernels.simulation import build, engine, feedback
from persotool.kernels.simulation.policies import Candidates
from persotool.stages.simulate import retrain
from persotool.stages.simulate.analysis import analyse
from tests.stages.simulate.conftest import config, simulate


def test_mean_jaccard_by_hand() -> None:
    # user 0 {1, 2}, user 1 {2, 3}, user 2 nothing, user 3 {1, 2} (a repeated pair counts once)
    users = np.array([0, 0, 1, 1, 3, 3, 3])
    items = np.array([1, 2, 2, 3, 1, 2, 2])
    # pairs among users who consumed something: (0,1) 1/3, (0,3) 1, (1,3) 1/3
    assert feedback.mean_jaccard(users, items, np.arange(4), 5) == pytest.approx(5 / 9)
    assert feedback.mean_jaccard(users, items, np.array([0, 1]), 5) == pytest.approx(1 / 3)
    assert np.isnan(feedback.mean_jaccard(users, items, np.array([0, 2]), 5))


def test_mean_jaccard_matches_python_sets() -> None:
    rng = np.random.default_rng(5)
    users, items = rng.integers(0, 40, 300), rng.integers(0, 25, 300)
    sample = np.sort(rng.choice(40, 30, replace=False))
    sets = {u: set(items[users == u].tolist()) for u in sample.tolist()}
    nonempty = [s for s in sets.values() if s]
    expected = np.mean([len(a & b) / len(a | b) for a, b in combinations(nonempty, 2)])
    assert feedback.mean_jaccard(users, items, sample, 25) == pytest.approx(expected)


@pytest.fixture(scope="module")
def built(dataset: Path):
    cfg = config([{"name": "p", "policy": "popular", "share": 1}, {"name": "q", "policy": "popular", "share": 1}])
    return build.build(dataset, cfg.model_copy(update={"world": cfg.world.model_copy(update={"population": 1500})}))


def test_training_matrix_has_a_row_per_logged_user(built) -> None:
    clones = np.flatnonzero(built.source_user == built.source_user[0])  # simulated users drawn from one
    assert len(clones) >= 2
    logged = set(built.history[built.source_user[0]].indices.tolist())
    fresh = [i for i in range(built.n_items) if i not in logged][:3]
    users = np.array([clones[0], clones[0], clones[1]])
    items = np.array(fresh)
    only = feedback.training_matrix(built, users, items, with_logs=False)
    assert only.shape == built.history.shape and only.nnz == 3
    assert sorted(only[built.source_user[0]].indices.tolist()) == sorted(fresh)
    both = feedback.training_matrix(built, users, items, with_logs=True)
    assert both.nnz == built.history.nnz + 3 and set(both.data.tolist()) == {1.0}
    assert set(both[built.source_user[0]].indices.tolist()) == logged | set(fresh)


def test_refitted_popularity_counts_each_logged_user_once(built) -> None:
    arm = config([{"name": "p", "policy": "popular", "share": 1}, {"name": "q", "policy": "random", "share": 1}])
    matrix = feedback.training_matrix(built, np.array([0, 0, 1, 2]), np.array([4, 4, 4, 7]), with_logs=False)
    score, _ = retrain.refit(arm.arms[0], built, matrix, arm.feedback, None)
    scores = score(np.array([0, 5]))
    expected = np.zeros(built.n_items, dtype=np.float32)
    for item in (4, 7):
        expected[item] = len({built.source_user[u] for u, i in ((0, 4), (1, 4), (2, 7)) if i == item})
    assert np.array_equal(scores[0], expected) and np.array_equal(scores[1], expected)


def test_relineup_keeps_what_was_consumed_and_moves_exposure(built) -> None:
    old = Candidates(np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.int32), np.zeros((2, 4), dtype=np.float32))
    state = engine.ArmState.start(old, built, days=2)
    state.consumed[0, 1] = state.consumed[1, 3] = True  # user 0 consumed item 2, user 1 item 8
    state.exposure[0] = [3, 1, 0, 2]
    state.exposure[1] = [0, 0, 4, 1]
    new = Candidates(np.array([[4, 9, 1, -1], [7, 5, 10, 11]], dtype=np.int32), np.ones((2, 4), dtype=np.float32))
    state.relineup(new, built.n_items)
    assert state.exposure.tolist() == [[2, 0, 3, 0], [4, 0, 0, 0]]
    assert not state.consumed.any() and state.items is new.items
    users, items = state.consumed_pairs()
    assert sorted(zip(users.tolist(), items.tolist(), strict=True)) == [(0, 2), (1, 8)]
    state.consumed[1, 0] = True
    users, items = state.consumed_pairs(np.array([1]))
    assert sorted(zip(users.tolist(), items.tolist(), strict=True)) == [(1, 7), (1, 8)]


@pytest.fixture(scope="module")
def looped(dataset: Path):
    cfg = config(
        [
            {"name": "static", "policy": "popular", "share": 1, "retrain": False},
            {"name": "loop", "policy": "popular", "share": 1},
            {"name": "twin", "policy": "popular", "share": 1},
        ],
        **{"world.population": 1500, "days": 10, "pre_days": 3, "feedback.every": 3, "feedback.with_logs": False},
    )
    return (cfg, *simulate(dataset, cfg))


def test_feedback_arms_retrain_on_schedule_and_diverge_only_after(looped) -> None:
    cfg, built, sim = looped
    static, loop, twin = sim.arms["static"], sim.arms["loop"], sim.arms["twin"]
    assert static.retrained == [] and loop.retrained == twin.retrained == [3, 6, 9]
    # the same lineup and the same random numbers until the first retrain, then a different lineup
    assert np.array_equal(static.daily_engagements[:, :3], loop.daily_engagements[:, :3])
    assert not np.array_equal(static.items, loop.items)
    assert not np.array_equal(static.daily_engagements[:, 3:], loop.daily_engagements[:, 3:])
    # retraining is deterministic: two identical retraining arms stay identical
    assert np.array_equal(loop.engagements, twin.engagements) and np.array_equal(loop.items, twin.items)
    result = analyse(sim, built, cfg, light=True)
    effects = {arm: result.results.filter(result.results["arm"] == arm)["true_effect"] for arm in ("loop", "twin")}
    assert effects["loop"].equals(effects["twin"]) and (effects["loop"] != 0).any()
    assert result.homogenization["loop"]["retrained_on_days"] == [3, 6, 9]


def test_retrained_lineups_never_serve_consumed_or_logged_items(looped) -> None:
    _cfg, built, sim = looped
    pre_users, pre_items = sim.pre.consumed_pairs()
    pre = set((pre_users.astype(np.int64) * built.n_items + pre_items).tolist())
    for name in ("loop", "static"):
        users, items = sim.arms[name].consumed_pairs()
        pairs = users.astype(np.int64) * built.n_items + items
        assert len(np.unique(pairs)) == len(pairs) > 0  # never consumed twice, across lineups
        assert not pre & set(pairs.tolist())  # nor what the pre-period consumed
        assert not np.asarray(built.history[built.source_user[users], items]).any()


def test_homogenization_is_recorded_every_day(looped) -> None:
    cfg, built, sim = looped
    sample = feedback.sample_users(built, cfg.feedback.homogenization_users, cfg.seed)
    for state in sim.arms.values():
        assert len(state.per_day["jaccard"]) == cfg.days
        users, items = state.consumed_pairs(sample)
        assert state.per_day["jaccard"][-1] == pytest.approx(feedback.mean_jaccard(users, items, sample, built.n_items))
        assert 0 < state.per_day["jaccard"][-1] < 1


def test_model_arms_retrain_with_their_own_hyperparameters(dataset: Path, built, tmp_path: Path) -> None:
    import json

    from tests.conftest import run_cli

    split = tmp_path / "split"
    assert run_cli("split", dataset, "-o", split, "--strategy", "leave-last", "--no-track").exit_code == 0
    model = tmp_path / "lightfm"
    trained = run_cli(
        "train", split, "--model", "lightfm", "--set", "epochs=4", "--set", "components=8", "-o", model, "--no-track"
    )
    assert trained.exit_code == 0, trained.stderr
    kept = json.loads((model / "manifest.json").read_text())["epochs_kept"]
    assert 1 <= kept <= 4
    cfg = config(
        [
            {"name": "lightfm", "policy": "model", "model": str(model), "share": 1},
            {"name": "r", "policy": "random", "share": 1},
        ]
    )
    users, items = np.array([0, 1, 2]), np.array([3, 4, 5])
    matrix = feedback.training_matrix(built, users, items, with_logs=True)
    score, info = retrain.refit(cfg.arms[0], built, matrix, cfg.feedback, dataset)
    assert info == {"epochs": kept}  # no validation inside the simulation: the epochs training kept
    clones = np.flatnonzero(built.source_user == built.source_user[0])[:2]
    scores = score(clones)
    assert scores.shape == (2, built.n_items) and np.array_equal(scores[0], scores[1])  # known by their logged user
    _, info = retrain.refit(cfg.arms[0], built, matrix, cfg.feedback.model_copy(update={"epochs": 2}), dataset)
    assert info == {"epochs": 2}


def test_slate_jaccard_by_hand() -> None:
    a = np.array([[1, 2, 3], [4, 5, -1], [-1, -1, -1]])
    b = np.array([[3, 2, 9], [6, 7, 8], [-1, -1, -1]])
    assert engine.slate_jaccard(a, b).tolist() == [0.5, 0.0, 1.0]  # {2,3} of {1,2,3,9}; nothing shared; both empty
    items = np.array([[7, 8, 9, -1]])
    consumed = np.array([[True, False, False, False]])
    assert engine.next_slates(items, consumed, 2).tolist() == [[8, 9]]


def test_each_retrain_records_how_much_the_next_slates_changed(looped) -> None:
    _cfg, _built, sim = looped
    loop, static = sim.arms["loop"], sim.arms["static"]
    assert [row["day"] for row in loop.stability] == [3, 6, 9] and static.stability == []
    for row in loop.stability:
        assert 0 <= row["jaccard"] <= 1 and 0 <= row["changed"] <= 1
    # retraining on the arm's own engagements only (no logs) moves the lists: not every slate survives
    assert loop.stability[0]["jaccard"] < 1
    assert sim.arms["twin"].stability == loop.stability  # deterministic
