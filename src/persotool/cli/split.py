"""`persotool split`: a dataset -> train / valid / test, leakage-aware and deterministic."""

from pathlib import Path
from typing import Annotated

import typer

from persotool.cli.options import Command, ExperimentOpt, ForceOpt, JsonOpt, NoTrackOpt, OutOpt, show

EXAMPLES = """
[bold]Examples[/bold]

  persotool split build/movielens -o build/movielens-split --strategy temporal --cutoff 0.8 --valid

  persotool split build/shop -o build/shop-split --strategy leave-last --leave-last 2 --min-user-interactions 5
"""


def split_command(
    dataset: Annotated[Path, typer.Argument(help="A dataset directory from `persotool ingest`.")],
    out: OutOpt,
    strategy: Annotated[
        str, typer.Option("--strategy", help="temporal, leave-last, user-random or random.")
    ] = "temporal",
    cutoff: Annotated[
        str | None,
        typer.Option("--cutoff", help="temporal: ISO date-time or fraction of the time range (default 0.8)."),
    ] = None,
    valid_cutoff: Annotated[
        str | None, typer.Option("--valid-cutoff", help="temporal: the same within the training part (default 0.9).")
    ] = None,
    leave_last: Annotated[
        int | None, typer.Option("--leave-last", help="leave-last: test interactions per user (default 1).")
    ] = None,
    test_fraction: Annotated[
        float | None, typer.Option("--test-fraction", help="random strategies (default 0.2).")
    ] = None,
    valid_fraction: Annotated[
        float | None, typer.Option("--valid-fraction", help="random strategies (default 0.1).")
    ] = None,
    valid: Annotated[
        bool, typer.Option("--valid", metavar="", help="Also cut a validation set, the same way.")
    ] = False,
    min_user_interactions: Annotated[
        int | None, typer.Option("--min-user-interactions", help="k-core threshold for users.")
    ] = None,
    min_item_interactions: Annotated[
        int | None, typer.Option("--min-item-interactions", help="k-core threshold for items.")
    ] = None,
    relevance_threshold: Annotated[
        float | None, typer.Option("--relevance-threshold", help="Test values below it are not relevant.")
    ] = None,
    keep_repeats: Annotated[
        bool, typer.Option("--keep-repeats", metavar="", help="Keep test pairs already seen in training.")
    ] = False,
    test_users: Annotated[
        str | None,
        typer.Option(
            "--test-users",
            help="all (default), or seen: keep only held-out users with training history (no cold-start users).",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, max=2**32 - 1, help="Seed for the random strategies (default 0).")
    ] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    no_track: NoTrackOpt = False,
    experiment: ExperimentOpt = None,
) -> None:
    """Split a dataset into train/valid/test with a leakage report."""
    from persotool import workflow

    made = workflow.split(
        dataset,
        out,
        force=force,
        track=workflow.tracker(experiment, enabled=not no_track),
        strategy=strategy,
        cutoff=cutoff,
        valid_cutoff=valid_cutoff,
        leave_last=leave_last,
        test_fraction=test_fraction,
        valid_fraction=valid_fraction,
        valid=valid or None,
        min_user_interactions=min_user_interactions,
        min_item_interactions=min_item_interactions,
        relevance_threshold=relevance_threshold,
        keep_repeats=keep_repeats or None,
        test_users=test_users,
        seed=seed,
    )
    show(made, as_json)


def register(app: typer.Typer) -> None:
    app.command("split", epilog=EXAMPLES, cls=Command)(split_command)
