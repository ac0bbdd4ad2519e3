"""Each kind of output directory as an MLflow run: built from the directory alone (its manifest
and tables), so a command records its output the same way `persotool track` records it later."""

from __future__ import annotations

from pathlib import Path

from persotool.tracking import Tracking


def _colspec() -> list[dict]:
    from persotool.stages.ingest import INTERACTION_SCHEMA

    kinds = {"Int32": "integer", "Int64": "long", "String": "string", "Float64": "double"}
    return [{"name": n, "type": kinds.get(str(d).split("(")[0], "datetime")} for n, d in INTERACTION_SCHEMA.items()]


def record_ingest(tracking, out: Path) -> str | None:
    """Record a dataset directory's MLflow run (from its manifest: also `persotool track`)."""
    import json
    import tempfile

    from persotool.kernels.storage import read_artifact

    manifest = read_artifact(out, "dataset")
    from persotool.stages.ingest.overview import plot_overview
    from persotool.tracking import RunSpec, record_run

    counts = manifest["counts"]
    metrics = {k: v for k, v in counts.items() if isinstance(v, int | float)}
    metrics |= {f"rejected.{k}": v for k, v in counts["rejected_by_reason"].items()}
    metrics["seconds"] = manifest["seconds"]
    metrics |= {f"seconds.{phase}": value for phase, value in manifest.get("phase_seconds", {}).items()}
    with tempfile.TemporaryDirectory() as tmp:
        plot = Path(tmp) / "overview.png"
        plot_overview(out, plot)
        spec = RunSpec(
            name=f"{manifest['name']} · ingest",
            command="ingest",
            output=out,
            params={
                "config": manifest["config"],
                "sources": len(manifest["sources"]),
                "config_hash": manifest["config_hash"],
            },
            metrics=metrics,
            tags={
                "persotool.dataset_digest": manifest["dataset_digest"],
                "persotool.output": str(out.resolve()),
            },
            artifacts=[(out / "manifest.json", None), (plot, None)],
            dataset={
                "name": manifest["name"],
                "digest": manifest["dataset_digest"],
                "source": json.dumps({"uri": str(out.resolve())}),
                "profile": json.dumps(
                    {"num_rows": counts["rows_kept"], "n_users": counts["n_users"], "n_items": counts["n_items"]}
                ),
                "schema": json.dumps({"mlflow_colspec": _colspec()}),
                "context": "ingest",
            },
        )
        return record_run(tracking, spec)


def record_split(tracking, out: Path) -> str:
    """Record a split directory's MLflow run (from its manifest: also `persotool track`)."""
    import json

    from persotool.kernels.storage import read_artifact
    from persotool.tracking import RunSpec, record_run

    manifest = read_artifact(out, "split")
    return record_run(
        tracking,
        RunSpec(
            name=f"{out.name} · split",
            command="split",
            output=out,
            params={"config": manifest["config"]},
            metrics={
                **manifest["counts"],
                **{f"leakage.{part}.{k}": v for part, d in manifest["leakage"].items() for k, v in d.items()},
            },
            tags={
                "persotool.dataset_digest": manifest["dataset"]["digest"],
                "persotool.split_digest": manifest["split_digest"],
            },
            artifacts=[(out / "manifest.json", None)],
            dataset={
                "name": manifest["dataset"]["name"] or "dataset",
                "digest": manifest["dataset"]["digest"],
                "source": json.dumps({"uri": manifest["dataset"]["path"]}),
                "context": "split",
            },
        ),
    )


