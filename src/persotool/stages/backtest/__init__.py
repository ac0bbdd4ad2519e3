"""backtest: does the calibrated simulator predict what the logs did next? Calibrate before a
cutoff, simulate the held-out days, compare with the logs beside naive forecasts and noise floors."""

from persotool.stages import Stage

STAGE = Stage(name="backtest", kind="backtest", config="BacktestConfig", result="Backtest", source="dataset")
