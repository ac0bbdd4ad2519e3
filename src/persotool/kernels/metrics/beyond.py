"""Beyond-accuracy measures of a set of top-K lists (one row per user, -1 padded)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

MAX_PAIR_USERS = 2000
NAMES = ("coverage", "gini", "novelty", "popularity", "personalization", "diversity")  # what `summary` reports


def coverage(recs: np.ndarray, n_items: int) -> float:
    """Catalog coverage: |items recommended to anyone| / |catalog|."""
    return float(len(np.unique(recs[recs >= 0])) / n_items)


def gini(recs: np.ndarray, n_items: int) -> float:
    """Gini coefficient of exposure over the whole catalog (0: every item shown equally often,
    1: one item takes all exposure): G = sum_i (2i - n - 1) x_(i) / (n sum x), x sorted ascending."""
    counts = np.sort(np.bincount(recs[recs >= 0], minlength=n_items).astype(np.float64))
    total = counts.sum()
    if total == 0:
        return 0.0
    ranks = np.arange(1, n_items + 1)
    return float(((2 * ranks - n_items - 1) * counts).sum() / (n_items * total))


def novelty(recs: np.ndarray, popularity: np.ndarray, n_users: int) -> float:
    """Mean self-information of recommended items, -log2 p(i), with p(i) = (users who interacted
    with i + 1) / (users + 1) in training (add-one so unseen items are finite)."""
    p = (popularity + 1.0) / (max(n_users, 1) + 1.0)
    shown = recs[recs >= 0]
    return float(np.mean(-np.log2(p[shown]))) if len(shown) else 0.0


def average_popularity(recs: np.ndarray, popularity: np.ndarray) -> float:
    """Mean training popularity (number of users) of recommended items."""
    shown = recs[recs >= 0]
    return float(popularity[shown].mean()) if len(shown) else 0.0


def intra_list_diversity(recs: np.ndarray, vectors: np.ndarray | sp.spmatrix) -> float:
    """Mean over users of the mean pairwise cosine distance (1 - cos) between items of a list,
    from item feature vectors or embeddings."""
    if sp.issparse(vectors):
        vectors = np.asarray(vectors.todense(), dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors, dtype=np.float64), where=norms > 0)
    k = recs.shape[1]
    if k < 2:
        return 0.0
    sample = recs[: MAX_PAIR_USERS * 5]
    valid = sample >= 0
    emb = unit[np.where(valid, sample, 0)] * valid[:, :, None]
    gram = np.einsum("ukd,ujd->ukj", emb, emb)
    pairs = valid[:, :, None] & valid[:, None, :]
    np.einsum("ukk->uk", pairs)[...] = False
    n_pairs = pairs.sum(axis=(1, 2))
    distance = ((1 - gram) * pairs).sum(axis=(1, 2))
    ok = n_pairs > 0
    return float(np.mean(distance[ok] / n_pairs[ok])) if ok.any() else 0.0


def personalization(recs: np.ndarray, n_items: int, seed: int = 0) -> float:
    """1 - mean overlap |L_u & L_v| / k over pairs of users (a seeded sample of users when many)."""
    rows = recs
    if len(rows) > MAX_PAIR_USERS:
        rows = rows[np.random.default_rng(seed).choice(len(rows), MAX_PAIR_USERS, replace=False)]
    if len(rows) < 2:
        return 0.0
    valid = rows >= 0
    matrix = sp.csr_matrix(
        (np.ones(valid.sum()), (np.repeat(np.arange(len(rows)), valid.sum(axis=1)), rows[valid])),
        shape=(len(rows), n_items),
    )
    overlap = (matrix @ matrix.T).toarray()
    k = rows.shape[1]
    n = len(rows)
    mean_overlap = (overlap.sum() - np.trace(overlap)) / (n * (n - 1) * k)
    return float(1 - mean_overlap)


def summary(
    recs: np.ndarray,
    *,
    popularity: np.ndarray,
    n_items: int,
    item_vectors=None,
    seed: int = 0,
    n_users: int | None = None,
) -> dict[str, float]:
    k = recs.shape[1]
    out = {
        f"coverage@{k}": coverage(recs, n_items),
        f"gini@{k}": gini(recs, n_items),
        f"novelty@{k}": novelty(recs, popularity, n_users or len(recs)),
        f"popularity@{k}": average_popularity(recs, popularity),
        f"personalization@{k}": personalization(recs, n_items, seed),
    }
    if item_vectors is not None:
        out[f"diversity@{k}"] = intra_list_diversity(recs, item_vectors)
    return out
