"""What each stage returns: a small class over its output directory, with its typed manifest
fields, its tables as polars frames loaded on demand, its digest and its lineage (the dataset a
split came from, the split a model was trained on), and a way to record itself in MLflow.

Every result shows itself three ways, all built from the same numbers: `to_dict()` (what `--json`
prints), a rich renderable (`console.print(result)`, what the command prints) and `to_markdown()`
(also what a notebook displays). `notes()` are the remarks a command prints on stderr."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from persotool.kernels import render
from persotool.kernels import storage as artifacts


class Artifact(render.View):
    """An output directory of one kind, validated on the way in (kind and schema version)."""

    kind: ClassVar[str] = ""
    digest_field: ClassVar[str] = ""

    def __init__(self, path: Path | str) -> None:
        from persotool import manifests

        self.path = Path(path)
        self.manifest = manifests.parse(self.kind, artifacts.read_artifact(self.path, self.kind), str(self.path))
        self.mlflow_run_id: str | None = None
        self.tracked_to = "off"  # where its run was recorded, or why not

    @classmethod
    def load(cls, path: Path | str):
        return cls(path)

    @property
    def digest(self) -> str:
        return getattr(self.manifest, self.digest_field)

    def table(self, name: str):
        """One of the directory's Parquet tables, read now."""
        import polars as pl

        return pl.read_parquet(self.path / f"{name}.parquet")

    def record(self, track) -> str | None:
        """Record this output's MLflow run (a `Tracking` from `persotool.tracking.preflight`)."""
        from persotool.tracking import records

        self.mlflow_run_id = records.record(track, self.path) if track is not None else None
        self.tracked_to = track.describe() if track is not None else "off"
        return self.mlflow_run_id

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "digest": self.digest, "mlflow_run_id": self.mlflow_run_id}

    def blocks(self) -> list[render.Block]:
        return [render.key_values(f"{self.kind} {self.path}", [("digest", self.digest)])]

    def _run_cell(self) -> str:
        return self.mlflow_run_id or f"not tracked ({self.tracked_to})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, digest={self.digest!r})"


class Dataset(Artifact):
    """A dataset directory from `ingest`: interactions, users, items, rejects."""

    kind = "dataset"
    digest_field = "dataset_digest"

    @property
    def counts(self) -> dict[str, Any]:
        return self.manifest.counts

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
        from persotool.stages.ingest import summary

        return summary(self.manifest.to_dict(), self.path)

    def to_dict(self) -> dict[str, Any]:
        return self.summary() | {"mlflow_run_id": self.mlflow_run_id}

    def info(self) -> render.View:
        """Counts, sparsity, activity distributions, time range and rejects (`datasets info`)."""
        from persotool.stages.ingest.info import DatasetInfo

        return DatasetInfo(self.path)

    def blocks(self) -> list[render.Block]:
        result = self.summary()
        keys = ("rows_read", "rows_kept", "rows_rejected", "duplicates_removed", "opted_out_users")
        keys += ("below_threshold", "n_users", "n_items", "n_sessions")
        pairs = [(key.replace("_", " "), f"{result[key]:,}") for key in keys]
        pairs += [(f"  rejected: {reason}", f"{count:,}") for reason, count in result["rejected_by_reason"].items()]
        pairs += [
            ("time range", f"{result['time_min']} .. {result['time_max']}"),
            ("dataset digest", result["dataset_digest"]),
            ("seconds", f"{result['seconds']:.2f}"),
            ("mlflow run", self._run_cell()),
        ]
        return [render.key_values(f"Ingested into {self.path}", pairs)]


class Split(Artifact):
    """A split directory: train, valid (when cut) and test, and the dataset it came from."""

    kind = "split"
    digest_field = "split_digest"

    @cached_property
    def _loaded(self):
        from persotool.stages.split.run import Split as Loaded

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


