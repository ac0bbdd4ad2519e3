"""`persotool backtest`: does the calibrated simulator predict the logs it did not see?"""

from persotool.cli.stage import Source, Spec

EXAMPLES = """
[bold]Examples[/bold]

  persotool backtest build/movielens --cutoff 0.8 -o build/backtest

  persotool backtest build/shop --cutoff 2024-03-01 -o build/backtest --set clones=50 --json
"""

SPEC = Spec(
    name="backtest",
    summary="Does the simulator predict? Calibrate on the logs before the cutoff, simulate the users known "
    "then over the held-out days, and compare with what the logs show: returns, active days, gaps, "
    "interactions per day, item popularity, the retention curve and per-user forecasts, beside naive "
    "forecasts and noise floors, with a verdict per quantity.",
    examples=EXAMPLES,
    source=Source("A dataset directory from `persotool ingest`."),
    set_example="KEY=VALUE, e.g. --set clones=50",
    after="Written to {out} (results.json, quantities.csv, per_user.parquet, plots).",
)
