"""Several models on one split from one config: train each, evaluate each on the same users, test
each against a baseline, and write a benchmark directory (results table as CSV and Markdown, paired
tests, per-user metrics, a comparison plot and every trained model)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from persotool.errors import ConfigError
from persotool.kernels.models.features import feature_matrix
from persotool.kernels.models.registry import build
from persotool.stages.benchmark.config import BenchmarkConfig, ModelEntry
from persotool.stages.benchmark.result import Benchmark, significance_marks

Progress = Callable[[str, str], None]


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
    recommendations: Any = None  # (users, K) top-K item indices, for the stability against the baseline


def run(split, cfg: BenchmarkConfig, out: Path, *, force: bool = False, progress: Progress | None = None):
    """Train and evaluate every model of `cfg` on `split`, writing the benchmark to `out`;
    `progress(label, stage)` hears when each model starts training and evaluating."""
    from persotool.kernels import storage as artifacts
    from persotool.kernels import training
    from persotool.kernels.metrics.comparison import compare
    from persotool.kernels.metrics.coverage import cold_counts
    from persotool.kernels.metrics.definitions import parse
    from persotool.kernels.metrics.ranking import evaluate_model
    from persotool.stages.split.result import Split
    from persotool.stages.train.run import save

    split_dir = Path(getattr(split, "path", split))
    out = Path(out)
    for name in cfg.metric_names():
        parse(name)
    artifacts.check_output(out, force=force, inputs=[split_dir])
    split = Split(split_dir)
    truth = split.test if cfg.on == "test" else split.valid
    if truth is None:
        raise ConfigError(f"on = {cfg.on!r}: the split has no validation part (cut one when splitting)")
    names = cfg.metric_names()
    resolved = {label: resolve_model(label, entry) for label, entry in cfg.models.items()}
    for name, params in resolved.values():
        build(name, params)  # every entry is checked before the first one trains
    vectors, _ = feature_matrix(split.dataset_path, "item", split.n_items)
    runs: list[ModelRun] = []
    evaluated = without = 0
    with artifacts.atomic_directory(out, force=force, inputs=[split_dir]) as tmp:
        for label, (name, params) in resolved.items():
            if progress:
                progress(label, "training")
            model, info = training.train(split, name, params, valid_k=cfg.valid_k, use_features=cfg.use_features)
            manifest = save(model, tmp / "models" / label, split, info)
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
                    result.recommendations,
                )
            )
        _against_baseline(runs, cfg.baseline)
        results = results_table(runs, names)
        tests = compare({r.label: r.per_user for r in runs}, cfg.baseline, names, alpha=cfg.alpha)
        per_user = pl.concat([r.per_user.select(pl.lit(r.label).alias("model"), pl.all()) for r in runs])
        results.write_csv(tmp / "results.csv")
        tests.write_csv(tmp / "tests.csv")
        per_user.write_parquet(tmp / "per_user.parquet")
        (tmp / "results.md").write_text(markdown(results, tests, cfg), encoding="utf-8")
        plot(runs, names, cfg, tmp / "comparison.png")
        manifest = artifacts.new_manifest(
            Benchmark.kind,
            Benchmark.schema_version,
            name=cfg.name,
            config=cfg.model_dump(mode="json"),
            split={"path": str(split.path.resolve()), "digest": split.digest},
            dataset=split.manifest.dataset.model_dump(),
            models={r.label: {"model": r.model, "params": r.params} for r in runs},
            users_evaluated=evaluated,
            users_without_relevant=without,
            cold=cold_counts(split.train, truth),
        )
        artifacts.write_json_atomic(tmp / artifacts.MANIFEST, manifest)
    return Benchmark(out)


def _against_baseline(runs: list[ModelRun], baseline: str) -> None:
    """How much each model's top-K lists differ from the baseline's for the same users (mean
    Jaccard and rank-biased overlap), stored with its beyond-accuracy measures."""
    from persotool.kernels.metrics import stability

    base = next((r for r in runs if r.label == baseline), None)
    if base is None or base.recommendations is None:
        return
    for r in runs:
        k = min(r.recommendations.shape[1], base.recommendations.shape[1])
        mine, theirs = r.recommendations[:, :k], base.recommendations[:, :k]
        r.beyond[f"jaccard_vs_baseline@{k}"] = float(stability.jaccard(mine, theirs).mean()) if len(mine) else None
        r.beyond[f"rbo_vs_baseline@{k}"] = float(stability.rbo(mine, theirs).mean()) if len(mine) else None


def results_table(runs: list[ModelRun], names: list[str]) -> pl.DataFrame:
    rows = []
    for r in runs:
        beyond = {key: r.beyond.get(key, float("nan")) for key in sorted(r.beyond)}
        row = {"model": r.label, **{n: r.summary[n] for n in names}, **beyond}
        rows.append(row | {"fit_seconds": r.fit_seconds, "eval_seconds": r.eval_seconds})
    return pl.DataFrame(rows)


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
