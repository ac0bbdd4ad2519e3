"""A synthetic log directory from `datasets synth`: the raw log, its ground truth and a schema for
`ingest`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from persotool.kernels import render
from persotool.kernels.artifact import Artifact, Manifest


class SyntheticLogManifest(Manifest):
    config: dict[str, Any]
    config_hash: str
    log: str
    rows: int
    truth: dict[str, Any]
    files: dict[str, str]
    seconds: float


class SyntheticLog(Artifact):
    """A synthetic log from `synth`: the raw log, its ground truth and a schema for `ingest`."""

    kind = "synthetic-log"
    manifest_model = SyntheticLogManifest
    manifest: SyntheticLogManifest

    @property
    def log(self) -> Path:
        return self.path / self.manifest.log

    @property
    def schema(self) -> Path:
        return self.path / "schema.toml"

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "output": str(self.path),
            "log": str(self.log),
            "rows": m.rows,
            "schema": str(self.schema),
            "truth": m.truth,
            "seconds": m.seconds,
            "mlflow_run_id": self.mlflow_run_id,
        }

    def measures(self) -> dict[str, float]:
        return {"rows": float(self.manifest.rows)}

    def blocks(self) -> list[render.Block]:
        m = self.manifest
        if m.config.get("impressions"):
            values = ", ".join(f"{k} {v:.4f}" for k, v in m.truth["values"].items())
            return [
                f"[bold]Wrote[/bold] {m.rows:,} impressions to {self.log} in {m.seconds:.2f}s",
                f"True values per impression: {values}; targets in {self.path / 'targets'}",
                f"Next: persotool ingest {self.log} --schema {self.schema} -o DIR; "
                f"persotool ope DIR --policy {self.path / 'targets' / 'far.npy'} -o OUT",
            ]
        return [
            f"[bold]Wrote[/bold] {m.rows:,} rows to {self.log} in {m.seconds:.2f}s",
            f"Ground truth: {self.path / 'ground_truth.npz'}, {self.path / 'ground_truth.json'}",
            f"Next: persotool ingest {self.log} --schema {self.schema} -o DIR",
        ]
