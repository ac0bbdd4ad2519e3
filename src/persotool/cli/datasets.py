"""`persotool datasets`: synthetic logs with known ground truth, and dataset summaries."""

from pathlib import Path
from typing import Annotated

import typer

from persotool.cli.options import (
    Command,
    ExperimentOpt,
    ForceOpt,
    JsonOpt,
    NoTrackOpt,
    OutOpt,
    PlainHelpGroup,
    console,
    print_json,
)

app = typer.Typer(cls=PlainHelpGroup, no_args_is_help=True, help="Make synthetic logs and inspect datasets.")

SYNTH_EXAMPLES = """
[bold]Examples[/bold]

  persotool datasets synth -o build/synth --users 5000 --items 2000 --events 500000 --seed 7

  persotool ingest build/synth/events.csv --schema build/synth/schema.toml -o build/synth-ds
"""


@app.command("synth", epilog=SYNTH_EXAMPLES, cls=Command)
def synth_command(
    out: OutOpt,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file with any SynthConfig fields.")] = None,
    users: Annotated[int | None, typer.Option("--users", help="Number of users (default 2000).")] = None,
    items: Annotated[int | None, typer.Option("--items", help="Number of items (default 1000).")] = None,
    events: Annotated[
        int | None, typer.Option("--events", help="Approximate number of events (default 100000).")
    ] = None,
    days: Annotated[int | None, typer.Option("--days", help="Days covered (default 90).")] = None,
    factors: Annotated[
        int | None, typer.Option("--factors", help="Latent dimensions of the truth (default 16).")
    ] = None,
    churn: Annotated[float | None, typer.Option("--churn", help="Mean daily churn probability (default 0.02).")] = None,
    opted_out: Annotated[float | None, typer.Option("--opted-out", help="Share of users who refuse consent.")] = None,
    dirty: Annotated[float | None, typer.Option("--dirty", help="Share of extra broken or duplicate rows.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="csv, jsonl or parquet.")] = None,
    compression: Annotated[str | None, typer.Option("--compression", help="none, gzip or zstd.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, max=2**32 - 1, help="Root seed (default 0).")] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    no_track: NoTrackOpt = False,
    experiment: ExperimentOpt = None,
) -> None:
    """Write a synthetic interaction log with known ground truth (deterministic by --seed)."""
    from persotool.config import deep_merge, load_toml, validate
    from persotool.tracking import preflight

    tracking = preflight(not no_track, experiment)
    flags = {
        "users": users,
        "items": items,
        "events": events,
        "days": days,
        "factors": factors,
        "churn_hazard_mean": churn,
        "opted_out_share": opted_out,
        "dirty_share": dirty,
        "format": fmt,
        "compression": compression,
        "seed": seed,
    }
    merged = deep_merge(load_toml(config) if config else {}, {k: v for k, v in flags.items() if v is not None})
    from persotool import workflow
    from persotool.data.synth import SynthConfig

    cfg = validate(SynthConfig, merged, str(config) if config else "command line")
    made = workflow.synth(out, cfg, force=force, track=tracking)
    manifest, run_id = made.manifest, made.mlflow_run_id
    result = {
        "output": str(out),
        "log": str(out / manifest["log"]),
        "rows": manifest["rows"],
        "schema": str(out / "schema.toml"),
        "truth": manifest["truth"],
        "seconds": manifest["seconds"],
        "mlflow_run_id": run_id,
    }
    if as_json:
        print_json(result)
        return
    c = console()
    c.print(f"[bold]Wrote[/bold] {result['rows']:,} rows to {result['log']} in {result['seconds']:.2f}s")
    c.print(f"Ground truth: {out / 'ground_truth.npz'}, {out / 'ground_truth.json'}")
    c.print(f"Next: persotool ingest {result['log']} --schema {result['schema']} -o DIR")


@app.command(
    "info", cls=Command, epilog="[bold]Example[/bold]\n\n  persotool datasets info build/demo/movielens --json"
)
def info_command(
    path: Annotated[Path, typer.Argument(help="A dataset directory written by `persotool ingest`.")],
    as_json: JsonOpt = False,
) -> None:
    """Summarise a dataset: counts, sparsity, activity distributions, time range, rejects."""
    from persotool.data.info import describe

    info = describe(path)
    if as_json:
        print_json(info)
        return
    from rich.table import Table

    c = console()
    head = Table(title=f"Dataset {info['name']} ({info['dataset_digest']})", show_header=False, title_justify="left")
    head.add_column(style="bold")
    head.add_column(justify="right")
    for label, value in [
        ("interactions", f"{info['interactions']:,}"),
        ("users", f"{info['users']:,}"),
        ("items", f"{info['items']:,}"),
        ("sessions", f"{info['sessions']:,}"),
        ("sparsity", f"{info['sparsity']:.4%}"),
        ("time range", f"{info['time_min']} .. {info['time_max']}"),
        ("top 1% items' share", f"{info['top_1pct_items_share']:.1%}"),
        ("items with features", f"{info['items_with_features']:,}"),
        ("rows read / rejected", f"{info['rows_read']:,} / {info['rows_rejected']:,}"),
        ("duplicates removed", f"{info['duplicates_removed']:,}"),
        ("opted-out users removed", f"{info['opted_out_users']:,}"),
    ]:
        head.add_row(label, value)
    for reason, count in info["rejected_by_reason"].items():
        head.add_row(f"  rejected: {reason}", f"{count:,}")
    c.print(head)
    dist = Table(title="Activity", title_justify="left")
    dist.add_column("per")
    for col in ("min", "p25", "median", "mean", "p90", "p99", "max"):
        dist.add_column(col, justify="right")
    for label, key in [
        ("user", "interactions_per_user"),
        ("item", "interactions_per_item"),
        ("session", "events_per_session"),
    ]:
        d = info[key]
        dist.add_row(label, *(f"{d[k]:,.1f}" for k in ("min", "p25", "median", "mean", "p90", "p99", "max")))
    c.print(dist)
    if info["events"]:
        c.print("Events: " + ", ".join(f"{k} {v:,}" for k, v in info["events"].items()))
