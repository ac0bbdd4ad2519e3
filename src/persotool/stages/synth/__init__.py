"""synth: a synthetic interaction log with known ground truth (`persotool datasets synth`)."""

from persotool.stages import Stage

STAGE = Stage(name="synth", kind="synthetic-log", config="SynthConfig", result="SyntheticLog", source=None)