def record_training(tracking, out: Path) -> str:
    """Record a model directory's MLflow run (from its manifest: also `persotool track`)."""
    from persotool.kernels.storage import read_artifact
    from persotool.tracking import RunSpec, record_run

    manifest = read_artifact(out, "model")
    return record_run(
        tracking,
        RunSpec(
            name=f"{manifest['model']} · train",
            command="train",
            output=out,
            params={
                "model": manifest["model"],
                **{f"params.{k}": v for k, v in manifest["params"].items()},
                "split": manifest["split"]["path"],
            },
            metrics={"fit_seconds": manifest["fit_seconds"], "item_features": manifest["item_features"]},
            metric_history=manifest.get("history") or {},
            tags={
                "persotool.model_digest": manifest["model_digest"],
                "persotool.split_digest": manifest["split"]["digest"],
                "persotool.dataset_digest": manifest["dataset"]["digest"],
            },
            artifacts=[(out, "model")],
        ),
    )


def record_evaluation(tracking, out: Path, *, keep: bool = True) -> str:
    """Record an evaluation directory's MLflow run (from its manifest: also `persotool track`);
    `keep` False: the directory is a scratch copy, not an output to point at later."""
    from persotool.kernels.storage import read_artifact
    from persotool.tracking import RunSpec, record_run

    manifest = read_artifact(out, "evaluation")
    context = manifest["context"]
    label = context.get("model", "lists")
    return record_run(
        tracking,
        RunSpec(
            name=f"{label} · evaluate",
            command="evaluate",
            output=out if keep else None,
            params=context,
            metrics=manifest["summary"],
            tags={k: str(v) for k, v in context.items() if k.endswith("digest")},
            artifacts=[(out / f"{name}.parquet", "evaluation") for name in ("per_user", "segments")],
        ),
    )


def record_benchmark(tracking, out: Path) -> str:
    """Record a benchmark directory's MLflow runs, a parent and one nested run per model (from
    its manifest and tables: also `persotool track`)."""
    import polars as pl

    from persotool.kernels.storage import read_artifact
    from persotool.stages.benchmark.run import BenchmarkConfig
    from persotool.tracking import RunSpec, metric_key, record_run

    manifest = read_artifact(out, "benchmark")
    cfg = BenchmarkConfig.model_validate(manifest["config"])
    results = pl.read_csv(out / "results.csv")
    children = []
    for row in results.iter_rows(named=True):
        label = row.pop("model")
        model = read_artifact(out / "models" / label, "model")
        children.append(
            RunSpec(
                name=f"{label} · benchmark",
                command="benchmark",
                params={
                    "label": label,
                    "model": model["model"],
                    **{f"params.{k}": v for k, v in model["params"].items()},
                },
                metrics=row,  # the metrics, beyond-accuracy measures, fit and evaluation seconds
                metric_history=model.get("history") or {},
                tags={"persotool.model_digest": model["model_digest"], "persotool.benchmark_role": "model"},
                artifacts=[(out / "models" / label, "model")],
            )
        )
    best, best_tags = {}, {}
    for name in cfg.metric_names():
        top = results.sort(name, descending=True, nulls_last=True).row(0, named=True)
        best[f"best_{metric_key(name)}"] = top[name]
        best_tags[f"best_{metric_key(name)}.model"] = top["model"]  # which model the best_* metric is
    import json

    return record_run(
        tracking,
        RunSpec(
            name=f"{cfg.name} · benchmark",
            command="benchmark",
            params={**cfg.model_dump(mode="json", exclude={"models"}), "models": ",".join(cfg.models)},
            metrics={**best, "users_evaluated": manifest["users_evaluated"]},
            tags={
                "persotool.split_digest": manifest["split"]["digest"],
                "persotool.dataset_digest": manifest["dataset"]["digest"],
                "persotool.benchmark_role": "parent",
                **best_tags,
            },
            dataset={
                "name": manifest["dataset"].get("name") or "dataset",
                "digest": manifest["dataset"]["digest"],
                "source": json.dumps({"uri": manifest["dataset"].get("path", "")}),
                "context": "benchmark",
            },
            output=out,
            artifacts=[
                (out / name, "benchmark")
                for name in ("results.csv", "results.md", "tests.csv", "per_user.parquet", "comparison.png")
            ]
            + [(out / "manifest.json", "benchmark")],
            children=children,
        ),
    )


