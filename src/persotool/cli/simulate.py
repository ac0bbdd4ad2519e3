"""`persotool simulate`: an A/B test of recommenders on users calibrated from the logs."""

from pathlib import Path
from typing import Annotated

import typer

from persotool.cli.options import Command, ExperimentOpt, ForceOpt, JsonOpt, NoTrackOpt, OutOpt, key_values, show

EXAMPLES = """
[bold]Examples[/bold]

  persotool simulate build/movielens --config configs/simulation.toml -o build/ab

  persotool simulate build/movielens --config configs/simulation.toml -o build/ab --set days=60 \\
      --set world.population=50000 --json

  persotool simulate build/movielens --config configs/simulation.toml -o build/ab --worlds 20 --workers 2
"""


def simulate_command(
    dataset: Annotated[Path, typer.Argument(help="A dataset directory from `persotool ingest` (the world's logs).")],
    out: OutOpt,
    config: Annotated[Path, typer.Option("--config", help="Simulation config.")] = Path("configs/simulation.toml"),
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="Override KEY=VALUE (dotted, e.g. world.population=5000).")
    ] = None,
    worlds: Annotated[
        int | None,
        typer.Option("--worlds", min=0, help="Rerun over this many worlds drawn from the calibration's uncertainty."),
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Worlds run in parallel processes.")] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    no_track: NoTrackOpt = False,
    experiment: ExperimentOpt = None,
) -> None:
    """Simulate an A/B/n test: users calibrated from the logs visit, engage and churn under every arm
    (common random numbers), and the experiment is analysed as a real platform would, beside the true
    effects. Writes results, per-user and per-day tables, plots and report.html."""
    from persotool import workflow

    overrides = key_values(sets, "--set", "KEY=VALUE, e.g. --set world.population=5000")
    if worlds is not None:
        overrides["robustness.worlds"] = worlds
    if workers is not None:
        overrides["robustness.workers"] = workers
    made = workflow.simulate(
        dataset, config, out, force=force, track=workflow.tracker(experiment, enabled=not no_track), **overrides
    )
    show(made, as_json, after=f"Written to {out} (results.csv/json, per_user.parquet, plots, report.html)")


def register(app: typer.Typer) -> None:
    app.command("simulate", epilog=EXAMPLES, cls=Command)(simulate_command)
