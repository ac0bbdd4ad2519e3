"""Every model passes the recommender contract; model-specific behaviour is tested beside it."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from persotool.errors import ModelError
from persotool.kernels.models.base import TrainingContext
from persotool.kernels.models.factorization import ALS, BPR, LightFMModel
from persotool.kernels.models.neighbors import EASE, ItemKNN
from persotool.kernels.models.popularity import MostPopular, RandomModel
from tests.kernels.models.contract import N_ITEMS, N_USERS, RecommenderContract, checkerboard


class TestRandom(RecommenderContract):
    learns = False

    def make(self, seed=0):
        return RandomModel(seed=seed)


class TestMostPopular(RecommenderContract):
    learns = False

    def make(self, seed=0):
        return MostPopular(seed=seed)


class TestItemKNN(RecommenderContract):
    def make(self, seed=0):
        return ItemKNN(neighbors=10, shrinkage=1.0, seed=seed)


class TestEASE(RecommenderContract):
    def make(self, seed=0):
        return EASE(l2=10.0, seed=seed)


class TestALS(RecommenderContract):
    def make(self, seed=0):
        return ALS(factors=4, iterations=20, regularization=0.1, alpha=10.0, seed=seed)


class TestBPR(RecommenderContract):
    def make(self, seed=0):
        return BPR(factors=8, iterations=200, learning_rate=0.05, seed=seed)


class TestLightFM(RecommenderContract):
    def make(self, seed=0):
        return LightFMModel(loss="warp", components=8, epochs=40, learning_rate=0.05, seed=seed)


def test_most_popular_counts_distinct_users_and_recent_window() -> None:
    train = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [5, 0, 1]], dtype=np.float32))
    model = MostPopular().fit(train)
    assert model.score(np.array([0]))[0].tolist() == [3, 1, 1]
    frame = pl.DataFrame(
        {
            "user_idx": [0, 1, 2, 0],
            "item_idx": [0, 0, 2, 1],
            "timestamp": pl.Series(["2020-01-01", "2020-01-02", "2020-03-01", "2020-02-28"]).str.to_datetime(),
        }
    )
    recent = MostPopular(window_days=7).fit(train, context=TrainingContext(interactions=frame))
    ranking = np.argsort(-recent.score(np.array([0]))[0])
    assert ranking[:2].tolist() in ([1, 2], [2, 1]) and ranking[2] == 0


def test_itemknn_similarity_is_shrunk_cosine() -> None:
    x = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=np.float32))
    model = ItemKNN(neighbors=5, shrinkage=1.0).fit(x)
    # items 0 and 1 co-occur twice; |x0| = sqrt(2), |x1| = sqrt(3)
    assert model.similarity_[0, 1] == pytest.approx(2 / (np.sqrt(2) * np.sqrt(3) + 1.0), rel=1e-5)
    assert model.similarity_[0, 0] == 0


def test_ease_matches_its_closed_form() -> None:
    rng = np.random.default_rng(1)
    x = (rng.random((30, 12)) < 0.3).astype(np.float64)
    model = EASE(l2=5.0).fit(sp.csr_matrix(x))
    p = np.linalg.inv(x.T @ x + 5.0 * np.eye(12))
    b = np.eye(12) - p / np.diag(p)
    full = np.zeros((12, 12))
    full[np.ix_(model.active_, model.active_)] = model.weights_
    np.testing.assert_allclose(full, b, atol=1e-5)
    with pytest.raises(ModelError, match="dense"):
        EASE.max_items, old = 5, EASE.max_items
        try:
            EASE().fit(sp.csr_matrix(x))
        finally:
            EASE.max_items = old


def test_lightfm_early_stopping_keeps_the_best_epoch() -> None:
    train, test = checkerboard()
    seen = []

    def valid(model) -> float:
        scores = model.score(np.arange(N_USERS))
        value = float((scores * test.toarray()).sum())
        return value if len(seen) < 3 else -1.0  # gets "worse" from the fourth epoch on

    model = LightFMModel(components=8, epochs=20, patience=2, seed=0).fit(
        train, context=TrainingContext(validate=valid, metric="hits", on_epoch=lambda epoch, m: seen.append(m))
    )
    assert len(seen) == 5  # 3 improving epochs, then patience 2
    assert int(model.best_epoch_) == 2
    assert all("train_loss" in m and "valid_hits" in m for m in seen)
    assert seen[-1]["train_loss"] < np.log(2) + 1e-6 or seen[0]["train_loss"] > 0


def test_lightfm_scores_cold_items_through_features() -> None:
    train, _ = checkerboard()
    train = train.tolil()
    train[:, 0] = 0  # item 0 (even) never seen in training
    parity = sp.csr_matrix((np.ones(N_ITEMS), (np.arange(N_ITEMS), np.arange(N_ITEMS) % 2)), shape=(N_ITEMS, 2))
    model = LightFMModel(components=8, epochs=40, seed=0).fit(train.tocsr(), item_features=parity)
    scores = model.score(np.arange(N_USERS))
    even, odd = scores[0::2, 0].mean(), scores[1::2, 0].mean()
    assert even > odd, "the cold even item should suit even users better"


def test_bad_hyperparameters_are_model_errors() -> None:
    with pytest.raises(ModelError):
        LightFMModel(loss="hinge")
    with pytest.raises(ModelError):
        ItemKNN(neighbors=0)


def test_every_registered_model_has_contract_tests() -> None:
    """A model added to the registry without a contract-test subclass here fails this test."""
    from persotool.kernels.models.registry import MODELS

    covered = set()
    for case in RecommenderContract.__subclasses__():
        covered.add(type(case().make()).name)
    assert covered == set(MODELS), f"models without contract tests: {sorted(set(MODELS) - covered)}"
