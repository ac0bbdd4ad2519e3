"""Non-personalised baselines: random ranking and most-popular (all-time or a recent window)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl
import scipy.sparse as sp

from persotool.errors import DataError
from persotool.kernels.models.base import Recommender, TrainingContext
from persotool.kernels.models.hyperparameters import PopularParams, RandomParams


class RandomModel(Recommender):
    """Uniformly random scores; each user's ranking is a pure function of (seed, user)."""

    name: ClassVar[str] = "random"
    params_model = RandomParams

    def _fit(self, train: sp.csr_matrix, item_features, user_features, context: TrainingContext) -> None:
        self.known_users_ = np.ones(self.n_users_, dtype=bool)  # random needs no history

    def _score(self, users: np.ndarray) -> np.ndarray:
        out = np.empty((len(users), self.n_items_), dtype=np.float32)
        for row, user in enumerate(users.tolist()):
            out[row] = np.random.default_rng([self.seed, user]).random(self.n_items_, dtype=np.float32)
        return out

    def _fallback(self, n: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 2**32 - 1]).random((n, self.n_items_), dtype=np.float32)


class MostPopular(Recommender):
    """Items ranked by how many distinct users interacted with them in training, optionally only
    within the last `window_days` before the end of training (a recent-popularity baseline)."""

    name: ClassVar[str] = "popular"
    params_model = PopularParams
    array_names: ClassVar[tuple[str, ...]] = ("counts_",)

    def expected_shapes(self) -> dict[str, tuple[int | None, ...]]:
        return {"counts_": (self.n_items_,)}

    def __init__(self, window_days: float | None = None, seed: int = 0) -> None:
        super().__init__(seed)
        self.window_days = window_days

    def _fit(self, train: sp.csr_matrix, item_features, user_features, context: TrainingContext) -> None:
        frame = context.interactions
        counts = self.popularity_.astype(np.float64)
        if self.window_days is not None and frame is not None and len(frame):
            end = frame["timestamp"].max()
            if end is None:
                raise DataError(
                    f"window_days = {self.window_days:g} counts recent days, but this training data has no "
                    "timestamps (it was ingested without a time column); leave window_days unset"
                )
            recent = frame.filter(pl.col("timestamp") >= end - pl.duration(days=self.window_days))
            recent_counts = np.bincount(
                recent.unique(["user_idx", "item_idx"])["item_idx"].to_numpy(), minlength=self.n_items_
            ).astype(np.float64)
            counts = recent_counts + counts / (counts.max() + 1.0)  # all-time popularity breaks ties
        self.counts_ = counts.astype(np.float32)
        self.known_users_ = np.ones(self.n_users_, dtype=bool)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts_, (len(users), self.n_items_)).copy()
