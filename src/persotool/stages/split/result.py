"""A split directory: train, valid (when cut) and test, the dataset it came from, its leakage
report; the tables are read on first use."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from persotool.kernels import render
from persotool.kernels.artifact import Artifact, Manifest, Ref


class SplitManifest(Manifest):
    split_digest: str
    dataset: Ref
    n_users: int
    n_items: int
    config: dict[str, Any]
    config_hash: str
    counts: dict[str, Any]
    leakage: dict[str, Any]
    files: dict[str, str]
    seconds: float


class Split(Artifact):
    """A split directory: train, valid (when cut) and test, and the dataset it came from."""

    kind = "split"
    manifest_model = SplitManifest
    digest_field = "split_digest"
    manifest: SplitManifest

    @property
    def n_users(self) -> int:
        return self.manifest.n_users

    @property
    def n_items(self) -> int:
        return self.manifest.n_items

    @cached_property
    def train(self):
        return self.table("train")

    @cached_property
    def test(self):
        return self.table("test")

    @cached_property
    def valid(self):
        return self.table("valid") if (self.path / "valid.parquet").is_file() else None

    @property
    def dataset_path(self) -> Path:
        return Path(self.manifest.dataset.path)

    @property
    def dataset(self):
        from persotool.stages.ingest.result import Dataset

        return Dataset(self.manifest.dataset.path)

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "output": str(self.path),
            "split_digest": m.split_digest,
            **m.counts,
            "leakage": m.leakage,
            "mlflow_run_id": self.mlflow_run_id,
        }

    def measures(self) -> dict[str, float]:
        return {key: value for key, value in self.manifest.counts.items() if isinstance(value, int | float)}

    def blocks(self) -> list[render.Block]:
        m = self.manifest
        pairs = [(key.replace("_", " "), f"{value:,}") for key, value in m.counts.items()]
        pairs += [
            (f"{part}: {key.replace('_', ' ')}", f"{value:,}")
            for part, report in m.leakage.items()
            for key, value in report.items()
        ]
        return [render.key_values(f"Split {self.path} ({m.config['strategy']})", pairs)]

    def notes(self) -> list[str]:
        counts = self.manifest.counts
        cold, users = counts["test_users_without_history"], counts["test_users"]
        if self.manifest.config["test_users"] == "all" and cold and cold * 10 >= users:
            return [
                f"{cold:,} of {users:,} test users ({cold / users:.0%}) have no training history; models can "
                "only rank popular items for them. `test_users` seen keeps users with history only."
            ]
        return []
