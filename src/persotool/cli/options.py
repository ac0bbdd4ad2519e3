"""Options shared by several commands, and how their results are printed."""

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
    persotool set `metavar=""` for the same reason). Its default is False, not None: typer coerces a
    None through pydantic, which would cost `--help` 0.15 s of imports."""
    if option is not None:
        option.metavar = ""
        option.default = False
    return option


def _write_epilog(epilog: str | None, formatter) -> None:
    """Examples are command lines: printed as written (click would re-wrap them as prose), under a
    heading like the other sections."""
    if not epilog:
        return
    import inspect
    import re
    import textwrap

    text = re.sub(r"\[/?(bold|dim)\]", "", inspect.cleandoc(epilog))
    if "\n" not in text:  # one line of prose, such as the exit statuses
        formatter.write_paragraph()
        formatter.write_text(text)
        return
    heading, _, body = text.partition("\n")
    formatter.write_paragraph()
    formatter.write_heading(heading.strip())
    for line in textwrap.dedent(body).strip("\n").splitlines():
        formatter.write(f"{'':>{formatter.current_indent + 2}}{line}\n" if line.strip() else "\n")


class Command(TyperCommand):
    """Every persotool command: a plain --help switch and examples printed verbatim. Help is click's
    plain formatter, not rich panels: rendering panels took 0.3 s of every `--help`."""

    def get_help_option(self, ctx):
        return plain_help_option(super().get_help_option(ctx))

    def format_epilog(self, ctx, formatter) -> None:
        _write_epilog(self.epilog, formatter)

    def get_short_help_str(self, limit: int = 45) -> str:
        """The help's first sentence, whole: the command list wraps it rather than cutting it."""
        return _first_sentence(self.help)


def _first_sentence(text: str | None) -> str:
    import re

    first = " ".join((text or "").split("\n\n")[0].split())
    return re.split(r"(?<!e\.g)(?<!i\.e)\. ", first)[0].rstrip(".")


class PlainHelpGroup(TyperGroup):
    def get_short_help_str(self, limit: int = 45) -> str:
        return _first_sentence(self.help)

    def get_help_option(self, ctx):
        return plain_help_option(super().get_help_option(ctx))

    def format_epilog(self, ctx, formatter) -> None:
        _write_epilog(self.epilog, formatter)
