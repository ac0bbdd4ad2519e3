"""What each stage returns: a small class over its output directory, with its typed manifest
fields, its tables as polars frames loaded on demand, its digest and its lineage (the dataset a
split came from, the split a model was trained on), and a way to record itself in MLflow."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from persotool.data import artifacts


class Artifact:
    """An output directory of one kind, validated on the way in (kind and schema version)."""

    kind: ClassVar[str] = ""
    digest_field: ClassVar[str] = ""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.manifest: dict[str, Any] = artifacts.read_artifact(self.path, self.kind)
        self.mlflow_run_id: str | None = None

    @classmethod
    def load(cls, path: Path | str):
        return cls(path)

    @property
    def digest(self) -> str:
        return self.manifest[self.digest_field]

    def table(self, name: str):
        """One of the directory's Parquet tables, read now."""
        import polars as pl

        return pl.read_parquet(self.path / f"{name}.parquet")

    def record(self, track) -> str | None:
        """Record this output's MLflow run (a `Tracking` from `persotool.tracking.preflight`)."""
        from persotool.tracking import records

        self.mlflow_run_id = records.record(track, self.path) if track is not None else None
        return self.mlflow_run_id

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "digest": self.digest, "mlflow_run_id": self.mlflow_run_id}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, digest={self.digest!r})"


class Dataset(Artifact):
    """A dataset directory from `ingest`: interactions, users, items, rejects."""

    kind = "dataset"
    digest_field = "dataset_digest"

    @property
    def counts(self) -> dict[str, Any]:
        return self.manifest["counts"]

    @cached_property
    def interactions(self):
        return self.table("interactions")

    @cached_property
    def users(self):
        return self.table("users")

    @cached_property
    def items(self):
        return self.table("items")

    @cached_property
    def rejects(self):
        return self.table("rejects")

    def summary(self) -> dict[str, Any]:
        """The flat summary `ingest --json` prints."""
        from persotool.data.ingest import summary

        return summary(self.manifest, self.path)


class Split(Artifact):
    """A split directory: train, valid (when cut) and test, and the dataset it came from."""

    kind = "split"
    digest_field = "split_digest"

    @cached_property
    def _loaded(self):
        from persotool.data.splits import Split as Loaded

        return Loaded(self.path)

    @property
    def train(self):
        return self._loaded.train

    @property
    def valid(self):
        return self._loaded.valid

    @property
    def test(self):
        return self._loaded.test

    @property
    def dataset(self) -> Dataset:
        return Dataset(self.manifest["dataset"]["path"])


class TrainedModel(Artifact):
    """A model directory from `train`: the fitted recommender, loaded (and verified) on first use."""

    kind = "model"
    digest_field = "model_digest"

    @cached_property
    def model(self):
        from persotool.models.base import load

        return load(self.path)

    def recommend(self, users, k: int = 10, exclude_seen: bool = True):
        """Top-k item indices and scores for one user index or a batch."""
        return self.model.recommend(users, k, exclude_seen)

    @property
    def split(self) -> Split:
        return Split(self.manifest["split"]["path"])

    @property
    def dataset(self) -> Dataset:
        return Dataset(self.manifest["dataset"]["path"])


class Evaluation(Artifact):
    """An evaluation: the flat summary (metrics, beyond-accuracy measures, user counts), the
    per-user and per-segment tables, and what was evaluated (context)."""

    kind = "evaluation"

    def __init__(self, path: Path | str, *, scratch=None) -> None:
        super().__init__(path)
        self._scratch = scratch  # the temporary directory holding an evaluation written nowhere else
        self.summary: dict[str, Any] = self.manifest["summary"]
        self.context: dict[str, Any] = self.manifest["context"]

    @property
    def digest(self) -> str:
        return artifacts.config_hash(self.summary)

    @cached_property
    def per_user(self):
        return self.table("per_user")

    @cached_property
    def segments(self):
        return self.table("segments")

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary, "mlflow_run_id": self.mlflow_run_id}


class Benchmark(Artifact):
    """A benchmark directory: results (one row per model), tests against the baseline, per-user
    metrics and every trained model."""

    kind = "benchmark"

    @property
    def digest(self) -> str:
        return artifacts.config_hash(self.manifest["config"])

    @cached_property
    def results(self):
        import polars as pl

        return pl.read_csv(self.path / "results.csv")

    @cached_property
    def tests(self):
        import polars as pl

        return pl.read_csv(self.path / "tests.csv")

    @cached_property
    def per_user(self):
        return self.table("per_user")

    def model(self, label: str) -> TrainedModel:
        return TrainedModel(self.path / "models" / label)

    @property
    def split(self) -> Split:
        return Split(self.manifest["split"]["path"])


class Experiment(Artifact):
    """A simulated A/B test directory: results, per-user, per-day and sequential tables."""

    kind = "simulation"

    @property
    def digest(self) -> str:
        return self.manifest["config_hash"]

    @cached_property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.path / "results.json").read_text())

    @cached_property
    def results(self):
        import polars as pl

        return pl.read_csv(self.path / "results.csv")

    @cached_property
    def per_user(self):
        return self.table("per_user")

    @cached_property
    def per_day(self):
        return self.table("per_day")

    @property
    def dataset(self) -> Dataset:
        return Dataset(self.manifest["dataset"]["path"])


class SyntheticLog(Artifact):
    """A synthetic log from `synth`: the raw log, its ground truth and a schema for `ingest`."""

    kind = "synthetic-log"

    @property
    def digest(self) -> str:
        return self.manifest["config_hash"]

    @property
    def log(self) -> Path:
        return self.path / self.manifest["log"]

    @property
    def schema(self) -> Path:
        return self.path / "schema.toml"
