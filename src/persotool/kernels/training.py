"""Fitting a model on a split's training part, as `train`, `tune`, `benchmark` and the feedback loop
do: matrices and features from the split's dataset, and early stopping on the validation part
through the model's `TrainingContext` (the models never import the metrics)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from persotool.kernels.metrics.ranking import evaluate
from persotool.kernels.models.base import Recommender, TrainingContext, interaction_matrix, seen_matrix
from persotool.kernels.models.features import feature_matrix
from persotool.kernels.models.registry import build


class TrainingData(Protocol):
    """What fitting needs of a split (the split stage's result has all of it)."""

    train: pl.DataFrame
    valid: pl.DataFrame | None
    n_users: int
    n_items: int
    dataset_path: Path


def train(
    split: TrainingData,
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
