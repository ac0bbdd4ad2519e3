"""The train stage's config: which model, with which hyperparameters. A model config file
(shipped by name: `lightfm`, `ease`...; a tuning's `best.toml`) is this config: `model = NAME` and `[params]`."""

from typing import Any, ClassVar

from pydantic import Field, model_validator

from persotool.kernels.config import Strict


class TrainConfig(Strict):
    """A model to fit on a split."""

    config_folder: ClassVar[str] = "models"

    model: str | None = Field(None, description="the model to train: popular, itemknn, ease, als, bpr, lightfm, random")
    params: dict[str, Any] = Field(default_factory=dict, description="its hyperparameters (the model's defaults)")
    valid_k: int = Field(10, ge=1, le=1000, description="early stopping watches ndcg@valid_k on the validation part")
    use_features: bool = Field(
        True,
        description="give the model the dataset's user and item features",
        json_schema_extra={"off": "ignore the dataset's user and item features"},
    )

    @model_validator(mode="after")
    def _named(self) -> "TrainConfig":
        if not self.model:
            raise ValueError("say which model to train: a model name or a config file with model = NAME")
        return self
