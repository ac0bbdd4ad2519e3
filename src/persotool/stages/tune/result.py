"""A tuning directory from `tune`: every trial, the best configuration (a model config file) and,
for several metrics, the Pareto front."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from persotool.kernels import render
from persotool.kernels.artifact import Artifact, Manifest, Ref


class TuningManifest(Manifest):
    study: str
    storage: str
    model: str
    config: dict[str, Any]
    config_hash: str
    space: dict[str, Any]
    split: Ref
    dataset: Ref
    directions: list[str]
    totals: dict[str, int]
    trials: int
    best: dict[str, Any] | None


class Tuning(Artifact):
    """A tuning directory from `tune`: every trial, the best configuration (a model config file)
    and, for several metrics, the Pareto front."""

    kind = "tuning"
    manifest_model = TuningManifest
    tables = ("trials.parquet",)
    manifest: TuningManifest

    @cached_property
    def trials(self):
        return self.table("trials")

    @property
    def best_config(self) -> Path | None:
        path = self.path / "best.toml"
        return path if path.is_file() else None

    @property
    def best_params(self) -> dict[str, Any]:
        from persotool.kernels.config import load_toml

        return load_toml(self.best_config)["params"] if self.best_config else {}

    @property
    def split(self):
        from persotool.stages.split.result import Split

        return Split(self.manifest.split.path)

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "output": str(self.path),
            "study": m.study,
            "storage": m.storage,
            "model": m.model,
            "trials": m.trials,
            "totals": m.totals,
            "best": m.best,
            "best_config": str(self.best_config) if self.best_config else None,
            "mlflow_run_id": self.mlflow_run_id,
        }

    def notes(self) -> list[str]:
        notes = list(getattr(self.manifest, "notes", None) or [])
        best = self.manifest.best or {}
        tied = best.get("tied_with") or []
        if tied:
            metric = self.manifest.config["metrics"][0]
            shown = ", ".join(str(n) for n in tied[:10]) + (" ..." if len(tied) > 10 else "")
            notes.append(
                f"{len(tied) + 1} trials tie exactly at the best {metric} ({best['values'][metric]:.6g}): trial "
                f"{best['number']} is kept, but {shown} score the same with other parameters; the validation "
                "part cannot choose between them"
            )
        running = self.trials.filter(self.trials["state"] == "running") if len(self.trials) else self.trials
        if len(running):
            notes.append(
                f"{len(running)} trials were still running in other workers when this one wrote its results "
                f"({', '.join(str(n) for n in running['number'].to_list()[:10])}); rerun `tune` with the same "
                "output once they finish to see every trial"
            )
        return notes

    def measures(self) -> dict[str, float]:
        best = self.manifest.best or {}
        return {name: float(value) for name, value in (best.get("values") or {}).items()}

    def blocks(self) -> list[render.Block]:
        m = self.manifest
        metrics = m.config["metrics"]
        totals = ", ".join(f"{k} {v}" for k, v in sorted(m.totals.items()))
        shown: list[render.Block] = [
            f"[bold]{m.model}[/bold]: study {m.study!r}, {m.trials} trials ({totals}); storage {m.storage}"
        ]
        done = self.trials.filter(self.trials["state"] == "complete") if len(self.trials) else self.trials
        if len(done):
            ascending = m.directions[0] == "minimize"
            top = done.sort(metrics[0], descending=not ascending).head(5)
            params = [c for c in top.columns if c.startswith("param.")]
            rows = [
                [str(r["number"]), *(f"{r[x]:.4f}" for x in metrics), *(_cell(r[c]) for c in params)]
                for r in top.iter_rows(named=True)
            ]
            columns = ["trial", *metrics, *(c.removeprefix("param.") for c in params)]
            shown.append(render.Table("Best trials (validation part)", columns, rows))
        if self.best_config:
            shown.append(f"Best configuration: {self.best_config} (use it with `persotool train --config`)")
        return shown


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
