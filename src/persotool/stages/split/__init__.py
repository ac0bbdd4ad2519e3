"""split: a dataset -> train / valid / test, leakage-aware and deterministic."""

from persotool.stages import Stage

STAGE = Stage(name="split", kind="split", config="SplitConfig", result="Split", source="dataset")
