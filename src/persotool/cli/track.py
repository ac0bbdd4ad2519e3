"""`persotool track`: record (or record again) the MLflow run of a finished output directory."""

from pathlib import Path
from typing import Annotated

import typer

from persotool.cli.options import Command, ExperimentOpt, JsonOpt, console, print_json

EXAMPLES = """
[bold]Examples[/bold]

  persotool track build/demo/benchmark

  MLFLOW_TRACKING_URI=http://127.0.0.1:5000 persotool track build/shop --experiment shop
"""


def track_command(
    output: Annotated[Path, typer.Argument(help="An output directory of any persotool command.")],
    experiment: ExperimentOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record the MLflow run of a finished output directory, e.g. after tracking failed or was off."""
    from persotool import workflow

    result = workflow.open_result(output)
    tracking = workflow.tracker(experiment)
    workflow.record(result, tracking)
    if as_json:
        print_json(
            {
                "output": str(output),
                "kind": result.kind,
                "mlflow_run_id": result.mlflow_run_id,
                "tracking_uri": tracking.describe(),
            }
        )
    else:
        console().print(
            f"Recorded {result.kind} {output} as MLflow run {result.mlflow_run_id} in {tracking.describe()}"
        )


def register_command(app: typer.Typer) -> None:
    app.command("track", epilog=EXAMPLES, cls=Command)(track_command)
