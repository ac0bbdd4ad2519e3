"""calibrate: fit the simulator's user model (visits, leaving, returning) on a dataset's logs and
keep it as a world directory for `simulate` and `backtest`."""

from persotool.stages import Stage

STAGE = Stage(name="calibrate", kind="world", config="CalibrateConfig", result="World", source="dataset")
