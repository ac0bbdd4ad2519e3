"""The command line as a whole: help everywhere, version, and the import-time budget."""

from __future__ import annotations

import subprocess
import sys

import typer

from persotool import __version__
from persotool.cli import app
from tests.conftest import run_cli


def _all_commands(group, prefix=()):
    command = typer.main.get_command(group) if isinstance(group, typer.Typer) else group
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from _all_commands(sub, (*prefix, name))


def test_every_command_has_help_with_an_example() -> None:
    paths = list(_all_commands(app))
    assert {("ingest",), ("datasets", "synth"), ("datasets", "info")} <= set(paths)
    for path in paths:
        result = run_cli(*path, "--help")
        assert result.exit_code == 0, (path, result.stderr)
        assert "Usage" in result.stdout
        if path and path != ("datasets",):
            assert "Example" in result.stdout, f"{' '.join(path)} --help needs an example"
        assert "<bool>" not in result.stdout, f"{' '.join(path)} --help shows a <bool> placeholder for a switch"


def test_command_lists_show_each_first_sentence_whole() -> None:
    """`persotool --help` (and `datasets --help`) list each command with the first sentence of its
    help, whole, wrapped rather than cut with '...' (tune's ended mid-sentence)."""
    import re

    for group in ((), ("datasets",)):
        listing = run_cli(*group, "--help").stdout.split("Commands:", 1)[1]
        command = typer.main.get_command(app)
        for name in group:
            command = command.commands[name]
        assert "..." not in listing
        flat = " ".join(listing.split()).replace("- ", "-")  # click may wrap after a hyphen
        for name, sub in command.commands.items():
            text = " ".join(sub.help.split("\n\n")[0].split())
            first = re.split(r"(?<!e\.g)(?<!i\.e)\. ", text)[0].rstrip(".").replace("- ", "-")
            assert f"{name} {first}" in flat, f"{' '.join((*group, name))}: {first!r} not shown whole"


def test_version() -> None:
    result = run_cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"persotool {__version__}"


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys; from persotool.cli import app; "
        "heavy = [m for m in ('polars', 'numpy', 'mlflow', 'lightfm', 'scipy', 'pandas') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_unknown_option_is_usage_error() -> None:
    result = run_cli("ingest", "x.csv", "-o", "y", "--no-such-flag")
    assert result.exit_code == 2


def test_info_on_a_non_dataset_is_data_error(tmp_path) -> None:
    result = run_cli("datasets", "info", tmp_path)
    assert result.exit_code == 4 and "no manifest.json" in result.stderr


def test_shell_completion_completes_commands_and_flags() -> None:
    """`persotool --install-completion` sets it up; the shell then asks through _PERSOTOOL_COMPLETE."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    persotool = str(Path(sys.executable).parent / "persotool")

    def complete(words: str) -> list[str]:
        env = {**os.environ, "_PERSOTOOL_COMPLETE": "complete_bash", "COMP_WORDS": words}
        env["COMP_CWORD"] = str(len(words.split()) - 1)
        done = subprocess.run([persotool], env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("persotool sp") == ["split"]
    assert complete("persotool split --stra") == ["--strategy"]
    assert "synth" in complete("persotool datasets s")
