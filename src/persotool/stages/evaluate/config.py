"""The evaluate stage's config: which metrics at which cut-offs, on which part, segmented how."""

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from persotool.kernels.config import Strict


class EvaluateConfig(Strict):
    """What to measure and on what."""

    k: list[int] = Field([10], min_length=1, description="cut-offs")
    metrics: list[str] | None = Field(
        None,
        description="metric names, @k added from k (default: precision, recall, ndcg, map, mrr, hit_rate, auc; "
        "ranked lists: no auc)",
    )
    on: Literal["test", "valid"] = Field("test", description="the split's part to measure on")
    split: Path | None = Field(None, description="evaluate on this split of the model's dataset (default: the model's)")
    segment_by: str = Field("activity", description="activity (training interactions) or a column of users.parquet")
    segment_bins: int = Field(4, ge=2, le=20, description="a numeric users column: this many quantile bins")
    segment_edges: list[float] | None = Field(
        None, description="a numeric users column: bin edges instead of quantiles (e.g. 18,25,35,50,65)"
    )
    min_segment_users: int = Field(
        20, ge=1, description="smaller segments are pooled into one '(small segments pooled)' segment"
    )
    exposure_by: str = Field(
        "popularity",
        description="item groups of the exposure table: popularity (quartiles of training interactions) or a text "
        "column of items.parquet",
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the bootstrap and the sampled measures")
    compare: Path | None = Field(
        None, description="another model of the same dataset: how much its top-k lists differ (Jaccard, RBO)"
    )
    changed_below: float = Field(
        0.5, ge=0, le=1, description="with compare: a user's list counts as changed below this Jaccard similarity"
    )
    recommendations: Path | None = Field(
        None, description="another system's lists: user_id,item_id,rank (CSV or Parquet), instead of a model"
    )
    truth: Path | None = Field(None, description="with recommendations: user_id,item_id[,relevance]")

    @field_validator("k", mode="before")
    @classmethod
    def _cutoffs(cls, value):
        if isinstance(value, int):
            return [value]
        if isinstance(value, str):
            return [int(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("k")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(k < 1 for k in value):
            raise ValueError("cut-offs must be at least 1")
        return sorted(set(value))

    @field_validator("metrics", mode="before")
    @classmethod
    def _names(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
