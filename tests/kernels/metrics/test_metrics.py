"""Metrics: hand-computed cases, properties, and agreement with scikit-learn on random cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score, roc_auc_score

from persotool.errors import ConfigError
from persotool.kernels.metrics import definitions as m


def test_hand_computed_single_user() -> None:
    # ranks 1..5: hit, miss, hit, miss, miss; 3 relevant items in total
    hits = np.array([[1, 0, 1, 0, 0]], dtype=bool)
    n = np.array([3])
    assert m.precision(hits, n, 5)[0] == pytest.approx(2 / 5)
    assert m.recall(hits, n, 5)[0] == pytest.approx(2 / 3)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m.ndcg(hits, n, 5)[0] == pytest.approx(dcg / idcg)
    assert m.average_precision(hits, n, 5)[0] == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert m.reciprocal_rank(hits, n, 5)[0] == 1.0
    assert m.hit_rate(hits, n, 5)[0] == 1.0
    # at k=2 only the first hit counts; IDCG and the MAP denominator use min(k, |relevant|) = 2
    assert m.ndcg(hits, n, 2)[0] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert m.average_precision(hits, n, 2)[0] == pytest.approx(1 / 2)
    assert m.recall(hits, n, 2)[0] == pytest.approx(1 / 3)


def test_first_hit_late_and_no_hit() -> None:
    hits = np.array([[0, 0, 0, 1], [0, 0, 0, 0]], dtype=bool)
    n = np.array([1, 2])
    assert m.reciprocal_rank(hits, n, 4).tolist() == [0.25, 0.0]
    assert m.hit_rate(hits, n, 3).tolist() == [0.0, 0.0]
    assert m.ndcg(hits, n, 4)[0] == pytest.approx(1 / math.log2(5))


def test_auc_hand_computed_with_ties_and_exclusions() -> None:
    # items 0..4; item 4 excluded (-inf); relevant: 0 and 2
    scores = np.array([[0.9, 0.5, 0.5, 0.1, -np.inf]])
    relevant = np.array([[0, 2]])
    # negatives 1 (0.5) and 3 (0.1); pairs: (0,1) ok, (0,3) ok, (2,1) tie=0.5, (2,3) ok -> 3.5/4
    assert m.auc_from_scores(scores, relevant)[0] == pytest.approx(3.5 / 4)


@pytest.mark.parametrize("bad", ["ndcg", "ndcg@0", "auc@5", "foo@3", "ndcg@x"])
def test_metric_names_are_validated(bad: str) -> None:
    with pytest.raises(ConfigError):
        m.parse(bad)


def test_invalid_inputs_raise_not_assert() -> None:
    with pytest.raises(ValueError):
        m.ndcg(np.zeros((2, 3), dtype=bool), np.array([1, 0]), 3)


rankings = st.integers(min_value=5, max_value=30).flatmap(
    lambda n: st.tuples(st.just(n), st.permutations(range(n)), st.sets(st.integers(0, n - 1), min_size=1))
)


@settings(max_examples=80, deadline=None)
@given(rankings, st.integers(1, 10))
def test_properties(case, k) -> None:
    _n, order, relevant = case
    order = np.array(order)
    rel = np.isin(order, list(relevant))
    hits, nrel = rel[None, :], np.array([len(relevant)])
    for name, fn in m.RANKED_FUNCTIONS.items():
        value = fn(hits, nrel, k)[0]
        assert 0.0 <= value <= 1.0 + 1e-12, name
    perfect = np.sort(rel)[::-1][None, :]
    for name in ("ndcg", "map", "mrr", "hit_rate"):
        assert m.RANKED_FUNCTIONS[name](perfect, nrel, k)[0] == pytest.approx(1.0), name
    assert m.recall(perfect, nrel, k)[0] == pytest.approx(min(k, len(relevant)) / len(relevant))
    # reordering the non-relevant items among themselves changes nothing
    shuffled = order.copy()
    negatives = np.flatnonzero(~rel)
    shuffled[negatives] = np.random.default_rng(k).permutation(order[negatives])
    again = np.isin(shuffled, list(relevant))[None, :]
    for name, fn in m.RANKED_FUNCTIONS.items():
        assert fn(again, nrel, k)[0] == pytest.approx(fn(hits, nrel, k)[0]), name


def test_agrees_with_scikit_learn_on_random_cases() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(5, 40))
        scores = rng.normal(size=n)
        relevant = rng.random(n) < rng.uniform(0.05, 0.5)
        if relevant.sum() in (0, n):
            continue
        k = int(rng.integers(1, n + 1))
        order = np.argsort(-scores)
        hits = relevant[order][None, :]
        ours = m.ndcg(hits, np.array([relevant.sum()]), k)[0]
        assert ours == pytest.approx(ndcg_score(relevant[None, :].astype(float), scores[None, :], k=k))
        auc = m.auc_from_scores(scores[None, :], np.flatnonzero(relevant)[None, :])[0]
        assert auc == pytest.approx(roc_auc_score(relevant, scores))


def test_batched_auc_with_ties_exclusions_and_padding_agrees_with_scikit_learn() -> None:
    # many users at once, scores rounded so ties are common, some items excluded (-inf), relevant
    # lists of different lengths padded with -1: every row must equal scikit-learn on its candidates
    rng = np.random.default_rng(4)
    users, n = 64, 30
    scores = np.round(rng.normal(size=(users, n)), 1).astype(np.float32)
    excluded = rng.random((users, n)) < 0.2
    scores[excluded] = -np.inf
    relevant = np.full((users, 6), -1)
    for u in range(users):
        candidates = np.flatnonzero(~excluded[u])
        chosen = rng.choice(candidates, size=int(rng.integers(1, 7)), replace=False)
        relevant[u, : len(chosen)] = chosen
    ours = m.auc_from_scores(scores.copy(), relevant)
    for u in range(users):
        keep = ~excluded[u]
        labels = np.isin(np.arange(n), relevant[u][relevant[u] >= 0])[keep]
        assert ours[u] == pytest.approx(roc_auc_score(labels, scores[u][keep]))
    assert np.array_equal(m.auc_from_scores(scores.copy(), relevant, overwrite=True), ours, equal_nan=True)
