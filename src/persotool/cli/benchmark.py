"""`persotool benchmark`: several models on one split, with paired significance tests."""

from pathlib import Path
from typing import Annotated

import typer

from persotool.cli.options import (
    Command,
    ExperimentOpt,
    ForceOpt,
    JsonOpt,
    NoTrackOpt,
    OutOpt,
    console,
    int_list,
    key_values,
    name_list,
    show,
)

EXAMPLES = """
[bold]Examples[/bold]

  persotool benchmark build/movielens-split --config configs/benchmark.toml -o build/benchmark

  persotool benchmark build/split --config configs/benchmark.toml -o build/b --baseline itemknn --only ease,lightfm

  persotool benchmark build/split --config configs/benchmark.toml --add ease-tuned=build/tune-ease/best.toml -o build/b
"""


def benchmark_command(
    split_dir: Annotated[Path, typer.Argument(help="A split directory from `persotool split`.")],
    out: OutOpt,
    config: Annotated[Path, typer.Option("--config", help="Benchmark config.")] = Path("configs/benchmark.toml"),
    baseline: Annotated[str | None, typer.Option("--baseline", help="Override the config's baseline.")] = None,
    only: Annotated[
        str | None, typer.Option("--only", help="Comma-separated subset of the config's models (baseline kept).")
    ] = None,
    ks: Annotated[str | None, typer.Option("--k", help="Override the cut-offs, e.g. 5,10,20.")] = None,
    add: Annotated[
        list[str] | None,
        typer.Option("--add", help="LABEL=CONFIG: one more model from a config file (e.g. a tune's best.toml)."),
    ] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    no_track: NoTrackOpt = False,
    experiment: ExperimentOpt = None,
) -> None:
    """Train and evaluate several models on one split; test each against a baseline (paired t-test
    and Wilcoxon, Holm-corrected); write results.csv/.md, tests.csv, a plot and every model."""
    from persotool import workflow

    overrides = {"baseline": baseline, "k": int_list(ks, "--k")}
    quiet = as_json
    c = console()

    def progress(label: str, stage: str) -> None:
        if not quiet:
            c.print(f"[dim]{label}: {stage}[/dim]")

    made = workflow.benchmark(
        split_dir,
        config,
        out,
        only=name_list(only),
        add=key_values(add, "--add", "LABEL=PATH, e.g. ease-tuned=build/tune/best.toml", str) or None,
        force=force,
        track=workflow.tracker(experiment, enabled=not no_track),
        progress=progress,
        **{key: value for key, value in overrides.items() if value},
    )
    show(made, as_json, after=f"Written to {out} (results.csv, results.md, tests.csv, comparison.png, models/)")


def register(app: typer.Typer) -> None:
    app.command("benchmark", epilog=EXAMPLES, cls=Command)(benchmark_command)
