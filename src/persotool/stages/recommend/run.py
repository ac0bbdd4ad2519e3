"""`recommend`: a model's top-k lists for real user ids, batched over users.

Users are named by the ids of the model's dataset. A user the dataset knows but training never
saw (no training interactions) gets the model's own fallback, the popularity ranking; a user id the
dataset has never seen gets the same popularity ranking, with nothing to exclude. Each row says
which (`source`: model, fallback: no training history, fallback: unknown user)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from persotool.errors import DataError
from persotool.kernels import storage
from persotool.kernels.models.base import top_k
from persotool.stages.recommend.config import RecommendConfig
from persotool.stages.recommend.result import Recommendations
from persotool.stages.train.result import TrainedModel

SOURCES = ("model", "fallback: no training history", "fallback: unknown user")


def run(model, cfg: RecommendConfig, out: Path, *, force: bool = False) -> Recommendations:
    """Write `out`/recs.parquet (user_id, item_id, rank, score, source) and its manifest."""
    import time

    started = time.perf_counter()
    model_dir, out = Path(getattr(model, "path", model)), Path(out)
    inputs = [model_dir, *([cfg.users] if cfg.users is not None else [])]
    storage.check_output(out, force=force, inputs=inputs)
    trained = TrainedModel(model_dir)
    dataset = Path(trained.manifest.dataset.path)
    user_ids = pl.read_parquet(dataset / "users.parquet", columns=["user_idx", "user_id"]).sort("user_idx")
    item_ids = pl.read_parquet(dataset / "items.parquet", columns=["item_idx", "item_id"]).sort("item_idx")
    wanted = user_ids["user_id"] if cfg.all_users else read_users(cfg.users)
    index = wanted.to_frame("user_id").join(user_ids, on="user_id", how="left")["user_idx"]
    recommender = trained.model
    items, scores, source = lists(recommender, index.to_numpy(), cfg)
    n, k = items.shape
    recs = pl.DataFrame(
        {
            "user_id": wanted.gather(np.repeat(np.arange(n), k)),
            "item_id": item_ids["item_id"].gather(items.ravel()),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n),
            "score": scores.ravel(),
            "source": pl.Series(np.repeat(source, k)).replace_strict(dict(enumerate(SOURCES)), return_dtype=pl.String),
        }
    )
    counts = {
        "users": n,
        "rows": len(recs),
        "k": k,
        **{
            name.replace("fallback: ", "").replace(" ", "_"): int((source == i).sum()) for i, name in enumerate(SOURCES)
        },
    }
    with storage.atomic_directory(out, force=force, inputs=inputs) as tmp:
        recs.write_parquet(tmp / "recs.parquet")
        files = {"recs.parquet": storage.file_sha256(tmp / "recs.parquet")}
        config = cfg.model_dump(mode="json")
        manifest = storage.new_manifest(
            Recommendations.kind,
            Recommendations.schema_version,
            name=out.name,
            digest=storage.lineage_digest(files, parents={"model": trained.digest}, config=config),
            model={"path": str(model_dir.resolve()), "digest": trained.digest, "name": trained.manifest.model},
            dataset=trained.manifest.dataset.model_dump(),
            config=config,
            counts=counts,
            files=files,
            seconds=round(time.perf_counter() - started, 3),
        )
        storage.write_json_atomic(tmp / storage.MANIFEST, manifest)
    return Recommendations(out)


def lists(recommender, users: np.ndarray, cfg: RecommendConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items, scores, source code) per user; `users` holds dataset indices, NaN or null for ids the
    dataset does not know. Batched: at most `batch_users` rows of scores exist at once."""
    known = ~np.isnan(users.astype(np.float64))
    index = np.where(known, np.nan_to_num(users.astype(np.float64), nan=-1), -1).astype(np.int64)
    k = min(cfg.k, recommender.n_items_)
    items = np.empty((len(index), k), dtype=np.int32)
    scores = np.empty((len(index), k), dtype=np.float32)
    for start in range(0, len(index), cfg.batch_users):
        rows = np.flatnonzero(known[start : start + cfg.batch_users]) + start
        if len(rows):
            items[rows], scores[rows] = recommender.recommend(index[rows], k, cfg.exclude_seen)
    if (~known).any():  # the popularity ranking, nothing to exclude
        popular_items, popular_scores = top_k(recommender.popularity_[None, :].astype(np.float32), k)
        items[~known], scores[~known] = popular_items[0], popular_scores[0]
    trained = np.zeros(len(index), dtype=bool)
    trained[known] = recommender.known_users_[index[known]]
    source = np.where(~known, 2, np.where(trained, 0, 1)).astype(np.int8)
    return items, scores, source


def read_users(path: Path) -> pl.Series:
    """User ids from a text file (one per line) or a CSV/Parquet table with a user_id column."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        elif path.suffix in (".csv", ".tsv"):
            frame = pl.read_csv(path, infer_schema=False, separator="\t" if path.suffix == ".tsv" else ",")
        else:
            lines = [line.strip() for line in path.read_text().splitlines()]
            frame = pl.DataFrame({"user_id": [line for line in lines if line]}, schema={"user_id": pl.String})
    except (OSError, UnicodeDecodeError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"cannot read the user ids ({str(exc).splitlines()[0]})", where=str(path)) from None
    if "user_id" not in frame.columns:
        raise DataError(f"needs a user_id column (it has {', '.join(frame.columns)})", where=str(path))
    ids = frame["user_id"].cast(pl.String).drop_nulls()
    if ids.is_empty():
        raise DataError("holds no user ids", where=str(path))
    return ids.unique(maintain_order=True)
