"""`persotool track`: record (or record again) the MLflow run of a finished output directory."""

import json
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
    from persotool.errors import DataError
    from persotool.kernels.storage import MANIFEST
    from persotool.tracking import preflight, records

    if not (output / MANIFEST).is_file():
        raise DataError(f"is not a persotool output directory (no {MANIFEST})", where=str(output))
    tracking = preflight(True, experiment)
    run_id = records.record(tracking, output)
    kind = json.loads((output / MANIFEST).read_text()).get("kind")
    if as_json:
        print_json({"output": str(output), "kind": kind, "mlflow_run_id": run_id, "tracking_uri": tracking.describe()})
    else:
        console().print(f"Recorded {kind} {output} as MLflow run {run_id} in {tracking.describe()}")


def register(app: typer.Typer) -> None:
    app.command("track", epilog=EXAMPLES, cls=Command)(track_command)
