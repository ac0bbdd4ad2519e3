"""Training a model on a split: matrices and features from the split's dataset, validation-driven
early stopping, and a model directory (model.json + arrays.npz + manifest.json)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from persotool.errors import ConfigError
from persotool.kernels import storage as artifacts
from persotool.kernels.config import validate
from persotool.kernels.models.base import Recommender, TrainingContext, interaction_matrix, seen_matrix
from persotool.kernels.models.registry import MODELS
from persotool.stages.split.run import Split


def feature_matrix(dataset: Path, kind: str, n: int) -> tuple[sp.csr_matrix | None, list[str]]:
    """The `features` lists of users.parquet / items.parquet as an n x features 0/1 CSR matrix."""
    path = Path(dataset) / f"{kind}s.parquet"
    if not path.is_file():
        return None, []
    table = pl.read_parquet(path)
    if "features" not in table.columns:
        return None, []
    exploded = table.select(f"{kind}_idx", "features").explode("features").drop_nulls("features")
    if exploded.is_empty():
        return None, []
    names = sorted(exploded["features"].unique().to_list())
    codes = exploded["features"].cast(pl.Enum(names)).to_physical().to_numpy()
    rows = exploded[f"{kind}_idx"].to_numpy()
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, codes)), shape=(n, len(names)))
    return matrix, names


def build(name: str, params: dict[str, Any]) -> Recommender:
    """A model from its registry name and hyperparameters, with one clear line for a bad one."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    cls = MODELS[name]
    accepted = set(cls.params_model.model_fields)
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(f"{name} has no parameter {unknown[0]!r}; its parameters: {', '.join(sorted(accepted))}")
    checked = validate(cls.params_model, params, where=f"{name} parameters")
    return cls(**checked.model_dump())


def train(
    split: Split,
    name: str,
    params: dict[str, Any],
    *,
    valid_k: int = 10,
    on_epoch=None,
    use_features: bool = True,
    validate_each_epoch: bool = False,
) -> tuple[Recommender, dict[str, Any]]:
    """Fit model `name` on the split's training part; early stopping on validation NDCG@valid_k
    when the split has a validation set (`validate_each_epoch`: models that do not stop early
    validate after every epoch too, for a tuner's pruner)."""
    from persotool.kernels.metrics.ranking import evaluate

    model = build(name, params)
    train_matrix = interaction_matrix(split.train, split.n_users, split.n_items)
    seen = seen_matrix(split.train, split.n_users, split.n_items)
    item_features, feature_names = (None, [])
    if use_features:
        item_features, feature_names = feature_matrix(split.dataset_path, "item", split.n_items)
    user_features, _ = feature_matrix(split.dataset_path, "user", split.n_users) if use_features else (None, [])
    valid = None
    if split.valid is not None and len(split.valid):
        metric = f"ndcg@{valid_k}"

        def valid(candidate: Recommender) -> float:
            result = evaluate(candidate.score, seen, split.valid, [metric], n_items=split.n_items)
            return result.summary[metric]

    history: dict[str, list[float]] = {}  # per-epoch values, kept in the model's manifest

    def record_epoch(epoch: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            history.setdefault(key, []).append(value)
        if on_epoch:
            on_epoch(epoch, metrics)

    context = TrainingContext(
        validate=valid,
        metric=f"ndcg@{valid_k}" if valid else None,
        on_epoch=record_epoch,
        interactions=split.train,
        validate_each_epoch=validate_each_epoch,
    )
    started = time.perf_counter()
    model.fit(train_matrix, seen=seen, item_features=item_features, user_features=user_features, context=context)
    info = {
        "model": name,
        "params": model.params(),
        "fit_seconds": round(time.perf_counter() - started, 3),
        "item_features": len(feature_names),
        "valid_metric": f"ndcg@{valid_k}" if valid else None,
        "history": history,
    }
    if getattr(model, "best_epoch_", None) is not None:
        info["epochs_kept"] = int(model.best_epoch_) + 1  # what early stopping kept, for retraining
    return model, info


def save(model: Recommender, out: Path, split: Split, info: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
    with artifacts.atomic_directory(out, force=force, inputs=[split.path]) as tmp:
        model.save(tmp)
        files = {p.name: artifacts.file_sha256(p) for p in sorted(tmp.iterdir())}
        manifest = artifacts.new_manifest(
            "model",
            name=Path(out).name,
            model=info["model"],
            params=info["params"],
            model_digest=artifacts.lineage_digest(
                files,
                parents={"split": split.manifest["split_digest"]},
                config={"model": info["model"], "params": info["params"]},
            ),
            split={"path": str(split.path.resolve()), "digest": split.manifest["split_digest"]},
            dataset=split.manifest["dataset"],
            fit_seconds=info["fit_seconds"],
            item_features=info["item_features"],
            epochs_kept=info.get("epochs_kept"),
            valid_metric=info.get("valid_metric"),
            history=info.get("history", {}),
            files=files,
        )
        artifacts.write_json_atomic(tmp / artifacts.MANIFEST, manifest)
    return manifest
