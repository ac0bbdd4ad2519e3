"""Full-ranking evaluation, vectorised over batches of users.

For each batch: score every item (one matrix product for factor models), set each user's training
items to -inf, take the top K with argpartition, and look the ranked items up in a dense relevance
block. Scores are never held for all users at once. Users without a relevant test item are left
out and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from persotool.kernels.metrics import beyond
from persotool.kernels.metrics.definitions import RANKED_FUNCTIONS, auc_from_scores, parse
from persotool.kernels.models.base import mask_seen, top_k

BATCH = 1024


@dataclass
class RankingScores:
    """Per-user metrics, their means, and the top-K lists they came from."""

    per_user: pl.DataFrame
    summary: dict[str, float]
    users_evaluated: int
    users_without_relevant: int
    recommendations: np.ndarray  # (users, K) item indices, -1 padded
    beyond: dict[str, float] = field(default_factory=dict)


def relevant_lists(truth: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    """(users, padded relevant items (-1 fill), users with no relevant item) from a truth table
    with user_idx, item_idx and an optional boolean `relevant`."""
    if "relevant" not in truth.columns:
        truth = truth.with_columns(relevant=pl.lit(True))
    grouped = (
        truth.group_by("user_idx")
        .agg(items=pl.col("item_idx").filter(pl.col("relevant")).unique().sort())
        .with_columns(n=pl.col("items").list.len())
    )
    without = int((grouped["n"] == 0).sum())
    grouped = grouped.filter(pl.col("n") > 0).sort("n", "user_idx")
    users = grouped["user_idx"].to_numpy().astype(np.int64)
    width = int(grouped["n"].max()) if len(grouped) else 0
    padded = np.full((len(users), width), -1, dtype=np.int64)
    lengths = grouped["n"].to_numpy().astype(np.int64)
    if len(users):
        flat = grouped["items"].explode().to_numpy()
        rows = np.repeat(np.arange(len(users)), lengths)
        cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        padded[rows, cols] = flat
    return users, padded, without


def _metric_specs(names: list[str]) -> tuple[list[tuple[str, str, int | None]], int, bool]:
    specs = []
    for name in names:
        metric, k = parse(name)
        specs.append((f"{metric}@{k}" if k else metric, metric, k))
    max_k = max((k for _, _, k in specs if k), default=10)
    return specs, max_k, any(m == "auc" for _, m, _ in specs)


def _per_user_metrics(hits: np.ndarray, n_rel: np.ndarray, specs) -> dict[str, np.ndarray]:
    return {label: RANKED_FUNCTIONS[metric](hits, n_rel, k) for label, metric, k in specs if k}


def evaluate(
    score: Callable[[np.ndarray], np.ndarray],
    seen: sp.csr_matrix,
    truth: pl.DataFrame,
    metrics: list[str],
    *,
    n_items: int,
    popularity: np.ndarray | None = None,
    item_vectors: np.ndarray | sp.csr_matrix | None = None,
    batch: int = BATCH,
    seed: int = 0,
) -> RankingScores:
    """Evaluate `score(users) -> (len(users), n_items)` against `truth` (user_idx, item_idx,
    relevant) with training items `seen` excluded from every ranking."""
    specs, max_k, want_auc = _metric_specs(metrics)
    users, relevant, without = relevant_lists(truth)
    n_rel = (relevant >= 0).sum(axis=1)
    columns: dict[str, list[np.ndarray]] = {label: [] for label, _, _ in specs}
    recs = np.full((len(users), min(max_k, n_items)), -1, dtype=np.int32)
    for start in range(0, len(users), batch):
        stop = min(start + batch, len(users))
        batch_users = users[start:stop]
        scores = score(batch_users)
        mask_seen(scores, seen, batch_users)
        items, values = top_k(scores, max_k)
        items = np.where(np.isfinite(values), items, -1)
        recs[start:stop] = items
        rel = relevant[start:stop]
        width = int(n_rel[start:stop].max())
        rel = rel[:, :width]
        dense = np.zeros((stop - start, n_items + 1), dtype=bool)
        rows = np.repeat(np.arange(stop - start), width)
        dense[rows, np.where(rel >= 0, rel, n_items).ravel()] = True
        dense[:, n_items] = False
        hits = np.take_along_axis(dense, np.where(items >= 0, items, n_items), axis=1)
        for label, values_ in _per_user_metrics(hits, n_rel[start:stop], specs).items():
            columns[label].append(values_)
        if want_auc:
            columns["auc"].append(auc_from_scores(scores, rel, overwrite=True))  # scores' last use
    data = {"user_idx": users, "n_relevant": n_rel}
    for label, parts in columns.items():
        data[label] = np.concatenate(parts) if parts else np.zeros(0)
    per_user = pl.DataFrame(data).sort("user_idx")
    summary = {
        label: float(np.nanmean(per_user[label].to_numpy())) if len(per_user) else float("nan") for label, _, _ in specs
    }
    result = RankingScores(per_user, summary, len(users), without, recs)
    if popularity is not None:
        # Popularity counts training users: novelty's shares are out of the users with training history.
        train_users = int(np.count_nonzero(np.diff(seen.indptr)))
        result.beyond = beyond.summary(
            recs, popularity=popularity, n_items=n_items, item_vectors=item_vectors, seed=seed, n_users=train_users
        )
    return result


def evaluate_model(
    model: Any, truth: pl.DataFrame, metrics: list[str], *, n_items: int, item_features=None, seed: int = 0
) -> RankingScores:
    """A fitted recommender on `truth` with its training items excluded; intra-list diversity uses
    the item features, else the model's item embeddings when it has them."""
    vectors = item_features if item_features is not None else getattr(model, "item_factors_", None)
    return evaluate(
        model.score,
        model.seen_,
        truth,
        metrics,
        n_items=n_items,
        popularity=model.popularity_,
        item_vectors=vectors,
        seed=seed,
    )


