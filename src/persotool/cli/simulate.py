"""`persotool simulate`: an A/B test of recommenders on users calibrated from the logs."""

from pathlib import Path
from typing import Annotated

import typer

from persotool.cli.options import Command, ExperimentOpt, ForceOpt, JsonOpt, NoTrackOpt, OutOpt, console, print_json

EXAMPLES = """
[bold]Examples[/bold]

  persotool simulate build/movielens --config configs/simulation.toml -o build/ab

  persotool simulate build/movielens --config configs/simulation.toml -o build/ab --set days=60 \\
      --set world.population=50000 --json
"""


def simulate_command(
    dataset: Annotated[Path, typer.Argument(help="A dataset directory from `persotool ingest` (the world's logs).")],
    out: OutOpt,
    config: Annotated[Path, typer.Option("--config", help="Simulation config.")] = Path("configs/simulation.toml"),
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="Override KEY=VALUE (dotted, e.g. world.population=5000).")
    ] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    no_track: NoTrackOpt = False,
    experiment: ExperimentOpt = None,
) -> None:
    """Simulate an A/B/n test: users calibrated from the logs visit, engage and churn under every arm
    (common random numbers), and the experiment is analysed as a real platform would, beside the true
    effects. Writes results, per-user and per-day tables, plots and report.html."""
    from persotool import workflow
    from persotool.cli.train import parse_sets
    from persotool.simulation import experiment as exp

    cfg = exp.load_config(config, parse_sets(sets))
    tracking = workflow.tracking(experiment, enabled=not no_track)
    made = workflow.simulate(dataset, cfg, out, force=force, track=tracking)
    if as_json:
        print_json({**made.summary, "output": str(out), "mlflow_run_id": made.mlflow_run_id})
        return
    _render(made, cfg)
    console().print(f"Written to {out} (results.csv/json, per_user.parquet, plots, report.html)")


def _render(made, cfg) -> None:
    from rich import box
    from rich.table import Table

    from persotool.simulation.report import SECONDARY_NOTE, homogenization_table, secondary_table

    summary, results = made.summary, made.results
    c = console()
    sizes = ", ".join(f"{k} {v:,}" for k, v in summary["arm_sizes"].items())
    srm_p = summary["sample_ratio_mismatch_p"]
    srm = "[red]mismatch![/red]" if srm_p < 0.001 else "ok"
    c.print(
        f"[bold]{cfg.name}[/bold]: {cfg.days} days, {summary['population']:,} simulated users "
        f"({sizes}); sample ratio {srm} (p = {srm_p:.3g})"
    )
    for (arm,), rows in results.group_by("arm", maintain_order=True):
        table = Table(
            title=f"{arm} against {cfg.control} (95% CI; p Holm-corrected; ▲▼ significant)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for col in ("metric", "control", "arm", "effect", "95% CI", "p", "true"):
            table.add_column(col, justify="left" if col == "metric" else "right", no_wrap=True)
        for row in rows.iter_rows(named=True):
            mark = ""
            if row["significant"]:
                mark = "[green]▲[/green]" if row["effect"] > 0 else "[red]▼[/red]"
            table.add_row(
                row["metric"],
                f"{row['control']:.3g}",
                f"{row['treatment']:.3g}",
                f"{row['effect']:+.3g}",
                f"{row['ci_low']:+.2g},{row['ci_high']:+.2g}",
                f"{row['p_holm']:.2g} {mark}",
                f"{row['true_effect']:+.3g}",
            )
        c.print(table)
    secondary = secondary_table(results)
    if len(secondary):
        table = Table(
            title="Secondary tests (not in the Holm family: p uncorrected)",
            caption=SECONDARY_NOTE,
            title_justify="left",
            caption_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for col in ("arm", "metric", "test", "effect", "95% CI", "p"):
            table.add_column(col, justify="left" if col in ("arm", "metric", "test") else "right", no_wrap=True)
        for row in secondary.iter_rows(named=True):
            shown = row["effect"] is not None
            table.add_row(
                row["arm"],
                row["metric"],
                row["test"],
                f"{row['effect']:+.3g}" if shown else "",
                f"{row['ci_low']:+.2g},{row['ci_high']:+.2g}" if shown else "",
                f"{row['p (uncorrected)']:.2g}",
            )
        c.print(table)
    table = Table(
        title="Homogenization at the end of the test",
        caption="Jaccard: mean over user pairs of consumed sets; coverage: share of items shown; Gini of exposure",
        title_justify="left",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("arm", "Jaccard", "coverage", "Gini", "retrained on days"):
        table.add_column(col, justify="left" if col in ("arm", "retrained on days") else "right")
    for arm, jaccard, coverage, gini, days in homogenization_table(summary["homogenization"]).iter_rows():
        table.add_row(arm, f"{jaccard:.4f}", f"{coverage:.3f}", f"{gini:.3f}", days)
    c.print(table)
    stops = results.filter(results["first_stop_day"].is_not_null()) if "first_stop_day" in results.columns else None
    if stops is not None and len(stops):
        for row in stops.iter_rows(named=True):
            c.print(f"mSPRT: {row['arm']} / {row['metric']} could have stopped on day {row['first_stop_day']}")


def register(app: typer.Typer) -> None:
    app.command("simulate", epilog=EXAMPLES, cls=Command)(simulate_command)
