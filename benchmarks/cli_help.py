"""How fast `--help` answers: `persotool --help` and every subcommand's `--help`, each in a fresh
process, median of `--repeat` runs, beside two baselines measured in the same run: a bare Python
start (the floor nothing can beat) and the help of a two-command Typer app with Typer's defaults
(rich panels), which is what persotool's help cost before it switched to click's plain formatter.
The target is under 0.3 s everywhere. Results: benchmarks/results/cli_help.json.

    python benchmarks/cli_help.py [--repeat 7]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import machine, write_results

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "cli_help.json"
PERSOTOOL = Path(sys.executable).parent / "persotool"
TARGET_SECONDS = 0.3
MINIMAL_TYPER = '''
import typer

app = typer.Typer(add_completion=False)


@app.command()
def hello(name: str = typer.Option("world", help="Who to greet.")) -> None:
    """Say hello."""


@app.command()
def bye() -> None:
    """Say goodbye."""


app()
'''


def _commands() -> list[list[str]]:
    import typer

    from persotool.cli import app

    def walk(command, prefix):
        yield prefix
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*prefix, name])

    return list(walk(typer.main.get_command(app), []))


def _median(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        minimal = Path(scratch) / "minimal.py"
        minimal.write_text(MINIMAL_TYPER)
        python_start = _median([sys.executable, "-c", "pass"], args.repeat)
        typer_default = _median([sys.executable, str(minimal), "hello", "--help"], args.repeat)
    seconds = {
        " ".join(["persotool", *path, "--help"]): _median([str(PERSOTOOL), *path, "--help"], args.repeat)
        for path in _commands()
    }
    slowest = max(seconds.values())
    report = {
        "machine": machine(),
        "repeat": args.repeat,
        "baselines_median_seconds": {"python_start": python_start, "default_typer_app_help": typer_default},
        "median_seconds": seconds,
        "slowest_seconds": slowest,
        "slowest_vs_default_typer_app": round(slowest / typer_default, 2),
        "target_seconds": TARGET_SECONDS,
        "all_under_target": slowest < TARGET_SECONDS,
    }
    write_results(args.out, report)


if __name__ == "__main__":
    main()
