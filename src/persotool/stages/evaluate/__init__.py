"""evaluate: full-ranking metrics of a trained model on its split, or of another system's ranked
lists, with beyond-accuracy measures and per-segment bootstrap intervals."""

from persotool.stages import Stage

STAGE = Stage(
    name="evaluate", kind="evaluation", config="EvaluateConfig", result="Evaluation", source="model", out_optional=True
)
