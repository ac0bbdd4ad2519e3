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
from persotool.kernels.models.serving import SOURCES, id_lists, id_maps
from persotool.stages.recommend.config import RecommendConfig
from persotool.stages.recommend.result import Recommendations
from persotool.stages.train.result import TrainedModel


def run(model, cfg: RecommendConfig, out: Path, *, force: bool = False) -> Recommendations:
    """Write `out`/recs.parquet (user_id, item_id, rank, score, source) and its manifest."""
    import time

    started = time.perf_counter()
    model_dir, out = Path(getattr(model, "path", model)), Path(out)
    inputs = [model_dir, *([cfg.users] if cfg.users is not None else [])]
    storage.check_output(out, force=force, inputs=inputs)
    trained = TrainedModel(model_dir)
    user_ids, item_ids = id_maps(Path(trained.manifest.dataset.path))
    wanted = user_ids["user_id"] if cfg.all_users else read_users(cfg.users)
    recs = id_lists(
        trained.model, wanted, user_ids, item_ids, cfg.k, exclude_seen=cfg.exclude_seen, batch_users=cfg.batch_users
    )
    n = len(wanted)
    k = len(recs) // max(n, 1)
    source = recs["source"].gather(np.arange(0, len(recs), max(k, 1)))  # one row per user
    counts = {
        "users": n,
        "rows": len(recs),
        "k": k,
        **{name.replace("fallback: ", "").replace(" ", "_"): int((source == name).sum()) for name in SOURCES},
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