class TrainedModel(Artifact):
    """A model directory from `train`: the fitted recommender, loaded (and verified) on first use."""

    kind = "model"
    digest_field = "model_digest"

    @cached_property
    def model(self):
        from persotool.kernels.models.base import load

        return load(self.path)

    def recommend(self, users, k: int = 10, exclude_seen: bool = True):
        """Top-k item indices and scores for one user index or a batch."""
        return self.model.recommend(users, k, exclude_seen)

    @property
    def split(self) -> Split:
        return Split(self.manifest.split.path)

    @property
    def dataset(self) -> Dataset:
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

    def blocks(self) -> list[render.Block]:
        m = self.manifest
        lines: list[render.Block] = [f"[bold]Trained[/bold] {m.model} in {m.fit_seconds:.2f}s -> {self.path}"]
        scores = (m.history or {}).get(self._valid_key)
        if scores:
            lines.append(f"best validation {m.valid_metric}: {max(scores):.4f} after {len(scores)} epochs")
        return lines


class Evaluation(Artifact):
    """An evaluation: the flat summary (metrics, beyond-accuracy measures, user counts), the
    per-user and per-segment tables, and what was evaluated (context)."""

    kind = "evaluation"

    def __init__(self, path: Path | str, *, scratch=None) -> None:
        super().__init__(path)
        self._scratch = scratch  # the temporary directory holding an evaluation written nowhere else
        self.summary: dict[str, Any] = self.manifest.summary
        self.context: dict[str, Any] = self.manifest.context

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

    def blocks(self) -> list[render.Block]:
        rows = [[key, render.number(value)] for key, value in self.summary.items()]
        blocks: list[render.Block] = [
            render.Table(f"Evaluation of {self.context.get('model', 'ranked lists')}", ["metric", "value"], rows)
        ]
        segments = self.segments
        if len(segments):
            shown = segments.filter(segments["metric"].str.starts_with("ndcg"))
            rows = [
                [
                    row["segment"],
                    f"{row['users']:,}",
                    row["metric"],
                    f"{row['mean']:.4f}",
                    f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]"
                    if row["ci_low"] is not None
                    else "n/a (too few users)",
                ]
                for row in shown.iter_rows(named=True)
            ]
            title = f"By {self.context.get('segment_by')} (bootstrap 95% CI)"
            blocks.append(render.Table(title, ["segment", "users", "metric", "mean", "95% CI"], rows, left={"metric"}))
        return blocks


class Benchmark(Artifact):
    """A benchmark directory: results (one row per model), tests against the baseline, per-user
    metrics and every trained model."""

    kind = "benchmark"

    @property
    def digest(self) -> str:
        return artifacts.config_hash(self.manifest.config)

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
        return Split(self.manifest.split.path)

    @cached_property
    def config(self):
        from persotool.stages.benchmark.run import BenchmarkConfig

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

    def blocks(self) -> list[render.Block]:
        from persotool.stages.benchmark.run import significance_marks

        cfg = self.config
        marks = significance_marks(self.tests)
        # one column per model, one row per metric: fits a terminal for the usual five or six models
        labels = self.results["model"].to_list()
        by_model = {row["model"]: row for row in self.results.iter_rows(named=True)}
        rows = []
        for name in [*cfg.metric_names(), "fit_seconds"]:
            cells = [name.replace("_seconds", " s")]
            for label in labels:
                value = by_model[label][name]
                if name == "fit_seconds":
                    cells.append(f"{value:.1f}")
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
            f"significant after Holm correction over {len(self.tests)} comparisons (alpha {cfg.alpha}).",
        ]


class Experiment(Artifact):
    """A simulated A/B test directory: results, per-user, per-day and sequential tables."""

    kind = "simulation"

    @property
    def digest(self) -> str:
        return self.manifest.config_hash

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
        return Dataset(self.manifest.dataset.path)

    @cached_property
    def config(self):
        from persotool.kernels.simulation.spec import SimulationConfig

        return SimulationConfig.model_validate(self.manifest.config)

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary, "output": str(self.path), "mlflow_run_id": self.mlflow_run_id}

    def notes(self) -> list[str]:
        return list(getattr(self.manifest, "warnings", None) or [])

    def blocks(self) -> list[render.Block]:
        from persotool.stages.simulate.report import blocks

        return blocks(self.summary, self.results, self.config)


