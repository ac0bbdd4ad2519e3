"""`persotool calibrate` and `persotool backtest`: fit the simulator's user model on the logs, and
check it against logs it did not see."""

from pathlib import Path
from typing import Annotated

import typer

from persotool.cli.options import Command, ExperimentOpt, ForceOpt, JsonOpt, NoTrackOpt, OutOpt, key_values, show

CALIBRATE_EXAMPLES = """
[bold]Examples[/bold]

  persotool calibrate build/movielens -o build/world

  persotool calibrate build/movielens --until 2014-01-01 -o build/world-2013
  # then in the simulation config:  [world] source = "build/world-2013"
"""

BACKTEST_EXAMPLES = """
[bold]Examples[/bold]

  persotool backtest build/movielens --cutoff 0.8 -o build/backtest

  persotool backtest build/shop --cutoff 2024-03-01 -o build/backtest --set clones=50 --json
"""

UntilOpt = Annotated[
    str | None,
    typer.Option("--until", help="End of the calibration window: an ISO date or a fraction of the log's time range."),
]


def calibrate_command(
    dataset: Annotated[Path, typer.Argument(help="A dataset directory from `persotool ingest`.")],
    out: OutOpt,
    until: UntilOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the in-sample check's simulation.")] = 0,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    no_track: NoTrackOpt = False,
    experiment: ExperimentOpt = None,
) -> None:
    """Fit the simulator's user model on the logs: each user's chance of an active day, of going
    dormant and of coming back, with Beta heterogeneity, by likelihood. Writes a world directory
    (parameters, their uncertainty, fit diagnostics, the window) that `simulate` loads."""
    from persotool import workflow

    made = workflow.calibrate(
        dataset, out, until=until, seed=seed, force=force, track=workflow.tracker(experiment, enabled=not no_track)
    )
    show(made, as_json, after=f'Written to {out}. Use it with \\[world] source = "{out}" in a simulation config.')


def backtest_command(
    dataset: Annotated[Path, typer.Argument(help="A dataset directory from `persotool ingest`.")],
    out: OutOpt,
    cutoff: Annotated[
        str | None, typer.Option("--cutoff", help="Where to cut the logs: a fraction of their time range, or a date.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML with BacktestConfig fields.")] = None,
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="Override KEY=VALUE (dotted, e.g. behaviour.fatigue_weight=0.5).")
    ] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    no_track: NoTrackOpt = False,
    experiment: ExperimentOpt = None,
) -> None:
    """Does the simulator predict? Calibrate on the logs before the cutoff, simulate the users known
    then over the held-out days, and compare with what the logs show: returns, active days, gaps,
    interactions per day, item popularity, the retention curve and per-user forecasts, beside
    naive forecasts and noise floors, with a verdict per quantity."""
    from persotool import workflow

    options = key_values(sets, "--set", "KEY=VALUE, e.g. --set clones=50")
    if cutoff is not None:
        options["cutoff"] = cutoff
    made = workflow.backtest(
        dataset, out, config, force=force, track=workflow.tracker(experiment, enabled=not no_track), **options
    )
    show(made, as_json, after=f"Written to {out} (results.json, quantities.csv, per_user.parquet, plots)")


def register(app: typer.Typer) -> None:
    app.command("calibrate", epilog=CALIBRATE_EXAMPLES, cls=Command)(calibrate_command)
    app.command("backtest", epilog=BACKTEST_EXAMPLES, cls=Command)(backtest_command)
