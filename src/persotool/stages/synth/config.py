"""The synth stage's config: every knob of the synthetic world behind `datasets synth`."""

from typing import Literal

from pydantic import Field, model_validator

from persotool.kernels.config import Strict


class SynthConfig(Strict):
    """Every knob of the synthetic world; defaults give a plausible e-commerce-like log."""

    users: int = Field(2000, ge=10, description="number of users")
    items: int = Field(1000, ge=10, description="number of items")
    events: int = Field(100_000, ge=100, le=50_000_000, description="approximate number of events")
    days: int = Field(90, ge=2, le=3650, description="days the log covers")
    factors: int = Field(16, ge=2, le=256, description="latent dimensions of the true preferences")
    popularity_exponent: float = Field(1.0, ge=0, description="Zipf exponent of item popularity")
    affinity_temperature: float = Field(1.5, gt=0, description="sharpness of user preferences")
    visit_probability_mean: float = Field(0.3, gt=0, lt=1, description="mean daily chance a user visits")
    churn_hazard_mean: float = Field(0.02, ge=0, lt=1, description="mean daily churn probability")
    reactivation_probability: float = Field(0.01, ge=0, lt=1, description="daily return chance of a churned user")
    session_gap_minutes: float = Field(30.0, gt=0, description="inactivity that ends a session, in minutes")
    opted_out_share: float = Field(0.0, ge=0, le=1, description="share of users whose consent is 'no'")
    dirty_share: float = Field(0.0, ge=0, le=0.5, description="share of extra broken or duplicate rows")
    format: Literal["csv", "jsonl", "parquet"] = Field("csv", description="file format of the raw log")
    compression: Literal["none", "gzip", "zstd"] = Field("none", description="compression of the raw log")
    time_encoding: Literal["iso", "ms"] = Field("iso", description="how event times are written")
    start: str = Field("2024-01-01", description="the log's first day (ISO date)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="root seed")
    impressions: bool = Field(
        False,
        description="write an impression log of a contextual world instead (events impressions, items, positions, "
        "exact propensities of a softmax logger), with two targets' action_dist.npy and their exact values",
    )
    positions: int = Field(3, ge=1, le=20, description="impression logs: positions an item can be shown at")
    context: int = Field(4, ge=1, le=64, description="impression logs: context features per impression")

    @model_validator(mode="after")
    def _target_size(self) -> "SynthConfig":
        if self.impressions:
            size = 2 * self.events * self.items * self.positions * 4
            if size > 2 * 1024**3:
                raise ValueError(
                    f"the two targets' action_dist.npy would take {size / 1024**3:.1f} GiB (events x items x positions "
                    "x 4 bytes each): use fewer events or items for an impression log (e.g. --items 20)"
                )
        return self
