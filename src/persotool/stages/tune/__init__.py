"""tune: a hyperparameter study with Optuna on a split's validation part, resumable and shared by
workers through one storage."""

from persotool.stages import Stage

STAGE = Stage(name="tune", kind="tuning", config="TuneConfig", result="Tuning", source="split", runtime=("progress",))
