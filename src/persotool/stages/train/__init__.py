"""train: fit a recommender on a split's training part (early stopping on its validation part) and
save it as a model directory."""

from persotool.stages import Stage

STAGE = Stage(name="train", kind="model", config="TrainConfig", result="TrainedModel", source="split")