def record_simulation(tracking, out: Path) -> str:
    """Record an experiment directory's MLflow runs, a parent and one nested run per arm (from its
    manifest and tables: also `persotool track`)."""
    import json

    import polars as pl

    from persotool.kernels.simulation.spec import SimulationConfig
    from persotool.kernels.storage import read_artifact
    from persotool.stages.simulate.report import PLOTS
    from persotool.stages.simulate.run import per_arm_metrics
    from persotool.tracking import RunSpec, flatten, record_run

    manifest = read_artifact(out, "simulation")
    cfg = SimulationConfig.model_validate(manifest["config"])
    per_day = pl.read_parquet(out / "per_day.parquet")
    results = pl.read_csv(out / "results.csv")
    summary = json.loads((out / "results.json").read_text())
    per_arm = per_arm_metrics(pl.read_parquet(out / "per_user.parquet"))
    children = []
    for arm in cfg.arms:
        daily = per_day.filter(per_day["arm"] == arm.name)
        children.append(
            RunSpec(
                name=f"{arm.name} · simulate",
                command="simulate",
                params={"arm": arm.name, "policy": arm.policy, "model": str(arm.model or ""), "share": arm.share},
                metrics=per_arm.get(arm.name, {}),
                metric_history={
                    "daily_engagements_per_visitor": daily["engagements_per_visitor"].to_list(),
                    "daily_ctr": daily["ctr"].to_list(),
                    "daily_visitors": daily["visitors"].to_list(),
                    "daily_coverage": daily["coverage"].to_list(),
                    "daily_gini": daily["gini"].to_list(),
                    "daily_jaccard": daily["jaccard"].fill_nan(None).fill_null(0.0).to_list(),
                },
                tags={"persotool.simulation_role": "arm"},
            )
        )
    metrics = {"srm_p": manifest["srm_p"], "user_days_per_second": manifest["user_days_per_second"]}
    for arm, h in summary["homogenization"].items():
        metrics |= {f"{arm}.{key}_final": h[key] for key in ("jaccard", "coverage", "gini")}
        metrics[f"{arm}.retrains"] = len(h["retrained_on_days"])
    for row in results.iter_rows(named=True):
        key = f"{row['arm']}.{row['metric']}"
        metrics[f"{key}.effect"] = row["effect"]
        metrics[f"{key}.p_adjusted"] = row["p_adjusted"]
        metrics[f"{key}.true_effect"] = row["true_effect"]
    tags = {"persotool.dataset_digest": manifest["dataset"]["digest"]}
    robust = summary.get("robustness")
    if robust:
        metrics["robustness.worlds"] = robust["worlds"]
        for row in robust["combined"]:
            key = f"{row['arm']}.{row['metric']}"
            metrics[f"{key}.robust_effect"] = row["effect"]
            metrics[f"{key}.robust_ci_low"] = row["ci"][0]
            metrics[f"{key}.robust_ci_high"] = row["ci"][1]
            metrics[f"{key}.sign_agreement"] = row["sign_agreement"]
            tags[f"robustness.{key}"] = row["verdict"]
    files = ["results.csv", "results.json", "fidelity.csv", "report.html", "manifest.json", *PLOTS]
    files += [f for f in ("robustness.csv", "robustness_worlds.csv") if (out / f).is_file()]
    return record_run(
        tracking,
        RunSpec(
            name=f"{cfg.name} · simulate",
            command="simulate",
            output=out,
            params=flatten(cfg.model_dump(mode="json", exclude={"arms"}))
            | {"arms": ",".join(f"{x.name}:{x.policy}" for x in cfg.arms)},
            metrics=metrics,
            tags=tags,
            artifacts=[(out / f, "simulation") for f in files],
            children=children,
        ),
    )


