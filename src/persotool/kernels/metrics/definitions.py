"""Ranking metrics as small pure functions over a hit matrix.

`hits[u, r]` is True when the item a system put at rank r (0-based) for user u is relevant;
`n_relevant[u]` is how many relevant items u has (> 0: users without any are left out upstream).
Every function returns one value per user. Gains are binary.
"""

from __future__ import annotations

import re

import numpy as np

from persotool.errors import ConfigError

RANKED = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")
UNRANKED = ("auc",)
NAME = re.compile(r"^(?P<name>[a-z_]+)(@(?P<k>\d+))?$")


def parse(name: str) -> tuple[str, int | None]:
    """'ndcg@10' -> ('ndcg', 10); 'auc' -> ('auc', None)."""
    match = NAME.match(name.strip().lower())
    if not match:
        raise ConfigError(f"metric {name!r} is not of the form name@k (e.g. ndcg@10) or auc")
    metric, k = match["name"], match["k"]
    if metric in RANKED:
        if k is None or int(k) < 1:
            raise ConfigError(f"metric {name!r} needs a cut-off: {metric}@10")
        return metric, int(k)
    if metric in UNRANKED and k is None:
        return metric, None
    raise ConfigError(f"unknown metric {name!r}; known: {', '.join(RANKED)} (with @k) and auc")


def _check(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    if hits.ndim != 2 or hits.shape[0] != len(n_relevant):
        raise ValueError("hits must be (users, ranks) with one n_relevant per user")
    if k < 1:
        raise ValueError("k must be at least 1")
    if np.any(n_relevant < 1):
        raise ValueError("every user needs at least one relevant item")
    return hits[:, :k].astype(np.float64)


def precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """P@k = |relevant in top k| / k (k, not the list length, even when fewer items were ranked)."""
    return _check(hits, n_relevant, k).sum(axis=1) / k


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """R@k = |relevant in top k| / |relevant|."""
    return _check(hits, n_relevant, k).sum(axis=1) / n_relevant


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """nDCG@k = DCG@k / IDCG@k with DCG@k = sum_{r=1..k} hit_r / log2(r + 1) and IDCG@k the DCG of
    a ranking with all relevant items first, i.e. sum_{r=1..min(k, |relevant|)} 1 / log2(r + 1)."""
    h = _check(hits, n_relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, h.shape[1] + 2))
    dcg = h @ discounts
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    return dcg / ideal[np.minimum(n_relevant, k) - 1]


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k = (1 / min(k, |relevant|)) * sum_{r=1..k} hit_r * P@r; MAP@k is its mean over users."""
    h = _check(hits, n_relevant, k)
    precision_at = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    return (h * precision_at).sum(axis=1) / np.minimum(n_relevant, k)


def reciprocal_rank(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """RR@k = 1 / rank of the first relevant item within the top k, 0 when there is none."""
    h = _check(hits, n_relevant, k) > 0
    first = np.argmax(h, axis=1)
    return np.where(h.any(axis=1), 1.0 / (first + 1), 0.0)


def hit_rate(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """HR@k = 1 when at least one relevant item is in the top k, else 0."""
    return (_check(hits, n_relevant, k).sum(axis=1) > 0).astype(np.float64)


RANKED_FUNCTIONS = {
    "precision": precision,
    "recall": recall,
    "ndcg": ndcg,
    "map": average_precision,
    "mrr": reciprocal_rank,
    "hit_rate": hit_rate,
}


def _count_at_most(ordered: np.ndarray, queries: np.ndarray, *, strict: bool) -> np.ndarray:
    """Per row, how many entries of the ascending row `ordered[r]` are <= (or < with `strict`)
    each query of `queries[r]`: a binary search run for every row at once (about log2(n) steps
    on the small query array), so there is no loop over users."""
    rows = np.arange(ordered.shape[0])[:, None]
    lo = np.zeros(queries.shape, dtype=np.int64)
    hi = np.full(queries.shape, ordered.shape[1], dtype=np.int64)
    while True:
        open_ = lo < hi
        if not open_.any():
            return lo
        mid = (lo + hi) // 2
        value = ordered[rows, np.minimum(mid, ordered.shape[1] - 1)]
        right = value < queries if strict else value <= queries
        lo = np.where(open_ & right, mid + 1, lo)
        hi = np.where(open_ & ~right, mid, hi)


def auc_from_scores(scores: np.ndarray, relevant: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
    """AUC per user over all candidate items (excluded items carry -inf and are not candidates):
    the share of (relevant, non-relevant) pairs ordered correctly, ties counting one half,

        AUC_u = 1 - (sum_p [#neg scored above p] + 0.5 [#neg tied with p]) / (|pos| |neg|).

    `relevant` is an (users, max_pos) array of relevant item indices padded with -1. Each row is
    sorted once; every relevant item's count of higher and tied scores comes from a binary search
    in its sorted row, and the relevant items' own places among each other are taken out after.
    With `overwrite`, `scores` is sorted in place (no copy). A user with no non-relevant candidate
    gets NaN."""
    valid = relevant >= 0
    safe = np.where(valid, relevant, 0)
    pos_scores = np.take_along_axis(scores, safe, axis=1)
    candidates = np.isfinite(scores).sum(axis=1)
    both = valid & np.isfinite(pos_scores)
    n_pos = both.sum(axis=1)
    n_neg = candidates - n_pos
    if overwrite:
        scores.sort(axis=1)
        ordered = scores
    else:
        ordered = np.sort(scores, axis=1)
    at_most = _count_at_most(ordered, pos_scores, strict=False)
    below = _count_at_most(ordered, pos_scores, strict=True)
    higher = ordered.shape[1] - at_most
    tied_others = at_most - below - 1
    above = np.where(both, higher + 0.5 * tied_others, 0.0).sum(axis=1)
    # remove the relevant items counted as "above" or tied with each other
    ps = np.where(both, pos_scores, np.nan)
    greater = (ps[:, :, None] < ps[:, None, :]) & both[:, :, None] & both[:, None, :]
    ties = (ps[:, :, None] == ps[:, None, :]) & both[:, :, None] & both[:, None, :]
    np.einsum("ijj->ij", ties)[...] = False
    above -= greater.sum(axis=(1, 2)) + 0.5 * ties.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_neg > 0, 1.0 - above / (n_pos * n_neg), np.nan)
