"""Several models on one split from one config: train each, evaluate each on the same users, test
each against a baseline, and write a benchmark directory (results table as CSV and Markdown, paired
tests, per-user metrics, a comparison plot and every trained model)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, field_validator, model_validator

from persotool.errors import ConfigError
from persotool.kernels.config import Strict


class ModelEntry(Strict):
    """One contender: a registry model name with parameters, or a model config file
    (configs/models/*.toml, resolved relative to the benchmark config) with optional overrides."""

    model: str | None = None
    config: Path | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> ModelEntry:
        if self.model is None and self.config is None:
            raise ValueError("needs `model = NAME` or `config = PATH`")
        return self


class BenchmarkConfig(Strict):
    """configs/benchmark.toml."""

    name: str = "benchmark"
    baseline: str = Field(description="the entry every other model is tested against")
    k: list[int] = Field(default_factory=lambda: [10], description="cut-offs")
    metrics: list[str] = Field(default_factory=lambda: ["precision", "recall", "ndcg", "map", "mrr", "hit_rate", "auc"])
    alpha: float = Field(0.05, gt=0, lt=1, description="family-wise error rate of the Holm-corrected tests")
    on: Literal["test", "valid"] = "test"
    valid_k: int = Field(10, ge=1, description="cut-off of the validation NDCG used for early stopping")
    use_features: bool = True
    seed: int = Field(0, ge=0, le=2**32 - 1, description="root seed")
    models: dict[str, ModelEntry]

    @field_validator("k")
    @classmethod
    def _k(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError("cut-offs must be positive integers")
        return sorted(set(value))

    @model_validator(mode="after")
    def _baseline(self) -> BenchmarkConfig:
        if len(self.models) < 2:
            raise ValueError("a benchmark needs at least two models")
        if self.baseline not in self.models:
            raise ValueError(f"baseline {self.baseline!r} is not one of the models ({', '.join(self.models)})")
        return self

    def metric_names(self) -> list[str]:
        names = []
        for metric in self.metrics:
            names += [metric] if metric == "auc" or "@" in metric else [f"{metric}@{k}" for k in self.k]
        return names

    def adding(self, configs: dict[str, Path | str]) -> BenchmarkConfig:
        """The same benchmark with more contenders, each a model config file (e.g. a study's
        best.toml), under a new label."""
        taken = [label for label in configs if label in self.models]
        if taken:
            raise ConfigError(f"`add`: {taken[0]!r} is already a model of this benchmark")
        for label, path in configs.items():
            if not Path(path).is_file():
                raise ConfigError(f"`add`: no model config file for {label!r}", where=str(path))
        extra = {label: ModelEntry(config=Path(path).resolve()) for label, path in configs.items()}
        return self.model_copy(update={"models": {**self.models, **extra}})

    def only(self, labels: list[str]) -> BenchmarkConfig:
        """The same benchmark over a subset of its models (the baseline is always kept)."""
        unknown = [label for label in labels if label not in self.models]
        if unknown:
            raise ConfigError(f"`only`: {unknown[0]!r} is not a model of this benchmark ({', '.join(self.models)})")
        kept = {k: v for k, v in self.models.items() if k in labels or k == self.baseline}
        if len(kept) < 2:
            raise ConfigError("`only`: a benchmark needs at least one model besides the baseline")
        return self.model_copy(update={"models": kept})


def load_config(path: Path | str, overrides: dict[str, Any] | None = None) -> BenchmarkConfig:
    """A benchmark config file with `overrides`; model config paths resolved against the file."""
    from persotool.kernels.config import load_config as load
    from persotool.kernels.metrics.definitions import parse

    cfg = load(BenchmarkConfig, path, overrides)
    for entry in cfg.models.values():
        if entry.config is not None and not entry.config.is_absolute():
            entry.config = (Path(path).parent / entry.config).resolve()
    for name in cfg.metric_names():
        parse(name)
    return cfg


def resolve_model(label: str, entry: ModelEntry) -> tuple[str, dict[str, Any]]:
    """(registry name, parameters) of one entry; a config file's [params] under the entry's."""
    from persotool.kernels.config import model_config

    return model_config(entry.config, entry.model, entry.params, label=label)


@dataclass
class ModelRun:
    label: str
    model: str
    params: dict[str, Any]
    summary: dict[str, float]
    beyond: dict[str, float]
    per_user: pl.DataFrame
    fit_seconds: float
    eval_seconds: float
    history: dict[str, list[float]]
    manifest: dict[str, Any]


@dataclass
class BenchmarkResult:
    config: BenchmarkConfig
    runs: list[ModelRun]
    results: pl.DataFrame
    tests: pl.DataFrame
    users_evaluated: int
    users_without_relevant: int
    manifest: dict[str, Any] = field(default_factory=dict)


def run(
    split_dir: Path,
    cfg: BenchmarkConfig,
    out: Path,
    *,
    force: bool = False,
    progress: Callable[[str, str], None] | None = None,
) -> BenchmarkResult:
    """Train and evaluate every model of `cfg` on `split_dir`, writing the benchmark to `out`."""
    from persotool.kernels import storage as artifacts
    from persotool.kernels.metrics.comparison import compare
    from persotool.kernels.metrics.ranking import evaluate_model
    from persotool.kernels.models import fitting as training
    from persotool.stages.split.run import Split

    artifacts.check_output(out, force=force, inputs=[split_dir])
    split = Split(split_dir)
    truth = split.test if cfg.on == "test" else split.valid
    if truth is None:
        raise ConfigError(f"on = {cfg.on!r}: the split has no validation part (cut one when splitting)")
    names = cfg.metric_names()
    resolved = {label: resolve_model(label, entry) for label, entry in cfg.models.items()}
    for name, params in resolved.values():
        training.build(name, params)  # every entry is checked before the first one trains
    vectors, _ = training.feature_matrix(split.dataset_path, "item", split.n_items)
    runs: list[ModelRun] = []
    evaluated = without = 0
    with artifacts.atomic_directory(out, force=force, inputs=[split_dir]) as tmp:
        for label, (name, params) in resolved.items():
            if progress:
                progress(label, "training")
            model, info = training.train(split, name, params, valid_k=cfg.valid_k, use_features=cfg.use_features)
            manifest = training.save(model, tmp / "models" / label, split, info)
            if progress:
                progress(label, "evaluating")
            started = time.perf_counter()
            result = evaluate_model(model, truth, names, n_items=split.n_items, item_features=vectors, seed=cfg.seed)
            eval_seconds = time.perf_counter() - started
            evaluated, without = result.users_evaluated, result.users_without_relevant
            runs.append(
                ModelRun(
                    label,
                    name,
                    info["params"],
                    result.summary,
                    result.beyond,
                    result.per_user,
                    info["fit_seconds"],
                    round(eval_seconds, 3),
                    info["history"],
                    manifest,
                )
            )
        results = results_table(runs, names)
        tests = compare({r.label: r.per_user for r in runs}, cfg.baseline, names, alpha=cfg.alpha)
        per_user = pl.concat([r.per_user.select(pl.lit(r.label).alias("model"), pl.all()) for r in runs])
        results.write_csv(tmp / "results.csv")
        tests.write_csv(tmp / "tests.csv")
        per_user.write_parquet(tmp / "per_user.parquet")
        (tmp / "results.md").write_text(markdown(results, tests, cfg), encoding="utf-8")
        plot(runs, names, cfg, tmp / "comparison.png")
        manifest = artifacts.new_manifest(
            "benchmark",
            name=cfg.name,
            config=cfg.model_dump(mode="json"),
            split={"path": str(split.path.resolve()), "digest": split.manifest["split_digest"]},
            dataset=split.manifest["dataset"],
            models={r.label: {"model": r.model, "params": r.params} for r in runs},
            users_evaluated=evaluated,
            users_without_relevant=without,
        )
        artifacts.write_json_atomic(tmp / artifacts.MANIFEST, manifest)
    return BenchmarkResult(cfg, runs, results, tests, evaluated, without, manifest)


def results_table(runs: list[ModelRun], names: list[str]) -> pl.DataFrame:
    rows = []
    for r in runs:
        beyond = {key: r.beyond.get(key, float("nan")) for key in sorted(r.beyond)}
        row = {"model": r.label, **{n: r.summary[n] for n in names}, **beyond}
        rows.append(row | {"fit_seconds": r.fit_seconds, "eval_seconds": r.eval_seconds})
    return pl.DataFrame(rows)


def significance_marks(tests: pl.DataFrame) -> dict[tuple[str, str], str]:
    """(model, metric) -> a mark: '+' significantly better than the baseline, '-' worse."""
    marks = {}
    for row in tests.iter_rows(named=True):
        if row["significant"]:
            marks[(row["model"], row["metric"])] = "+" if row["difference"] > 0 else "-"
    return marks


def markdown(results: pl.DataFrame, tests: pl.DataFrame, cfg: BenchmarkConfig) -> str:
    names = cfg.metric_names()
    marks = significance_marks(tests)
    header = ["model", *names, "fit s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results.iter_rows(named=True):
        cells = [f"**{row['model']}** (baseline)" if row["model"] == cfg.baseline else row["model"]]
        for name in names:
            mark = {"+": " ▲", "-": " ▼"}.get(marks.get((row["model"], name), ""), "")
            cells.append(f"{row[name]:.4f}{mark}")
        cells.append(f"{row['fit_seconds']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"▲/▼: better/worse than {cfg.baseline} by both a paired t-test and a Wilcoxon signed-rank test, "
        f"Holm-corrected over all {len(tests)} comparisons, at alpha = {cfg.alpha}."
    )
    return "\n".join(lines) + "\n"


def plot(runs: list[ModelRun], names: list[str], cfg: BenchmarkConfig, path: Path) -> Path:
    """One panel per metric: each model's mean with a t-based 95% confidence interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    shown = names[:8]
    cols = min(4, len(shown))
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 0.45 * len(runs) * rows + 1.4 * rows), squeeze=False)
    labels = [r.label for r in runs]
    for ax, name in zip(axes.ravel(), shown, strict=False):
        means, errors = [], []
        for r in runs:
            values = r.per_user[name].to_numpy()
            values = values[np.isfinite(values)]
            means.append(values.mean() if len(values) else np.nan)
            half = stats.sem(values) * stats.t.ppf(0.975, len(values) - 1) if len(values) > 1 else 0.0
            errors.append(half)
        colors = ["#888888" if label == cfg.baseline else "#3b6ea5" for label in labels]
        ax.barh(labels, means, xerr=errors, color=colors, capsize=3)
        ax.invert_yaxis()
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=8)
    for ax in axes.ravel()[len(shown) :]:
        ax.axis("off")
    fig.suptitle(f"{cfg.name}: mean per user with 95% CI (grey: baseline)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