def record_world(tracking, out: Path) -> str:
    """Record a world directory's MLflow run: the fitted parameters and their standard errors."""
    from persotool.kernels.storage import read_artifact
    from persotool.tracking import RunSpec, record_run

    manifest = read_artifact(out, "world")
    fit = manifest["fit"]
    metrics = {f"fit.{k}": v for k, v in fit["params"].items()}
    metrics |= {f"fit.{k}.se": v for k, v in fit["standard_errors"].items()}
    metrics |= {f"mean.{k}": v for k, v in fit["means"].items()}
    metrics |= {
        "log_likelihood": fit["log_likelihood"],
        "users": manifest["users"],
        "seconds": manifest["seconds"],
        "active_days_check_p": manifest["diagnostics"]["active_days"]["p_value"],
    }
    return record_run(
        tracking,
        RunSpec(
            name=f"{out.name} · calibrate",
            command="calibrate",
            output=out,
            params={
                "until": manifest["window"]["until"],
                "days": manifest["window"]["days"],
                "model": manifest["model"],
            },
            metrics=metrics,
            tags={"persotool.dataset_digest": manifest["dataset"]["digest"], "persotool.output": str(out.resolve())},
            artifacts=[(out / "manifest.json", None), (out / "active_days.png", None)],
        ),
    )


