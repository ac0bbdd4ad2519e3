"""`persotool evaluate`: full-ranking metrics of a trained model, or of any system's ranked lists."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from persotool.cli.options import Command, ExperimentOpt, ForceOpt, JsonOpt, NoTrackOpt, console, print_json

EXAMPLES = """
[bold]Examples[/bold]

  persotool evaluate build/models/lightfm --k 5,10,20 --min ndcg@10=0.05

  persotool evaluate --recommendations recs.csv --truth test.csv --k 5,10 --json
"""
DEFAULT_METRICS = "precision,recall,ndcg,map,mrr,hit_rate,auc"
LIST_METRICS = "precision,recall,ndcg,map,mrr,hit_rate"  # what ranked lists support (no scores: no AUC)
BEYOND = ("coverage", "gini", "novelty", "popularity", "personalization", "diversity")
COUNTS = ("users_evaluated", "users_without_relevant")


def _metric_names(ks: str, metrics: str) -> list[str]:
    from persotool.errors import ConfigError

    try:
        cutoffs = sorted({int(k) for k in ks.split(",") if k.strip()})
    except ValueError:
        raise ConfigError(f"--k {ks!r}: expected comma-separated integers such as 5,10,20") from None
    names = []
    for metric in [m.strip() for m in metrics.split(",") if m.strip()]:
        if "@" in metric or metric == "auc":
            names.append(metric)
        else:
            names += [f"{metric}@{k}" for k in cutoffs]
    from persotool.evaluation.metrics import parse

    for name in names:
        parse(name)
    return names


def _gates(specs: list[str] | None, names: list[str]) -> list[tuple[str, float]]:
    """`--min METRIC=FLOOR` pairs; a metric this evaluation does not compute is a usage error,
    found before any work (a typo must not pass for a failed gate)."""
    import math

    from persotool.errors import UsageError

    widest = max([int(n.split("@")[1]) for n in names if "@" in n] or [10])
    known = [*names, *(f"{b}@{widest}" for b in BEYOND), *COUNTS]
    gates = []
    for spec in specs or []:
        name, sep, value = spec.partition("=")
        try:
            floor = float(value)
        except ValueError:
            floor = math.nan
        if not sep or not name.strip() or not math.isfinite(floor):
            raise UsageError(f"--min {spec!r}: expected METRIC=FLOOR, e.g. ndcg@10=0.05")
        name = name.strip().lower()
        if name not in known:
            raise UsageError(f"--min {spec!r}: this evaluation computes no {name!r}; it computes {', '.join(known)}")
        gates.append((name, floor))
    return gates


def _read_table(path: Path, columns: list[str], what: str):
    import polars as pl

    from persotool.errors import DataError

    try:
        frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"cannot read {what} ({str(exc).splitlines()[0]})", where=str(path)) from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{what} needs columns {', '.join(columns)}; missing {', '.join(missing)}", where=str(path))
    return frame


def evaluate_command(
    model_dir: Annotated[Path | None, typer.Argument(help="A model directory from `persotool train`.")] = None,
    split_dir: Annotated[
        Path | None, typer.Option("--split", help="Split to evaluate on (default: the model's).")
    ] = None,
    ks: Annotated[str, typer.Option("--k", help="Cut-offs, comma-separated.")] = "10",
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", help=f"Metric names; @k added from --k. Default: {DEFAULT_METRICS} (lists: no auc)."),
    ] = None,
    on: Annotated[str, typer.Option("--on", help="test or valid.")] = "test",
    segment_by: Annotated[str, typer.Option("--segment-by", help="activity or a users column.")] = "activity",
    min_segment_users: Annotated[
        int,
        typer.Option(
            "--min-segment-users", min=1, help="Smaller segments are pooled into 'other'; intervals need this many."
        ),
    ] = 20,
    recommendations: Annotated[
        Path | None,
        typer.Option("--recommendations", help="Another system's lists: user_id,item_id,rank (CSV/Parquet)."),
    ] = None,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="With --recommendations: user_id,item_id[,relevance].")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write per-user and per-segment tables here.")] = None,
    gates: Annotated[
        list[str] | None, typer.Option("--min", help="METRIC=FLOOR; exit 1 when below. Repeatable.")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=2**32 - 1, help="Seed of the bootstrap and sampled measures.")
    ] = 0,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    no_track: NoTrackOpt = False,
    experiment: ExperimentOpt = None,
) -> None:
    """Full-ranking evaluation (never sampled negatives), beyond-accuracy measures and per-segment CIs."""
    from persotool.errors import EXIT_GATE, ConfigError
    from persotool.tracking import preflight

    external = recommendations is not None or truth is not None
    names = _metric_names(ks, metrics or (LIST_METRICS if external else DEFAULT_METRICS))
    floors = _gates(gates, names)
    inputs = [p for p in (model_dir, split_dir, recommendations, truth) if p is not None]
    if out is not None:
        from persotool.data.artifacts import check_output

        check_output(out, force=force, inputs=inputs)
    tracking = preflight(not no_track, experiment)
    if external:
        if recommendations is None or truth is None or model_dir is not None:
            raise ConfigError("--recommendations and --truth go together, without a model directory")
        result, per_segment, context = _external(recommendations, truth, names)
    else:
        if model_dir is None:
            raise ConfigError("give a model directory, or --recommendations and --truth")
        result, per_segment, context = _model(model_dir, split_dir, names, on, segment_by, seed, min_segment_users)
    flat = {
        **result.summary,
        **result.beyond,
        "users_evaluated": result.users_evaluated,
        "users_without_relevant": result.users_without_relevant,
    }
    failed = [(name, floor, flat.get(name)) for name, floor in floors if name not in flat or not flat[name] >= floor]
    tables = {"per_user": result.per_user, "segments": per_segment}
    run_id = None
    if out is not None:
        _write(out, tables, flat, context, force, inputs)
        from persotool.tracking import records

        run_id = records.record_evaluation(tracking, out) if tracking.enabled else None
    elif tracking.enabled:
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            _write(Path(scratch) / "evaluation", tables, flat, context, False, inputs)
            run_id = records.record_evaluation(tracking, Path(scratch) / "evaluation", keep=False)
    if as_json:
        print_json({**flat, "mlflow_run_id": run_id})
    else:
        _render(flat, per_segment, context)
    for name, floor, value in failed:
        shown = "missing" if value is None else f"{value:.4f}"
        typer.echo(f"persotool: gate failed: {name} = {shown} < {floor}", err=True)
    if failed:
        raise typer.Exit(EXIT_GATE)


def _model(
    model_dir: Path, split_dir: Path | None, names: list[str], on: str, segment_by: str, seed: int, min_users: int
):
    from persotool.data.artifacts import read_artifact
    from persotool.data.splits import Split
    from persotool.errors import ConfigError
    from persotool.evaluation import segments
    from persotool.evaluation.evaluator import evaluate_model
    from persotool.models.base import load
    from persotool.models.training import feature_matrix

    manifest = read_artifact(model_dir, "model")
    model = load(model_dir)
    split = Split(split_dir or Path(manifest["split"]["path"]))
    check_lineage(manifest, split, model_dir)
    truth = split.test if on == "test" else split.valid
    if truth is None or on not in ("test", "valid"):
        raise ConfigError(f"--on {on!r}: the split has no such part (test, or valid when split with --valid)")
    vectors, _ = feature_matrix(split.dataset_path, "item", split.n_items)
    result = evaluate_model(model, truth, names, n_items=split.n_items, item_features=vectors, seed=seed)
    labels = segments.labels_for(segment_by, split.train, split.dataset_path)
    per_segment = segments.segment_table(result.per_user, labels, list(result.summary), seed=seed, min_users=min_users)
    context = {
        "model": manifest["model"],
        "model_dir": str(model_dir),
        "split": str(split.path),
        "on": on,
        "segment_by": segment_by,
        "model_digest": manifest["model_digest"],
        "dataset_digest": split.manifest["dataset"]["digest"],
    }
    return result, per_segment, context


def check_lineage(manifest: dict, split, model_dir: Path) -> None:
    """A model meets only data of the dataset it was trained on: its user and item indices mean
    nothing elsewhere (another dataset of the same shape would give plausible, wrong metrics)."""
    from persotool.errors import DataError

    trained_on, offered = manifest["dataset"]["digest"], split.manifest["dataset"]["digest"]
    if trained_on != offered:
        raise DataError(
            f"was trained on dataset {trained_on} ({manifest['dataset'].get('name')}), but split {split.path} is of "
            f"dataset {offered} ({split.manifest['dataset'].get('name')}); evaluate it on a split of its own dataset",
            where=str(model_dir),
        )
    if manifest["split"]["digest"] != split.manifest["split_digest"]:
        typer.echo(
            f"persotool: note: {model_dir} was trained on split {manifest['split']['digest']}, not on "
            f"{split.path}; test interactions of this split may be in the model's training data",
            err=True,
        )


def _external(recs_path: Path, truth_path: Path, names: list[str]):
    import polars as pl

    from persotool.errors import DataError
    from persotool.evaluation import segments
    from persotool.evaluation.evaluator import evaluate_lists

    recs = _read_table(recs_path, ["user_id", "item_id", "rank"], "recommendations")
    truth = _read_table(truth_path, ["user_id", "item_id"], "truth")
    recs = recs.with_columns(
        pl.col("user_id", "item_id").cast(pl.String), rank=pl.col("rank").cast(pl.Int64, strict=False)
    )
    if recs["rank"].null_count():
        raise DataError("rank must be an integer (1 = best)", where=str(recs_path))
    relevant = (
        pl.col("relevance").cast(pl.Float64, strict=False).fill_null(0) > 0
        if "relevance" in truth.columns
        else pl.lit(True)
    )
    truth = truth.with_columns(pl.col("user_id", "item_id").cast(pl.String), relevant=relevant)
    users = pl.concat([recs["user_id"], truth["user_id"]]).unique().sort()
    items = pl.concat([recs["item_id"], truth["item_id"]]).unique().sort()
    user_enum, item_enum = pl.Enum(users.to_list()), pl.Enum(items.to_list())

    def coded(frame):
        return frame.with_columns(
            user_idx=pl.col("user_id").cast(user_enum).to_physical().cast(pl.Int64),
            item_idx=pl.col("item_id").cast(item_enum).to_physical().cast(pl.Int64),
        )

    result = evaluate_lists(coded(recs), coded(truth), names, n_items=len(items))
    result.beyond = {k: v for k, v in result.beyond.items() if not k.startswith(("novelty", "popularity"))}
    per_segment = pl.DataFrame(schema=segments.SEGMENT_SCHEMA)
    context = {"recommendations": str(recs_path), "truth": str(truth_path)}
    return result, per_segment, context


def _write(out: Path, tables: dict, flat: dict, context: dict, force: bool, inputs: list[Path]) -> None:
    from persotool.data import artifacts

    with artifacts.atomic_directory(out, force=force, inputs=inputs) as tmp:
        for name, table in tables.items():
            table.write_parquet(tmp / f"{name}.parquet")
        tables["segments"].write_csv(tmp / "segments.csv")
        manifest = artifacts.new_manifest("evaluation", name=out.name, summary=flat, context=context)
        artifacts.write_json_atomic(tmp / artifacts.MANIFEST, manifest)


def _render(flat: dict, per_segment, context: dict) -> None:
    from rich.table import Table

    c = console()
    table = Table(title=f"Evaluation of {context.get('model', 'ranked lists')}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in flat.items():
        table.add_row(key, f"{value:,.4f}" if isinstance(value, float) else f"{value:,}")
    c.print(table)
    if len(per_segment):
        seg = Table(title=f"By {context.get('segment_by')} (bootstrap 95% CI)", title_justify="left")
        for col in ("segment", "users", "metric", "mean", "95% CI"):
            seg.add_column(col, justify="left" if col in ("segment", "metric") else "right")
        for row in per_segment.filter(per_segment["metric"].str.starts_with("ndcg")).iter_rows(named=True):
            seg.add_row(
                row["segment"],
                f"{row['users']:,}",
                row["metric"],
                f"{row['mean']:.4f}",
                f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]" if row["ci_low"] is not None else "n/a (too few users)",
            )
        c.print(seg)


def register(app: typer.Typer) -> None:
    app.command("evaluate", epilog=EXAMPLES, cls=Command)(evaluate_command)
