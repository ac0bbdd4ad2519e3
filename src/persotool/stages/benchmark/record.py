"""What a benchmark's MLflow runs record: a parent run with the tables, the plot and the best model
per metric, and one nested run per model with its parameters, metrics, training history and files."""

import json

from persotool.kernels.runspec import RunSpec, metric_key


def run_spec(benchmark) -> RunSpec:
    m, out, cfg, results = benchmark.manifest, benchmark.path, benchmark.config, benchmark.results
    children = []
    for row in results.iter_rows(named=True):
        label = row.pop("model")
        model = benchmark.model(label).manifest
        children.append(
            RunSpec(
                name=f"{label} · benchmark",
                command="benchmark",
                params={"label": label, "model": model.model, **{f"params.{k}": v for k, v in model.params.items()}},
                metrics=row,  # the metrics, beyond-accuracy measures, fit and evaluation seconds
                metric_history=model.history or {},
                tags={"persotool.model_digest": model.model_digest, "persotool.benchmark_role": "model"},
                artifacts=[(out / "models" / label, "model")],
                model=(out / "models" / label, model.dataset.path),
            )
        )
    best, best_tags = {}, {}
    for name in cfg.metric_names():
        top = results.sort(name, descending=True, nulls_last=True).row(0, named=True)
        best[f"best_{metric_key(name)}"] = top[name]
        best_tags[f"best_{metric_key(name)}.model"] = top["model"]  # which model the best_* metric is
    files = ("results.csv", "results.md", "tests.csv", "per_user.parquet", "comparison.png", "manifest.json")
    return RunSpec(
        name=f"{cfg.name} · benchmark",
        command="benchmark",
        params={**cfg.model_dump(mode="json", exclude={"models"}), "models": ",".join(cfg.models)},
        metrics={**best, "users_evaluated": m.users_evaluated},
        tags={
            "persotool.split_digest": m.split.digest,
            "persotool.dataset_digest": m.dataset.digest,
            "persotool.benchmark_role": "parent",
            **best_tags,
        },
        dataset={
            "name": m.dataset.name or "dataset",
            "digest": m.dataset.digest,
            "source": json.dumps({"uri": m.dataset.path}),
            "context": "benchmark",
        },
        output=out,
        artifacts=[(out / name, "benchmark") for name in files],
        children=children,
    )
