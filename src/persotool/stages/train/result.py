"""A model directory from `train` (or a benchmark's models/): the fitted recommender, loaded and
verified on first use, its hyperparameters and training history, and its lineage."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from pydantic import Field

from persotool.kernels import render
from persotool.kernels.artifact import Artifact, Manifest, Ref


class ModelManifest(Manifest):
    model: str
    params: dict[str, Any]
    model_digest: str
    split: Ref
    dataset: Ref
    fit_seconds: float
    item_features: int = 0
    epochs_kept: int | None = None
    valid_metric: str | None = None
    history: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str]


class TrainedModel(Artifact):
    """A model directory from `train`: the fitted recommender, loaded (and verified) on first use."""

    kind = "model"
    manifest_model = ModelManifest
    digest_field = "model_digest"
    manifest: ModelManifest

    @cached_property
    def model(self):
        from persotool.kernels.models.registry import load

        return load(self.path)

    def recommend(self, users, k: int = 10, exclude_seen: bool = True):
        """Top-k item indices and scores for one user index or a batch."""
        return self.model.recommend(users, k, exclude_seen)

    @property
    def split(self):
        from persotool.stages.split.result import Split

        return Split(self.manifest.split.path)

    @property
    def dataset(self):
        from persotool.stages.ingest.result import Dataset

        return Dataset(self.manifest.dataset.path)

    @property
    def _valid_key(self) -> str:
        return f"valid_{self.manifest.valid_metric}"

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        history = m.history or {}
        result = {
            "output": str(self.path),
            "model": m.model,
            "params": m.params,
            "fit_seconds": m.fit_seconds,
            "epochs": len(next(iter(history.values()), [])),
            "item_features": m.item_features,
            "mlflow_run_id": self.mlflow_run_id,
        }
        if self._valid_key in history:
            result[f"best_{self._valid_key}"] = max(history[self._valid_key])
        return result

    def measures(self) -> dict[str, float]:
        scores = (self.manifest.history or {}).get(self._valid_key)
        found = {"fit_seconds": self.manifest.fit_seconds}
        if scores:
            found[self._valid_key] = max(scores)
        return found

    def blocks(self) -> list[render.Block]:
        m = self.manifest
        lines: list[render.Block] = [f"[bold]Trained[/bold] {m.model} in {m.fit_seconds:.2f}s -> {self.path}"]
        scores = (m.history or {}).get(self._valid_key)
        if scores:
            lines.append(f"best validation {m.valid_metric}: {max(scores):.4f} after {len(scores)} epochs")
        return lines
