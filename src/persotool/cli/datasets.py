"""`persotool datasets`: synthetic logs with known ground truth (`datasets synth`, the synth stage's
command) and dataset summaries (`datasets info`)."""

from pathlib import Path
from typing import Annotated

import typer

from persotool.cli.options import Command, JsonOpt, PlainHelpGroup, show

INFO_EXAMPLE = "[bold]Example[/bold]\n\n  persotool datasets info build/demo/movielens --json"


def info_command(
    path: Annotated[Path, typer.Argument(help="A dataset directory written by `persotool ingest`.")],
    as_json: JsonOpt = False,
) -> None:
    """Summarise a dataset: counts, sparsity, activity distributions, time range, rejects."""
    from persotool.stages.ingest.result import Dataset

    show(Dataset(path).info(), as_json)


def group(app: typer.Typer) -> typer.Typer:
    """The `datasets` group, made once and added to the app."""
    if not hasattr(app, "_datasets"):
        datasets = typer.Typer(
            cls=PlainHelpGroup, no_args_is_help=True, help="Make synthetic logs and inspect datasets."
        )
        datasets.command("info", cls=Command, epilog=INFO_EXAMPLE)(info_command)
        app.add_typer(datasets, name="datasets")
        app._datasets = datasets
    return app._datasets
