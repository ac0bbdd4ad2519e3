"""`persotool benchmark`: several models on one split, with paired significance tests."""

from pathlib import Path
from typing import Annotated

import typer

from persotool.cli.options import Command, ExperimentOpt, ForceOpt, JsonOpt, NoTrackOpt, OutOpt, console, print_json

EXAMPLES = """
[bold]Examples[/bold]

  persotool benchmark build/movielens-split --config configs/benchmark.toml -o build/benchmark

  persotool benchmark build/split --config configs/benchmark.toml -o build/b --baseline itemknn --only ease,lightfm
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
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    no_track: NoTrackOpt = False,
    experiment: ExperimentOpt = None,
) -> None:
    """Train and evaluate several models on one split; test each against a baseline (paired t-test
    and Wilcoxon, Holm-corrected); write results.csv/.md, tests.csv, a plot and every model."""
    from persotool import workflow
    from persotool.errors import ConfigError
    from persotool.evaluation import benchmark

    overrides: dict = {}
    if baseline:
        overrides["baseline"] = baseline
    if ks:
        try:
            overrides["k"] = [int(k) for k in ks.split(",") if k.strip()]
        except ValueError:
            raise ConfigError(f"--k {ks!r}: expected comma-separated integers such as 5,10,20") from None
    cfg = benchmark.load_config(config, overrides)
    if only:
        wanted = [m.strip() for m in only.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in cfg.models]
        if unknown:
            raise ConfigError(f"--only: {unknown[0]!r} is not a model of {config} ({', '.join(cfg.models)})")
        cfg.models = {k: v for k, v in cfg.models.items() if k in wanted or k == cfg.baseline}
        if len(cfg.models) < 2:
            raise ConfigError("--only: a benchmark needs at least one model besides the baseline")
    tracking = workflow.tracking(experiment, enabled=not no_track)
    quiet = as_json
    c = console()

    def progress(label: str, stage: str) -> None:
        if not quiet:
            c.print(f"[dim]{label}: {stage}[/dim]")

    made = workflow.benchmark(split_dir, cfg, out, force=force, track=tracking, progress=progress)
    if as_json:
        print_json(
            {
                "output": str(out),
                "baseline": cfg.baseline,
                "users_evaluated": made.manifest["users_evaluated"],
                "results": made.results.to_dicts(),
                "tests": made.tests.to_dicts(),
                "mlflow_run_id": made.mlflow_run_id,
            }
        )
        return
    _render(made, cfg)
    c.print(f"Written to {out} (results.csv, results.md, tests.csv, comparison.png, models/)")


def _render(result, cfg) -> None:
    from rich.table import Table

    from persotool.evaluation.benchmark import significance_marks

    names = cfg.metric_names()
    marks = significance_marks(result.tests)
    users = result.manifest["users_evaluated"]
    table = Table(title=f"{cfg.name}: {users:,} users, full ranking, {cfg.on} set", title_justify="left")
    # one column per model, one row per metric: fits a terminal for the usual five or six models
    labels = result.results["model"].to_list()
    table.add_column("metric", no_wrap=True)
    for label in labels:
        table.add_column(f"{label}\n[dim](baseline)[/dim]" if label == cfg.baseline else label, justify="right")
    rows = {row["model"]: row for row in result.results.iter_rows(named=True)}
    for name in [*names, "fit_seconds"]:
        cells = [name.replace("_seconds", " s")]
        for label in labels:
            value = rows[label][name]
            if name == "fit_seconds":
                cells.append(f"{value:.1f}")
                continue
            mark = {"+": " [green]▲[/green]", "-": " [red]▼[/red]"}.get(marks.get((label, name), ""), "  ")
            cells.append(f"{value:.4f}{mark}")
        table.add_row(*cells)
    c = console()
    c.print(table)
    c.print(
        f"[green]▲[/green]/[red]▼[/red]: better/worse than {cfg.baseline}, paired t-test and Wilcoxon both "
        f"significant after Holm correction over {len(result.tests)} comparisons (alpha {cfg.alpha})."
    )


def register(app: typer.Typer) -> None:
    app.command("benchmark", epilog=EXAMPLES, cls=Command)(benchmark_command)
