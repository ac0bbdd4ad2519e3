"""`explain`: a user's top-k list from a trained model with each item's reasons
(kernels.models.explain), by real user and item ids."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from persotool.errors import DataError
from persotool.kernels import storage
from persotool.kernels.models.base import interaction_matrix
from persotool.kernels.models.explain import explain
from persotool.kernels.models.serving import id_maps
from persotool.stages.explain.config import ExplainConfig
from persotool.stages.explain.result import Explanations
from persotool.stages.train.result import TrainedModel


def run(model, cfg: ExplainConfig, out: Path | None, *, force: bool = False) -> Explanations:
    """Write `out` (or a temporary directory) with explanations.parquet and its manifest."""
    started = time.perf_counter()
    model_dir = Path(getattr(model, "path", model))
    if out is not None:
        storage.check_output(Path(out), force=force, inputs=[model_dir])
    trained = TrainedModel(model_dir)
    user_ids, item_ids = id_maps(Path(trained.manifest.dataset.path))
    match = user_ids.filter(pl.col("user_id") == cfg.user)
    if match.is_empty():
        raise DataError(f"user {cfg.user!r} is not in the model's dataset", where=str(model_dir))
    user = int(match["user_idx"][0])
    recommender = trained.model
    if not recommender.known_users_[user]:
        raise DataError(
            f"user {cfg.user!r} has no training history: the model gives them the popularity ranking, "
            "nothing of theirs to explain",
            where=str(model_dir),
        )
    items, _ = recommender.recommend(np.array([user]), cfg.k, cfg.exclude_seen)
    items = items[0][items[0] >= 0]
    history = None
    if recommender.name == "als":
        split = trained.split
        history = interaction_matrix(split.train, split.n_users, split.n_items)
    found = explain(recommender, user, items, history=history, top=cfg.reasons)
    rows = []
    for rank, e in enumerate(found, start=1):
        for r in e.reasons:
            rows.append(
                {
                    "rank": rank,
                    "item_id": str(item_ids[e.item]),
                    "score": e.score,
                    "explained": e.explained,
                    "reason": r["kind"],
                    "reason_item_id": None if r["item"] is None else str(item_ids[r["item"]]),
                    "contribution": r["contribution"],
                }
            )
    schema = {
        "rank": pl.Int32,
        "item_id": pl.String,
        "score": pl.Float64,
        "explained": pl.Float64,
        "reason": pl.String,
        "reason_item_id": pl.String,
        "contribution": pl.Float64,
    }
    table = pl.DataFrame(rows, schema=schema)
    scratch = None
    if out is None:
        scratch = tempfile.TemporaryDirectory(prefix="persotool-explain-")
        out = Path(scratch.name) / "explanations"
    out = Path(out)
    with storage.atomic_directory(out, force=force, inputs=[model_dir]) as tmp:
        table.write_parquet(tmp / "explanations.parquet")
        files = {"explanations.parquet": storage.file_sha256(tmp / "explanations.parquet")}
        config = cfg.model_dump(mode="json")
        manifest = storage.new_manifest(
            Explanations.kind,
            Explanations.schema_version,
            name=out.name,
            digest=storage.lineage_digest(files, parents={"model": trained.digest}, config=config),
            model={"path": str(model_dir.resolve()), "digest": trained.digest, "name": trained.manifest.model},
            config=config,
            user=cfg.user,
            items=len(found),
            files=files,
            seconds=round(time.perf_counter() - started, 3),
        )
        storage.write_json_atomic(tmp / storage.MANIFEST, manifest)
    return Explanations(out, scratch=scratch)
