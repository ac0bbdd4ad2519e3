"""A benchmark directory: results (one row per model), tests against the baseline, per-user
metrics and every trained model (each a model directory `evaluate` and `simulate` accept)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from persotool.kernels import render, storage
from persotool.kernels.artifact import Artifact, Manifest, Ref

if TYPE_CHECKING:
    import polars as pl


class BenchmarkManifest(Manifest):
    config: dict[str, Any]
    split: Ref
    dataset: Ref
    models: dict[str, Any]
    users_evaluated: int
    users_without_relevant: int


class Benchmark(Artifact):
    """A benchmark directory: results (one row per model), tests against the baseline, per-user
    metrics and every trained model. Gate it on a model's figure: `require({"ease.ndcg@10": 0.05})`."""

    kind = "benchmark"
    manifest_model = BenchmarkManifest
    tables = ("results.csv", "tests.csv", "per_user.parquet")
    manifest: BenchmarkManifest

    @property
    def digest(self) -> str:
        m = self.manifest
        models = {label: self.model(label).digest for label in m.models}
        return storage.lineage_digest({}, parents={"split": m.split.digest, **models}, config=m.config)

    def verify(self):
        """The benchmark's tables, and every model in it as `train` wrote it."""
        super().verify()
        for label in self.manifest.models:
            self.model(label).verify()
        return self

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

    def model(self, label: str):
        from persotool.stages.train.result import TrainedModel

        return TrainedModel(self.path / "models" / label)

    @property
    def split(self):
        from persotool.stages.split.result import Split

        return Split(self.manifest.split.path)

    @cached_property
    def config(self):
        from persotool.stages.benchmark.config import BenchmarkConfig

        return BenchmarkConfig.model_validate(self.manifest.config)

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.path),
            "baseline": self.config.baseline,
            "users_evaluated": self.manifest.users_evaluated,
            "results": self.results.to_dicts(),
            "tests": self.tests.to_dicts(),
            "mlflow_run_id": self.mlflow_run_id,
        }

    def notes(self) -> list[str]:
        from persotool.kernels.metrics.coverage import cold_notes

        notes = cold_notes(getattr(self.manifest, "cold", None) or {})
        values = self.results.select(self.config.metric_names())
        if len(values) > 1 and all(values[c].n_unique() == 1 for c in values.columns):
            notes.append("every model scores exactly the same on every metric: nothing here tells them apart")
        return notes

    def measures(self) -> dict[str, float]:
        """Every model's figures as `MODEL.METRIC` (ease.ndcg@10)."""
        return {
            f"{row['model']}.{key}": value
            for row in self.results.iter_rows(named=True)
            for key, value in row.items()
            if key != "model" and isinstance(value, int | float)
        }

    def blocks(self) -> list[render.Block]:
        cfg = self.config
        marks = significance_marks(self.tests)
        # one column per model, one row per metric: fits a terminal for the usual five or six models
        labels = self.results["model"].to_list()
        by_model = {row["model"]: row for row in self.results.iter_rows(named=True)}
        rows = []
        overlap = [c for c in self.results.columns if c.startswith(("jaccard_vs_baseline@", "rbo_vs_baseline@"))]
        for name in [*cfg.metric_names(), *overlap, "fit_seconds"]:
            cells = [name.replace("_seconds", " s").replace("_vs_baseline", " vs baseline")]
            for label in labels:
                value = by_model[label][name]
                if name == "fit_seconds":
                    cells.append(f"{value:.1f}")
                    continue
                if name in overlap:  # no test: how much the lists differ, not which is better
                    cells.append(f"{value:.3f}  ")
                    continue
                mark = {"+": " [green]▲[/green]", "-": " [red]▼[/red]"}.get(marks.get((label, name), ""), "  ")
                cells.append(f"{value:.4f}{mark}")
            rows.append(cells)
        columns = [
            "metric",
            *(f"{label}\n[dim](baseline)[/dim]" if label == cfg.baseline else label for label in labels),
        ]
        title = f"{cfg.name}: {self.manifest.users_evaluated:,} users, full ranking, {cfg.on} set"
        return [
            render.Table(title, columns, rows),
            f"[green]▲[/green]/[red]▼[/red]: better/worse than {cfg.baseline}, paired t-test and Wilcoxon both "
            f"significant after Holm correction over {len(self.tests)} comparisons (alpha {cfg.alpha})."
            + (
                f" jaccard/rbo vs baseline: how much each model's top-k lists overlap {cfg.baseline}'s for the same "
                "users (mean Jaccard of the sets, rank-biased overlap with p = 0.9; 1: the same lists)."
                if overlap
                else ""
            ),
        ]


def significance_marks(tests: pl.DataFrame) -> dict[tuple[str, str], str]:
    """(model, metric) -> a mark: '+' significantly better than the baseline, '-' worse."""
    marks = {}
    for row in tests.iter_rows(named=True):
        if row["significant"]:
            marks[(row["model"], row["metric"])] = "+" if row["difference"] > 0 else "-"
    return marks
