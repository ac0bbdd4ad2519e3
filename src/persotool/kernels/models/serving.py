"""Top-k lists by real ids, shared by `recommend` and the served MLflow model.

A user the dataset knows but training never saw gets the model's own fallback (the popularity
ranking); an id the dataset has never seen gets the same ranking with nothing to exclude. Each row
says which (`source`). A served model carries its id maps beside its arrays (`package`), so it
answers without the dataset it was trained on."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl

from persotool.kernels.models.base import top_k

SOURCES = ("model", "fallback: no training history", "fallback: unknown user")
USER_IDS, ITEM_IDS = "user_ids.parquet", "item_ids.parquet"


def lists(
    recommender, users: np.ndarray, k: int, *, exclude_seen: bool = True, batch_users: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items, scores, source code) per user; `users` holds dataset indices, NaN or null for ids the
    dataset does not know. Batched: at most `batch_users` rows of scores exist at once."""
    known = ~np.isnan(users.astype(np.float64))
    index = np.where(known, np.nan_to_num(users.astype(np.float64), nan=-1), -1).astype(np.int64)
    k = min(k, recommender.n_items_)
    items = np.empty((len(index), k), dtype=np.int32)
    scores = np.empty((len(index), k), dtype=np.float32)
    for start in range(0, len(index), batch_users):
        rows = np.flatnonzero(known[start : start + batch_users]) + start
        if len(rows):
            items[rows], scores[rows] = recommender.recommend(index[rows], k, exclude_seen)
    if (~known).any():  # the popularity ranking, nothing to exclude
        popular_items, popular_scores = top_k(recommender.popularity_[None, :].astype(np.float32), k)
        items[~known], scores[~known] = popular_items[0], popular_scores[0]
    trained = np.zeros(len(index), dtype=bool)
    trained[known] = recommender.known_users_[index[known]]
    source = np.where(~known, 2, np.where(trained, 0, 1)).astype(np.int8)
    return items, scores, source


def id_lists(
    recommender,
    wanted: pl.Series,
    user_ids: pl.DataFrame,
    item_ids: pl.Series,
    k: int,
    *,
    exclude_seen: bool = True,
    batch_users: int = 2048,
) -> pl.DataFrame:
    """user_id, item_id, rank, score, source for the `wanted` user ids; `user_ids` maps user_idx to
    user_id, `item_ids` is the item ids by item_idx."""
    wanted = wanted.cast(pl.String).rename("user_id")
    index = wanted.to_frame().join(user_ids, on="user_id", how="left", maintain_order="left")["user_idx"]
    items, scores, source = lists(recommender, index.to_numpy(), k, exclude_seen=exclude_seen, batch_users=batch_users)
    n, k = items.shape
    return pl.DataFrame(
        {
            "user_id": wanted.gather(np.repeat(np.arange(n), k)),
            "item_id": item_ids.gather(items.ravel()),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n),
            "score": scores.ravel(),
            "source": pl.Series(np.repeat(source, k)).replace_strict(dict(enumerate(SOURCES)), return_dtype=pl.String),
        }
    )


def id_maps(dataset: Path) -> tuple[pl.DataFrame, pl.Series]:
    """The dataset's user_idx -> user_id table and its item ids by item_idx."""
    user_ids = pl.read_parquet(Path(dataset) / "users.parquet", columns=["user_idx", "user_id"]).sort("user_idx")
    item_ids = pl.read_parquet(Path(dataset) / "items.parquet", columns=["item_idx", "item_id"]).sort("item_idx")
    return user_ids, item_ids["item_id"]


def package(model_dir: Path, dataset: Path, dest: Path) -> Path:
    """A self-contained copy of a model directory for serving: its files unchanged (their digests
    still verify) plus the dataset's id maps."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in Path(model_dir).iterdir():
        if path.is_file():
            shutil.copy2(path, dest / path.name)
    user_ids, item_ids = id_maps(dataset)
    user_ids.write_parquet(dest / USER_IDS)
    item_ids.to_frame().write_parquet(dest / ITEM_IDS)
    return dest
