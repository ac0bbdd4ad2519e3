"""A simulated A/B test directory from `simulate`: results, per-user, per-day and sequential
tables, the report, and (with several worlds) the robustness of each effect."""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

from persotool.kernels import render
from persotool.kernels.artifact import Artifact, Manifest, Ref
from persotool.stages.simulate.analysis import HARMFUL_WHEN_HIGHER


class ExperimentManifest(Manifest):
    config: dict[str, Any]
    config_hash: str
    dataset: Ref
    calibration: dict[str, Any]
    arm_sizes: dict[str, int]
    srm_p: float | None
    user_days: int
    seconds: dict[str, float]
    impressions: dict[str, Any] | None = None  # truth.json of the impression logs (impressions.epsilon)


class Experiment(Artifact):
    """A simulated A/B test directory: results, per-user, per-day and sequential tables."""

    kind = "simulation"
    schema_version = 2
    manifest_model = ExperimentManifest
    tables = ("results.csv", "results.json", "per_user.parquet", "per_day.parquet")
    manifest: ExperimentManifest

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
    def dataset(self):
        from persotool.stages.ingest.result import Dataset

        return Dataset(self.manifest.dataset.path)

    @cached_property
    def config(self):
        from persotool.stages.simulate.config import SimulationConfig

        return SimulationConfig.model_validate(self.manifest.config)

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary, "output": str(self.path), "mlflow_run_id": self.mlflow_run_id}

    def notes(self) -> list[str]:
        notes = list(getattr(self.manifest, "warnings", None) or [])
        logs = self.manifest.impressions
        if logs:
            loggers = ", ".join(logs["loggers"])
            notes.append(
                f"impression logs with exact propensities (epsilon {logs['epsilon']:g}) of {loggers} in "
                f"{self.path / 'impressions'}: ingest ARM.parquet with its schema.toml, then `persotool ope` with "
                "targets/LOGGER/ARM.npy; truth.json holds the exact values"
            )
        return notes

    def blocks(self) -> list[render.Block]:
        from persotool.stages.simulate.report import blocks

        return blocks(self.summary, self.results, self.config)

    def measures(self) -> dict[str, float]:
        """Every tested effect as `ARM.METRIC.effect`, its family-adjusted p-value as
        `.p_adjusted`, and `harmed_guardrails`: how many guardrails an arm significantly harms
        (`require(ceilings={"harmed_guardrails": 0})` fails an experiment that harms one); with
        segments, `harmed_segments` (a guardrail significantly worse in a segment) and
        `differential_segments` (an effect that differs from the rest's)."""
        found: dict[str, float] = {}
        harmed = 0
        for row in self.results.iter_rows(named=True):
            key = f"{row['arm']}.{row['metric']}"
            found[f"{key}.effect"] = row["effect"]
            found[f"{key}.p_adjusted"] = row["p_adjusted"]
            worse = row["effect"] is not None and (row["effect"] > 0) == (row["metric"] in HARMFUL_WHEN_HIGHER)
            harmed += int(row["family"] == "guardrail" and bool(row["significant"]) and worse)
        found["harmed_guardrails"] = float(harmed)
        segments = self.summary.get("segments")
        if segments:
            found["harmed_segments"] = float(len(segments["harmed"]))
            found["differential_segments"] = float(len(segments["differential"]))
        return found