class SyntheticLog(Artifact):
    """A synthetic log from `synth`: the raw log, its ground truth and a schema for `ingest`."""

    kind = "synthetic-log"

    @property
    def digest(self) -> str:
        return self.manifest.config_hash

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

    def blocks(self) -> list[render.Block]:
        m = self.manifest
        return [
            f"[bold]Wrote[/bold] {m.rows:,} rows to {self.log} in {m.seconds:.2f}s",
            f"Ground truth: {self.path / 'ground_truth.npz'}, {self.path / 'ground_truth.json'}",
            f"Next: persotool ingest {self.log} --schema {self.schema} -o DIR",
        ]


class Tuning(Artifact):
    """A tuning directory from `tune`: every trial, the best configuration (a model config file)
    and, for several metrics, the Pareto front."""

    kind = "tuning"

    @property
    def digest(self) -> str:
        return self.manifest.config_hash

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
    def split(self) -> Split:
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


class World(Artifact):
    """A world directory from `calibrate`: the fitted visit model, its uncertainty, diagnostics
    and calibration window; `simulate` loads it with `[world] source = "DIR"`."""

    kind = "world"

    @property
    def digest(self) -> str:
        m = self.manifest
        return artifacts.config_hash({"dataset": m.dataset.digest, "window": m.window, "fit": m.fit["params"]})

    @property
    def users(self):
        """What the model concludes about each user at the cutoff."""
        return self.table("users")

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "output": str(self.path),
            "digest": self.digest,
            "dataset": m.dataset.model_dump(),
            "window": m.window,
            "model": m.model,
            "fit": {k: v for k, v in m.fit.items() if k != "log_cov"},
            "diagnostics": m.diagnostics,
            "engagement": {k: v for k, v in m.engagement.items() if k != "per_active_day"},
            "users": m.users,
            "seconds": m.seconds,
            "mlflow_run_id": self.mlflow_run_id,
        }

    def blocks(self) -> list[render.Block]:
        m = self.manifest
        fit, se = m.fit["params"], m.fit["standard_errors"]
        check = m.diagnostics["active_days"]
        means = m.fit["means"]
        return [
            render.key_values(
                f"World {self.path}",
                [
                    ("dataset", m.dataset.path),
                    ("window", f"{m.window['start'][:10]} to {m.window['until'][:10]} ({m.window['days']} days)"),
                    ("users", f"{m.users:,}"),
                    ("model", m.model),
                    (
                        "log-likelihood",
                        f"{m.fit['log_likelihood']:.1f}" + ("" if m.fit["converged"] else " (not converged)"),
                    ),
                    ("mean daily active-day chance", f"{means['visit_chance']:.4f}"),
                    ("mean daily leaving chance", f"{means['leaving_chance']:.4f}"),
                    ("mean daily return chance", f"{means['return_chance']:.6f}"),
                    ("interactions per active day", f"{m.engagement['mean']:.2f}"),
                    ("seconds", f"{m.seconds:.1f}"),
                    ("mlflow run", self._run_cell()),
                ],
            ),
            render.Table(
                "Fitted parameters (Beta distributions of the daily chances)",
                ["parameter", "of", "value", "standard error"],
                [
                    [name, of, render.number(fit[name]), render.number(se[name])]
                    for name, of in zip(
                        ("alpha", "beta", "gamma", "delta", "epsilon", "zeta"),
                        ("active day", "active day", "leaving", "leaving", "return", "return"),
                        strict=True,
                    )
                ],
                left={"parameter", "of"},
            ),
            render.Table(
                f"In-sample check: users by active days after the first (chi-square p = {check['p_value']:.3g})",
                ["active days", "logs", "fitted model"],
                [
                    [b, str(o), f"{e:.1f}"]
                    for b, o, e in zip(check["bins"], check["observed"], check["expected"], strict=True)
                ],
                left={"active days"},
            ),
        ]


