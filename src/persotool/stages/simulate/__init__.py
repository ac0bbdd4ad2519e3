"""simulate: an A/B/n test of recommenders on users calibrated from the logs, before it runs, with
the exact true effect of every arm (common random numbers)."""

from persotool.stages import Stage

STAGE = Stage(name="simulate", kind="simulation", config="SimulationConfig", result="Experiment", source="dataset")
