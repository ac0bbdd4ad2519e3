"""The tune stage's config: which model, over which search space, towards which metric(s) on the
validation part, and where the study lives."""

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from persotool.kernels.config import Strict

LOWER_IS_BETTER = ("gini", "popularity")


class TuneConfig(Strict):
    """A study: which model, over which space, towards which metric(s) on the validation part."""

    model: str | None = Field(None, description="the model to tune (default: the space's)")
    space: Path = Field(
        description="search space: a TOML file, or a shipped one by name (als, bpr, ease, itemknn, lightfm, popular)"
    )
    trials: int | None = Field(20, ge=1, description="trials in the whole study (None: until `timeout`)")
    timeout: float | None = Field(None, gt=0, description="seconds this worker keeps starting trials")
    metrics: list[str] = Field(["ndcg@10"], min_length=1, description="objective(s), on the validation part")
    directions: list[Literal["maximize", "minimize"]] | None = Field(
        None, description="one per metric (default: maximize, except gini and popularity)"
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the sampler")
    study: str | None = Field(None, description="study name (default: from the model and the split)")
    storage: str | None = Field(None, description="journal file or RDB URL shared by workers (default: the output's)")
    prune: bool = Field(
        True,
        description="median pruning on per-epoch validation (single objective)",
        json_schema_extra={"off": "never stop a trial early"},
    )
    use_features: bool = Field(True, description="give the models the dataset's user and item features")

    @model_validator(mode="after")
    def _shape(self) -> "TuneConfig":
        if self.trials is None and self.timeout is None:
            raise ValueError("give `trials`, `timeout` or both: a study needs an end")
        if self.directions is not None and len(self.directions) != len(self.metrics):
            raise ValueError(f"{len(self.directions)} directions for {len(self.metrics)} metrics")
        for name in self.metrics:
            if "@" not in name:
                raise ValueError(f"metric {name!r} needs a cut-off, e.g. {name}@10")
        return self

    def resolved_directions(self) -> list[str]:
        if self.directions is not None:
            return list(self.directions)
        return ["minimize" if m.split("@")[0] in LOWER_IS_BETTER else "maximize" for m in self.metrics]
