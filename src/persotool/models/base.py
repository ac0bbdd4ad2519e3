"""The recommender protocol and what every model shares: the training matrix, batched top-k with
seen-item masking, a popularity fallback for users and items training never saw, and persistence as
plain arrays (`arrays.npz`, loaded with allow_pickle=False) plus JSON metadata. No pickle anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import scipy.sparse as sp

from persotool import __version__
from persotool.errors import ModelError

FORMAT_VERSION = 1
BATCH_USERS = 1024


def interaction_matrix(train: pl.DataFrame, n_users: int, n_items: int, *, binary: bool = False) -> sp.csr_matrix:
    """Users x items CSR of summed weights (repeat interactions add up); zero weights dropped."""
    positive = train.filter(pl.col("weight") > 0)
    data = np.ones(len(positive), dtype=np.float32) if binary else positive["weight"].to_numpy().astype(np.float32)
    matrix = sp.coo_matrix(
        (data, (positive["user_idx"].to_numpy(), positive["item_idx"].to_numpy())), shape=(n_users, n_items)
    ).tocsr()
    matrix.sum_duplicates()
    if binary:
        matrix.data[:] = 1.0
    return matrix


def seen_matrix(train: pl.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """Every item a user interacted with in training, whatever its weight: excluded from rankings."""
    data = np.ones(len(train), dtype=np.bool_)
    matrix = sp.coo_matrix(
        (data, (train["user_idx"].to_numpy(), train["item_idx"].to_numpy())), shape=(n_users, n_items)
    ).tocsr()
    matrix.sum_duplicates()
    return matrix


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k highest scores per row, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    if k == scores.shape[1]:
        part = np.broadcast_to(np.arange(k), (scores.shape[0], k))
    else:
        # the k largest sit at the end after partitioning at n - k (no negated copy of the scores)
        part = np.argpartition(scores, scores.shape[1] - k, axis=1)[:, scores.shape[1] - k :]
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx.astype(np.int32), np.take_along_axis(values, order, axis=1)


class Recommender:
    """Base of every model. Subclasses set `name`, take hyperparameters in `__init__`, learn in
    `_fit` (state in attributes ending in `_`) and score known users in `_score`."""

    name: ClassVar[str] = "base"
    array_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    # -- learning ---------------------------------------------------------------------------
    def fit(
        self,
        train: sp.csr_matrix,
        *,
        seen: sp.csr_matrix | None = None,
        item_features: sp.csr_matrix | None = None,
        user_features: sp.csr_matrix | None = None,
        valid=None,
        on_epoch=None,
        frame=None,
    ) -> Recommender:
        """Learn from a users x items matrix of weights. `seen` (default: train's pattern) is what
        `recommend` excludes; `valid(model) -> float` and `on_epoch(epoch, metrics)` serve models
        that train in epochs; `frame` is the training interactions table, for models that need
        more than the matrix (e.g. timestamps)."""
        if not sp.issparse(train):
            raise ModelError("fit expects a scipy.sparse users x items matrix")
        train = sp.csr_matrix(train, dtype=np.float32)
        self.n_users_, self.n_items_ = train.shape
        self.seen_ = sp.csr_matrix(seen if seen is not None else train, dtype=np.bool_)
        counts = np.asarray((train > 0).sum(axis=0)).ravel().astype(np.float32)
        self.popularity_ = counts
        self.known_users_ = np.asarray(train.getnnz(axis=1) > 0)
        self._fit(
            train, item_features=item_features, user_features=user_features, valid=valid, on_epoch=on_epoch, frame=frame
        )
        return self

    def _fit(self, train: sp.csr_matrix, **extra: Any) -> None:
        raise NotImplementedError

    # -- scoring ----------------------------------------------------------------------------
    def _score(self, users: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _fallback(self, n: int) -> np.ndarray:
        """Scores for users training never saw: item popularity, slightly favouring lower indices
        only to break ties deterministically."""
        return np.broadcast_to(self.popularity_, (n, self.n_items_)).astype(np.float32)

    def score(self, users) -> np.ndarray:
        """Scores of all items for the given users (len(users) x n_items, float32); users unseen in
        training (or beyond the training matrix) get the popularity fallback."""
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        out = np.empty((len(users), self.n_items_), dtype=np.float32)
        inside = (users >= 0) & (users < self.n_users_)
        known = np.zeros(len(users), dtype=bool)
        known[inside] = self.known_users_[users[inside]]
        if known.any():
            out[known] = self._score(users[known])
        if (~known).any():
            out[~known] = self._fallback(int((~known).sum()))
        return out

    def recommend(self, users, k: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items and scores for one user or a batch (one code path): arrays of shape
        (n, k), or (k,) for a single user."""
        single = np.ndim(users) == 0
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if k < 1:
            raise ModelError(f"k must be at least 1, got {k}")
        items = np.empty((len(users), min(k, self.n_items_)), dtype=np.int32)
        values = np.empty(items.shape, dtype=np.float32)
        for start in range(0, len(users), BATCH_USERS):
            batch = users[start : start + BATCH_USERS]
            scores = self.score(batch)
            if exclude_seen:
                mask_seen(scores, self.seen_, batch)
            items[start : start + len(batch)], values[start : start + len(batch)] = top_k(scores, k)
        return (items[0], values[0]) if single else (items, values)

    # -- persistence ------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in ("popularity_", "known_users_", *self.array_names)}
        seen = self.seen_.tocsr()
        arrays |= {"seen_indptr": seen.indptr, "seen_indices": seen.indices}
        for name, value in list(arrays.items()):
            if sp.issparse(value):
                csr = value.tocsr()
                arrays.pop(name)
                arrays |= {
                    f"{name}__data": csr.data,
                    f"{name}__indices": csr.indices,
                    f"{name}__indptr": csr.indptr,
                    f"{name}__shape": np.array(csr.shape),
                }
        np.savez(path / "arrays.npz", **arrays)
        meta = {
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "persotool_version": __version__,
            "params": self.params(),
            "n_users": self.n_users_,
            "n_items": self.n_items_,
        }
        (path / "model.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")

    @classmethod
    def _restore(cls, params: dict[str, Any]) -> Recommender:
        return cls(**params)


def mask_seen(scores: np.ndarray, seen: sp.csr_matrix, users: np.ndarray) -> None:
    """Set the scores of each user's training items to -inf, in place."""
    inside = users < seen.shape[0]
    rows = np.flatnonzero(inside)
    sub = seen[users[inside]]
    row_of = np.repeat(rows, np.diff(sub.indptr))
    scores[row_of, sub.indices] = -np.inf


def load(path: Path) -> Recommender:
    """Load a model directory written by `Recommender.save` (arrays only, never pickle)."""
    from persotool.models.registry import MODELS

    path = Path(path)
    meta_path = path / "model.json"
    if not meta_path.is_file():
        raise ModelError("is not a model directory (no model.json)", where=str(path))
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"model.json is not valid JSON ({exc})", where=str(path)) from None
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"was saved in model format {version}; this persotool ({__version__}) reads format "
            f"{FORMAT_VERSION}: train it again",
            where=str(path),
        )
    name = meta.get("model")
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})", where=str(path))
    model = MODELS[name]._restore(meta["params"])
    try:
        with np.load(path / "arrays.npz", allow_pickle=False) as npz:
            arrays = dict(npz)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read arrays.npz ({exc})", where=str(path)) from None
    model.n_users_, model.n_items_ = meta["n_users"], meta["n_items"]
    for key in [k for k in arrays if k.endswith("__shape")]:
        base = key.removesuffix("__shape")
        arrays[base] = sp.csr_matrix(
            (arrays.pop(f"{base}__data"), arrays.pop(f"{base}__indices"), arrays.pop(f"{base}__indptr")),
            shape=tuple(arrays.pop(key)),
        )
    indptr, indices = arrays.pop("seen_indptr"), arrays.pop("seen_indices")
    model.seen_ = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.bool_), indices, indptr), shape=(model.n_users_, model.n_items_)
    )
    for name, value in arrays.items():
        setattr(model, name, value)
    return model