def evaluate_lists(
    recommendations: pl.DataFrame, truth: pl.DataFrame, metrics: list[str], *, n_items: int | None = None
) -> RankingScores:
    """Score ranked lists produced by any system: `recommendations` has user_idx, item_idx, rank
    (1 = best); `truth` has user_idx, item_idx and optionally relevant. AUC needs full scores and
    is not available here."""
    specs, max_k, want_auc = _metric_specs(metrics)
    if want_auc:
        from persotool.errors import ConfigError

        raise ConfigError("auc needs every item's score; ranked lists support the @k metrics only")
    users, relevant, without = relevant_lists(truth)
    n_rel = (relevant >= 0).sum(axis=1)
    ranked = recommendations.filter(pl.col("rank") <= max_k).sort("user_idx", "rank")
    lists = ranked.group_by("user_idx", maintain_order=True).agg(pl.col("item_idx"))
    index = {u: i for i, u in enumerate(users.tolist())}
    recs = np.full((len(users), max_k), -1, dtype=np.int64)
    for user, items in lists.iter_rows():
        row = index.get(user)
        if row is not None:
            items = items[:max_k]
            recs[row, : len(items)] = items
    hits = np.zeros(recs.shape, dtype=bool)
    if relevant.size:
        hits = (recs[:, :, None] == relevant[:, None, :]).any(axis=2) & (recs >= 0)
    data: dict[str, Any] = {"user_idx": users, "n_relevant": n_rel}
    data |= _per_user_metrics(hits, n_rel, specs) if len(users) else {label: [] for label, _, _ in specs}
    per_user = pl.DataFrame(data).sort("user_idx")
    summary = {label: float(per_user[label].mean()) if len(per_user) else float("nan") for label, _, _ in specs}
    result = RankingScores(per_user, summary, len(users), without, recs.astype(np.int32))
    if n_items:
        counts = np.zeros(n_items)
        result.beyond = beyond.summary(recs.astype(np.int32), popularity=counts, n_items=n_items, item_vectors=None)
    return result
