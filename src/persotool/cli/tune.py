"""`persotool tune`: a hyperparameter study with Optuna, resumable and shared between workers."""

from pathlib import Path
from typing import Annotated

import typer

from persotool.cli.options import Command, ExperimentOpt, ForceOpt, JsonOpt, NoTrackOpt, OutOpt, console, show

EXAMPLES = """
[bold]Examples[/bold]

  persotool tune build/demo/split --space configs/spaces/ease.toml --trials 20 -o build/tune-ease

  persotool tune build/split --model lightfm --space configs/spaces/lightfm.toml --trials 50 -o build/tune-lfm \\
      --study lfm --storage postgresql://tuner@db/optuna     # the same command on every worker

  persotool tune build/split --space configs/spaces/lightfm.toml --metric ndcg@10 --metric diversity@10 -o build/pareto
"""


def tune_command(
    split_dir: Annotated[Path, typer.Argument(help="A split directory with a validation part (`split --valid`).")],
    out: OutOpt,
    space: Annotated[Path, typer.Option("--space", help="Search space (configs/spaces/*.toml).")],
    model: Annotated[str | None, typer.Option("--model", help="Model to tune (default: the space's).")] = None,
    trials: Annotated[
        int | None,
        typer.Option("--trials", min=1, help="Trials in the whole study, all workers together (default 20)."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds this worker keeps starting trials.")
    ] = None,
    metrics: Annotated[
        list[str] | None,
        typer.Option("--metric", help="Objective on the validation part (default ndcg@10); repeat for a Pareto front."),
    ] = None,
    directions: Annotated[
        list[str] | None, typer.Option("--direction", help="maximize or minimize, one per --metric.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, max=2**32 - 1, help="Sampler seed (default 0).")] = None,
    study: Annotated[str | None, typer.Option("--study", help="Study name (default: model and split).")] = None,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Journal file or RDB URL shared by workers (default: a journal in -o)."),
    ] = None,
    no_prune: Annotated[bool, typer.Option("--no-prune", metavar="", help="Never stop a trial early.")] = False,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    no_track: NoTrackOpt = False,
    experiment: ExperimentOpt = None,
) -> None:
    """Tune a model's hyperparameters on a split's validation part: resumable (rerun to continue),
    shared by workers through --storage, each trial an MLflow run under the study's."""
    from persotool import workflow

    c = console()

    def progress(number: int) -> None:
        if not as_json:
            c.print(f"[dim]trial {number} done[/dim]")

    made = workflow.tune(
        split_dir,
        out=out,
        force=force,
        track=workflow.tracker(experiment, enabled=not no_track),
        progress=progress,
        space=space,
        model=model,
        trials=trials,
        timeout=timeout,
        metrics=metrics or None,
        directions=directions or None,
        seed=seed,
        study=study,
        storage=storage,
        prune=False if no_prune else None,
    )
    show(made, as_json, after=f"Written to {out} (trials.parquet, best.toml, plots)")


def register(app: typer.Typer) -> None:
    app.command("tune", epilog=EXAMPLES, cls=Command)(tune_command)
