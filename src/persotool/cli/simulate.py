"""`persotool simulate`: an A/B test of recommenders on users calibrated from the logs."""

from persotool.cli.stage import Source, Spec

EXAMPLES = """
[bold]Examples[/bold]

  persotool simulate build/movielens --config demo/simulation.toml -o build/ab

  persotool simulate build/movielens --config demo/simulation.toml -o build/ab --set days=60 \\
      --set world.population=50000 --json

  persotool simulate build/movielens --config demo/simulation.toml -o build/ab --worlds 20 --workers 2
"""

SPEC = Spec(
    name="simulate",
    summary="Simulate an A/B/n test: users calibrated from the logs visit, engage and churn under every arm "
    "(common random numbers), and the experiment is analysed as a real platform would, beside the true "
    "effects. Writes results, per-user and per-day tables, plots and report.html.",
    examples=EXAMPLES,
    source=Source("A dataset directory from `persotool ingest` (the world's logs)."),
    shortcuts={"--worlds": "robustness.worlds", "--workers": "robustness.workers"},
    config_default="simulation",
    config_help="Simulation config: the world, behaviour, arms and analysis.",
    set_example="KEY=VALUE, e.g. --set world.population=5000",
    after="Written to {out} (results.csv/json, per_user.parquet, plots, report.html).",
)
