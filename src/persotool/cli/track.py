"""`persotool track`: record (or record again) the MLflow run of a finished output directory."""

from __future__ import annotations

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


def _recorders() -> dict:
    from persotool.cli.benchmark import record_benchmark
    from persotool.cli.datasets import record_synth
    from persotool.cli.evaluate import record_evaluation
    from persotool.cli.ingest import record_ingest
    from persotool.cli.simulate import record_simulation
    from persotool.cli.split import record_split
    from persotool.cli.train import record_training

    return {
        "dataset": record_ingest,
        "synthetic-log": record_synth,
        "split": record_split,
        "model": record_training,
        "evaluation": record_evaluation,
        "benchmark": record_benchmark,
        "simulation": record_simulation,
    }


def track_command(
    output: Annotated[Path, typer.Argument(help="An output directory of any persotool command.")],
    experiment: ExperimentOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record the MLflow run of a finished output directory, e.g. after tracking failed or was off."""
    from persotool.data.artifacts import MANIFEST
    from persotool.errors import DataError
    from persotool.tracking import preflight

    manifest_path = output / MANIFEST
    if not manifest_path.is_file():
        raise DataError(f"is not a persotool output directory (no {MANIFEST})", where=str(output))
    try:
        kind = json.loads(manifest_path.read_text()).get("kind")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise DataError(f"{MANIFEST} is not valid JSON", where=str(output)) from None
    recorders = _recorders()
    if kind not in recorders:
        raise DataError(f"holds a {kind!r} artifact, which has no MLflow run to record", where=str(output))
    tracking = preflight(True, experiment)
    run_id = recorders[kind](tracking, output)
    if as_json:
        print_json({"output": str(output), "kind": kind, "mlflow_run_id": run_id, "tracking_uri": tracking.describe()})
    else:
        console().print(f"Recorded {kind} {output} as MLflow run {run_id} in {tracking.describe()}")


def register(app: typer.Typer) -> None:
    app.command("track", epilog=EXAMPLES, cls=Command)(track_command)
