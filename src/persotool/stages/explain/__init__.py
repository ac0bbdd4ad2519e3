"""explain: why a trained model recommends each of a user's top items, as the reasons the model
can honestly give (history items, popularity, a remainder), adding up to the score."""

from persotool.stages import Stage

STAGE = Stage(
    name="explain",
    kind="explanations",
    config="ExplainConfig",
    result="Explanations",
    source="model",
    out_optional=True,
)
