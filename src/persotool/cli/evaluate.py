"""`persotool evaluate`: full-ranking metrics of a trained model, or of any system's ranked lists."""

from pathlib import Path
from typing import Annotated

import typer

from persotool.cli.options import (
    Command,
    ExperimentOpt,
    ForceOpt,
    JsonOpt,
    NoTrackOpt,
    int_list,
    key_values,
    number,
    show,
)

EXAMPLES = """
[bold]Examples[/bold]

  persotool evaluate build/models/lightfm --k 5,10,20 --min ndcg@10=0.05

  persotool evaluate --recommendations recs.csv --truth test.csv --k 5,10 --json
"""
# the library's default metric set, spelled out for --help (importing it would slow --help down)
DEFAULT_METRICS = "precision,recall,ndcg,map,mrr,hit_rate,auc"


def _gates(specs: list[str] | None, known: list[str]) -> dict[str, float]:
    """`--min METRIC=FLOOR` pairs; a metric this evaluation does not compute is a usage error,
    found before any work (a typo must not pass for a failed gate)."""
    from persotool.errors import UsageError

    gates = key_values(specs, "--min", "METRIC=FLOOR, e.g. ndcg@10=0.05", number, UsageError)
    for name in gates:
        if name.lower() not in known:
            raise UsageError(f"--min {name!r}: this evaluation computes no {name!r}; it computes {', '.join(known)}")
    return {name.lower(): floor for name, floor in gates.items()}


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
    from persotool import workflow
    from persotool.errors import EXIT_GATE
    from persotool.stages.evaluate import run as session

    cutoffs = int_list(ks, "--k")
    external = recommendations is not None or truth is not None
    floors = _gates(gates, session.computed_names(session.metric_names(cutoffs, metrics, lists=external)))
    tracking = workflow.tracker(experiment, enabled=not no_track)
    evaluation = workflow.evaluate(
        model_dir,
        split=split_dir,
        k=cutoffs,
        metrics=metrics,
        on=on,
        segment_by=segment_by,
        min_segment_users=min_segment_users,
        seed=seed,
        recommendations=recommendations,
        truth=truth,
        out=out,
        force=force,
        track=tracking,
    )
    show(evaluation, as_json)
    flat = evaluation.summary
    failed = [(n, floor, flat.get(n)) for n, floor in floors.items() if flat.get(n) is None or not flat[n] >= floor]
    for name, floor, value in failed:
        shown = "missing" if value is None else f"{value:.4f}"
        typer.echo(f"persotool: gate failed: {name} = {shown} < {floor}", err=True)
    if failed:
        raise typer.Exit(EXIT_GATE)


def register(app: typer.Typer) -> None:
    app.command("evaluate", epilog=EXAMPLES, cls=Command)(evaluate_command)