class Backtest(Artifact):
    """A back-test directory from `backtest`: the simulator's forecast of the held-out logs beside
    naive forecasts and noise floors, with a verdict per quantity."""

    kind = "backtest"

    @property
    def digest(self) -> str:
        return self.manifest.config_hash

    @property
    def per_user(self):
        return self.table("per_user")

    @property
    def retention(self):
        return self.table("retention")

    @property
    def quantities(self) -> list[dict[str, Any]]:
        return self.manifest.quantities

    def verdict(self, quantity: str) -> str:
        return next(q["verdict"] for q in self.quantities if q["quantity"] == quantity)

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "output": str(self.path),
            "dataset": m.dataset.model_dump(),
            "window": m.window,
            "fit": {k: v for k, v in m.fit.items() if k != "log_cov"},
            "quantities": m.quantities,
            "verdict": m.verdict,
            "notes": getattr(m, "notes", []),
            "seconds": m.seconds,
            "mlflow_run_id": self.mlflow_run_id,
        }

    def notes(self) -> list[str]:
        return list(getattr(self.manifest, "notes", []))

    def blocks(self) -> list[render.Block]:
        m = self.manifest
        w, v = m.window, m.verdict
        columns = ["quantity", "logs", "simulator", "persistence", "hist. rate", "noise ±", "verdict"]
        rows = [
            [
                _label(q["quantity"]),
                _short(q.get("real")),
                _short(q.get("simulated")),
                _short(q.get("persistence")),
                _short(q.get("historical rate")),
                _short(q.get("noise")),
                _verdict_cell(q["verdict"]),
            ]
            for q in m.quantities
        ]
        return [
            render.key_values(
                f"Back-test {self.path}",
                [
                    ("dataset", m.dataset.path),
                    ("calibrated on", f"{w['start'][:10]} to {w['until'][:10]} ({w['days']} days)"),
                    ("held out", f"{w['held_out_days']} days after the cutoff"),
                    ("known users", f"{v['known_users']:,} ({v['returning_users']:,} returned after the cutoff)"),
                    ("verdicts", ", ".join(f"{n} {k}" for k, n in v["counts"].items())),
                    ("seconds", f"{m.seconds['total']:.1f}"),
                    ("mlflow run", self._run_cell()),
                ],
            ),
            render.Table(
                "The simulator against the held-out logs",
                columns,
                rows,
                left={"quantity", "verdict"},
                compact=True,
                caption="aggregates: values; distributions: means, KS against a real-vs-resampled-real floor; "
                "per user: each forecast's score. better: better than the naive forecast",
            ),
        ]


_LABELS = {
    "share of users returning": "returning share",
    "active days per user": "active days/user",
    "engagement share of the top 10% items": "top-10% item share",
    "gap between active days": "gap (days)",
    "interactions per active day": "interactions/day",
    "AUC of returning": "AUC returning",
    "Spearman of active days": "Spearman days",
    "MAE of active days": "MAE days",
}


def _label(quantity: str) -> str:
    if quantity.startswith("returned within "):
        return "returned ≤ " + quantity.removeprefix("returned within ").replace(" days", " d")
    return _LABELS.get(quantity, quantity)


def _short(value) -> str:
    """Three significant digits; blank when a forecast does not apply."""
    if value is None:
        return ""
    if isinstance(value, float) and value != value:
        return "n/a"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _verdict_cell(verdict: str) -> str:
    colour = {"misfit": "red", "better than the naive forecast": "green", "close": "dim"}.get(verdict)
    verdict = "better" if verdict == "better than the naive forecast" else verdict
    return f"[{colour}]{verdict}[/{colour}]" if colour else verdict
