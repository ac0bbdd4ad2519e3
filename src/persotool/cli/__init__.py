"""The `persotool` command line: a thin shell over the library.

Heavy libraries (polars, numpy, mlflow, lightfm) are imported inside commands so that `--help`
stays instant. Every library error becomes one line on stderr and a documented exit status.
"""

import os
import traceback

import typer

from persotool import __version__
from persotool.cli import options
from persotool.cli.options import PlainHelpGroup, as_flags, plain_help_option
from persotool.errors import EXIT_INTERNAL, TRACKING_OFF, PersotoolError, TrackingError

DEBUG_FLAG = "--debug"
# implicit (ALS/BPR) runs badly with an OpenBLAS thread pool; this must happen before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _as_flags(line: str, group, ctx) -> str:
    """A library error in the invoked command's flag names (every command of a group such as
    `datasets`)."""
    command = group.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
    commands = [command] if command is not None else []
    while any(hasattr(c, "commands") for c in commands):
        commands = [sub for c in commands for sub in (c.commands.values() if hasattr(c, "commands") else [c])]
    return as_flags(line, commands)


class PersotoolGroup(PlainHelpGroup):
    """Maps persotool's error tree to one clear line and an exit status; `--debug` anywhere on the
    command line (or PERSOTOOL_DEBUG=1) shows the traceback instead."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if DEBUG_FLAG in args:
            cut = args.index("--") if "--" in args else len(args)
            if DEBUG_FLAG in args[:cut]:
                ctx.meta["persotool.debug"] = True
                args = [a for i, a in enumerate(args) if not (a == DEBUG_FLAG and i < cut)]
        return super().parse_args(ctx, args)

    def get_help_option(self, ctx):
        return plain_help_option(super().get_help_option(ctx))

    def invoke(self, ctx: typer.Context):
        debug = ctx.meta.get("persotool.debug") or os.environ.get("PERSOTOOL_DEBUG") == "1"
        options.in_flag_names = lambda line: _as_flags(line, self, ctx)
        try:
            return super().invoke(ctx)
        except PersotoolError as exc:
            if debug:
                traceback.print_exc()
            line = _as_flags(exc.line(), self, ctx)
            if isinstance(exc, TrackingError):
                line = line.replace(TRACKING_OFF, "pass --no-track")
            typer.echo(f"persotool: error: {line}", err=True)
            ctx.exit(exc.exit_code)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except KeyboardInterrupt:
            typer.echo("persotool: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if debug:
                traceback.print_exc()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            typer.echo(
                f"persotool: internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
                err=True,
            )
            ctx.exit(EXIT_INTERNAL)
        finally:
            import sys

            if "persotool.tracking" in sys.modules:
                sys.modules["persotool.tracking"].close_recorders()


_COMPLETION = "_PERSOTOOL_COMPLETE" in os.environ or any(
    arg in ("--install-completion", "--show-completion") for arg in __import__("sys").argv[1:2]
)

app = typer.Typer(
    name="persotool",
    cls=PersotoolGroup,
    no_args_is_help=True,
    # Shell completion costs every command 0.15 s of imports: it is set up only when asked for
    # (`persotool --install-completion` / `--show-completion`, or a shell completing a word)
    add_completion=_COMPLETION,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Offline personalization experiments: ingest logs, train and evaluate recommenders, "
    "simulate A/B tests, and track every run in MLflow.",
    epilog="Exit status: 0 ok, 1 quality gate not met, 2 usage, 3 config, 4 data, 5 model, "
    "6 tracking, 7 output, 70 internal error.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"persotool {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, metavar="", help="Show the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", metavar="", help="Show tracebacks (also accepted after any command)."),
) -> None:
    """persotool command line."""


def _register_commands() -> None:
    """One command per stage, found through the stage registry: its file `cli/<stage>.py` holds its
    `SPEC` (or a `register_command` of its own), then `track`. A stage without a file has none."""
    import importlib
    import importlib.util

    from persotool.cli import stage
    from persotool.stages import STAGES

    for name in (*STAGES, "track"):
        if importlib.util.find_spec(f"persotool.cli.{name}") is None:
            continue
        module = importlib.import_module(f"persotool.cli.{name}")
        if hasattr(module, "register_command"):
            module.register_command(app)
        else:
            stage.register(app, module.SPEC)


_register_commands()


def _terminate(signum, frame) -> None:
    """SIGTERM (a CI timeout, `kill`, a scheduler) unwinds like Ctrl-C: temporary output is
    removed and a run being recorded is marked killed."""
    raise KeyboardInterrupt


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    app()
