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
    show,
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
    churn_hazard_mean: Annotated[
        float | None, typer.Option("--churn", help="Mean daily churn probability (default 0.02).")
    ] = None,
    opted_out_share: Annotated[
        float | None, typer.Option("--opted-out", help="Share of users who refuse consent.")
    ] = None,
    dirty_share: Annotated[
        float | None, typer.Option("--dirty", help="Share of extra broken or duplicate rows.")
    ] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="csv, jsonl or parquet.")] = None,
    compression: Annotated[str | None, typer.Option("--compression", help="none, gzip or zstd.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, max=2**32 - 1, help="Root seed (default 0).")] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    no_track: NoTrackOpt = False,
    experiment: ExperimentOpt = None,
) -> None:
    """Write a synthetic interaction log with known ground truth (deterministic by --seed)."""
    from persotool import workflow

    made = workflow.synth(
        out,
        config,
        force=force,
        track=workflow.tracker(experiment, enabled=not no_track),
        users=users,
        items=items,
        events=events,
        days=days,
        factors=factors,
        churn_hazard_mean=churn_hazard_mean,
        opted_out_share=opted_out_share,
        dirty_share=dirty_share,
        format=fmt,
        compression=compression,
        seed=seed,
    )
    show(made, as_json)


@app.command(
    "info", cls=Command, epilog="[bold]Example[/bold]\n\n  persotool datasets info build/demo/movielens --json"
)
def info_command(
    path: Annotated[Path, typer.Argument(help="A dataset directory written by `persotool ingest`.")],
    as_json: JsonOpt = False,
) -> None:
    """Summarise a dataset: counts, sparsity, activity distributions, time range, rejects."""
    from persotool.results import Dataset

    show(Dataset(path).info(), as_json)