def record_backtest(tracking, out: Path) -> str:
    """Record a back-test directory's MLflow run: every quantity for the simulator and each naive
    forecast, and the verdicts as tags."""
    import re

    from persotool.kernels.storage import read_artifact
    from persotool.stages.backtest.run import SOURCES
    from persotool.tracking import RunSpec, flatten, record_run

    def metric_key(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")

    manifest = read_artifact(out, "backtest")
    metrics: dict[str, float] = {}
    tags = {"persotool.dataset_digest": manifest["dataset"]["digest"], "persotool.output": str(out.resolve())}
    for q in manifest["quantities"]:
        key = metric_key(q["quantity"])
        for source in SOURCES:
            value = q.get(source)
            if isinstance(value, int | float) and value == value:
                metrics[f"{key}.{metric_key(source)}"] = float(value)
        tags[f"verdict.{key}"] = q["verdict"]
    verdict = manifest["verdict"]
    metrics |= {f"verdicts.{metric_key(k)}": v for k, v in verdict["counts"].items()}
    metrics |= {"returning_users": verdict["returning_users"], "known_users": verdict["known_users"]}
    return record_run(
        tracking,
        RunSpec(
            name=f"{out.name} · backtest",
            command="backtest",
            output=out,
            params=flatten(manifest["config"]) | {"until": manifest["window"]["until"]},
            metrics=metrics,
            tags=tags,
            artifacts=[
                (out / f, "backtest")
                for f in ("results.json", "quantities.csv", "retention.png", "active_days.png", "manifest.json")
            ],
        ),
    )


def record_synth(tracking, out: Path) -> str:
    """Record a synthetic log directory's MLflow run (from its manifest: also `persotool track`)."""
    from persotool.kernels.storage import read_artifact
    from persotool.tracking import RunSpec, record_run

    manifest = read_artifact(out, "synthetic-log")
    return record_run(
        tracking,
        RunSpec(
            name=f"{out.name} · synth",
            command="datasets synth",
            output=out,
            params=manifest["config"],
            metrics={
                "rows": manifest["rows"],
                "seconds": manifest["seconds"],
                "sessions": manifest["truth"]["sessions"],
            },
            artifacts=[(out / "manifest.json", None), (out / "ground_truth.json", None), (out / "schema.toml", None)],
            tags={"persotool.output": str(out.resolve())},
        ),
    )


def record_tuning(tracking, out: Path) -> str | None:
    """A study's MLflow tree: one parent run per study (found by the study's storage and name, so
    every worker's trials land under it) and one nested run per finished trial, with its
    parameters, objective(s), per-epoch validation history and state."""
    import hashlib
    import json

    import polars as pl

    from persotool.kernels.storage import read_artifact
    from persotool.tracking import RunSpec, flatten, metric_key, record_tree

    manifest = read_artifact(out, "tuning")
    trials = pl.read_parquet(out / "trials.parquet") if (out / "trials.parquet").is_file() else pl.DataFrame()
    metrics = manifest["config"]["metrics"]
    key = hashlib.sha256(f"{manifest['storage']}\x1f{manifest['study']}".encode()).hexdigest()[:24]
    best = manifest.get("best") or {}
    tags = {
        "persotool.study": manifest["study"],
        "persotool.split_digest": manifest["split"]["digest"],
        "persotool.trials": str(manifest["trials"]),
        **{f"best.{name}": str(value) for name, value in (best.get("params") or {}).items()},
        **{f"best.{metric_key(name)}": f"{value:.6g}" for name, value in (best.get("values") or {}).items()},
    }
    files = ["manifest.json", "trials.parquet", "best.toml", "pareto.parquet", *manifest.get("plots", [])]
    parent = RunSpec(
        name=f"{manifest['study']} · tune",
        command="tune",
        output=out,
        params=flatten({"model": manifest["model"], "study": manifest["study"], **manifest["config"]})
        | {"space": json.dumps(manifest["space"], sort_keys=True)[:500]},
        tags=tags,
        metrics={f"best_{name}": value for name, value in (best.get("values") or {}).items()}
        | {"trials": manifest["trials"]},
        artifacts=[(out / f, "tuning") for f in files if (out / f).is_file()],
    )
    history = _trial_histories(out)
    children = {}
    finished = trials.filter(pl.col("state").is_in(["complete", "pruned", "fail", "stale"])) if len(trials) else trials
    for row in finished.iter_rows(named=True):
        params = {k.removeprefix("param."): v for k, v in row.items() if k.startswith("param.") and v is not None}
        values = {m: row[m] for m in metrics if row.get(m) is not None}
        extra = {k.removeprefix("valid."): v for k, v in row.items() if k.startswith("valid.") and v is not None}
        children[str(row["number"])] = RunSpec(
            name=f"trial {row['number']} · tune",
            command="tune",
            params={"trial": row["number"], **params},
            metrics={**{f"valid_{k}": v for k, v in extra.items()}, **values, "seconds": row["seconds"]},
            metric_history=history.get(row["number"], {}),
            tags={
                "persotool.trial_state": row["state"],
                "persotool.default_config": str(row["default"]).lower(),
                **({"persotool.error": str(row["error"])[:250]} if row.get("error") else {}),
            },
        )
    return record_tree(tracking, parent, key, children)


def _trial_histories(out: Path) -> dict[int, dict[str, list[float]]]:
    """Per-epoch validation of every trial, from the study (kept as trial attributes)."""
    import json

    path = out / "histories.json"
    if not path.is_file():
        return {}
    return {int(k): v for k, v in json.loads(path.read_text()).items()}


RECORDERS = {
    "dataset": record_ingest,
    "synthetic-log": record_synth,
    "split": record_split,
    "model": record_training,
    "evaluation": record_evaluation,
    "benchmark": record_benchmark,
    "simulation": record_simulation,
    "tuning": record_tuning,
    "world": record_world,
    "backtest": record_backtest,
}


def record(tracking: Tracking, out: Path) -> str | None:
    """Record the run of any persotool output directory; None when tracking is off."""
    import json

    from persotool.errors import DataError
    from persotool.kernels.storage import MANIFEST

    if not tracking.enabled:
        return None
    manifest_path = Path(out) / MANIFEST
    if not manifest_path.is_file():
        raise DataError(f"is not a persotool output directory (no {MANIFEST})", where=str(out))
    try:
        kind = json.loads(manifest_path.read_text()).get("kind")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise DataError(f"{MANIFEST} is not valid JSON", where=str(out)) from None
    if kind not in RECORDERS:
        raise DataError(f"holds a {kind!r} artifact, which has no MLflow run to record", where=str(out))
    return RECORDERS[kind](tracking, Path(out))
