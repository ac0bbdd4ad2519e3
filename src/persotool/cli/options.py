"""What every command shares: KEY=VALUE options, JSON output, flag names in messages, how a result
is shown, and plain --help with examples printed verbatim."""

import json
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

JsonOpt = Annotated[bool, typer.Option("--json", metavar="", help="Print the result as JSON on stdout.")]
ExperimentOpt = Annotated[
    str | None,
    typer.Option("--experiment", help="MLflow experiment name (default: $MLFLOW_EXPERIMENT_NAME or 'persotool')."),
]


def toml_value(text: str) -> Any:
    """A --set value read as TOML (numbers, booleans, arrays); anything else is a plain string."""
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def number(text: str) -> float:
    import math

    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def key_values(pairs: list[str] | None, option: str, example: str, convert=toml_value, error=None) -> dict[str, Any]:
    """Every KEY=VALUE option (--set, --event-weight, --min): one line naming the option and an
    example when a pair is malformed or its value does not convert."""
    from persotool.errors import ConfigError

    parsed: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError(pair)
            parsed[key.strip()] = convert(value.strip())
        except ValueError:
            raise (error or ConfigError)(f"{option} {pair!r}: expected {example}") from None
    return parsed


def print_json(payload: dict[str, Any]) -> None:
    from persotool.kernels.storage import finite_json

    text = json.dumps(finite_json(payload), indent=2, default=str, allow_nan=False)
    sys.stdout.write(text + "\n")


def as_flags(line: str, commands) -> str:
    """Library messages name options as the API does (user_col, `force`); on the command line they
    are flags (--user-col, --force): rename the options of `commands` that the message quotes in
    backticks or that have an underscore in their name."""
    import re

    for param in [p for c in commands for p in c.params]:
        flags = [opt for opt in param.opts if opt.startswith("--")]
        if not flags or not param.name:
            continue
        name = param.name.removeprefix("opt_")  # a stage option's parameter (see cli.stage)
        if name.startswith("set_"):
            name = name.removeprefix("set_").replace("__", ".")
        line = line.replace(f"`{name}`", flags[0])  # an option the library quotes by name
        if "_" in name:
            line = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flags[0], line)
    return line


def in_flag_names(line: str) -> str:
    """Set by the command group to the invoked command's `as_flags`."""
    return line


def show(result, as_json: bool, after: str | None = None) -> None:
    """How every command ends: the result's notes on stderr (in the command's own flag names), then
    the result as JSON, or drawn for the terminal followed by `after`."""
    for note in result.notes():
        typer.echo(f"persotool: note: {in_flag_names(note)}", err=True)
    if as_json:
        print_json(result.to_dict())
        return
    c = console()
    c.print(result)
    if after:
        c.print(after)


def console():
    """The terminal's console; piped (a file, `less`, a CI log) tables print whole, at their natural
    width, instead of being cut at 80 columns (COLUMNS, when set, still decides)."""
    import os

    from rich.console import Console

    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console(highlight=False)
    return Console(highlight=False, width=100_000)


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
