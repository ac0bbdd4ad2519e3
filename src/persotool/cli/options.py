"""Options shared by several commands, and how their results are printed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

JsonOpt = Annotated[bool, typer.Option("--json", metavar="", help="Print the result as JSON on stdout.")]
ForceOpt = Annotated[bool, typer.Option("--force", metavar="", help="Replace the output directory if it exists.")]
NoTrackOpt = Annotated[bool, typer.Option("--no-track", metavar="", help="Do not record an MLflow run.")]
ExperimentOpt = Annotated[
    str | None,
    typer.Option("--experiment", help="MLflow experiment name (default: $MLFLOW_EXPERIMENT_NAME or 'persotool')."),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output directory (created atomically).")]


def print_json(payload: dict[str, Any]) -> None:
    from persotool.data.artifacts import finite_json

    text = json.dumps(finite_json(payload), indent=2, default=str, allow_nan=False)
    sys.stdout.write(text + "\n")


def console():
    from rich.console import Console

    return Console(highlight=False)


def plain_help_option(option):
    """--help is a switch: no `<bool>` placeholder beside it in the help (switches declared by
    persotool set `metavar=""` for the same reason)."""
    if option is not None:
        option.metavar = ""
    return option


class Command(TyperCommand):
    """Every persotool command: a plain --help switch."""

    def get_help_option(self, ctx):
        return plain_help_option(super().get_help_option(ctx))


class PlainHelpGroup(TyperGroup):
    def get_help_option(self, ctx):
        return plain_help_option(super().get_help_option(ctx))
