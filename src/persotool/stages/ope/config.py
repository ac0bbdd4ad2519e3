"""The ope stage's config: the target policies, how deterministic targets are made stochastic,
the intervals, the reward model and the warning thresholds."""

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from persotool.kernels.config import Strict


class OpeConfig(Strict):
    """Which policies to evaluate on the logged impressions, and how."""

    policies: list[Path] = Field(
        default_factory=list,
        description="target policies: an action_dist.npy (impressions x items x positions, the log's order, items "
        "in ascending raw-id order), a recs.parquet (user_id,item_id,rank[,score]) or a trained model directory "
        "(both for logs with user ids)",
    )
    epsilon: float = Field(
        0.1,
        ge=0,
        le=1,
        description="recommendation lists become stochastic: the listed item at its rank with probability "
        "1 - epsilon, any item uniformly otherwise (a deterministic list overlaps almost no log)",
    )
    temperature: float | None = Field(
        None,
        gt=0,
        description="model targets: a softmax of the model's scores / temperature over the log's items (in the "
        "model's score units), the same at every position, instead of the epsilon-mixture of its lists",
    )
    interval: Literal["skew", "normal", "bootstrap"] = Field(
        "skew",
        description="skew: from the estimator's variance (delta method for ratios) and skewness (Hall's "
        "transformation: importance-weighted rewards are right-skewed, and a normal interval misses low); normal: "
        "symmetric; bootstrap: percentile",
    )
    bootstrap: int = Field(2000, ge=100, le=100_000, description="bootstrap resamples (interval = bootstrap)")
    level: float = Field(0.95, gt=0.5, lt=1, description="confidence level of every interval")
    folds: int = Field(3, ge=2, le=20, description="cross-fitting folds of the reward model")
    min_ess: float = Field(100, ge=0, description="warn when the effective sample size is below this")
    min_ess_share: float = Field(0.01, ge=0, le=1, description="or below this share of the impressions")
    min_effective_rewards: float = Field(
        50,
        ge=0,
        description="0/1 rewards: warn when ESS x the rarer outcome's share (the rewards an estimate effectively "
        "rests on) is below this; intervals undercover there (benchmarks/loop_ope.py)",
    )
    seed: int = Field(0, ge=0, description="folds, bootstrap and the logging-policy model")

    @model_validator(mode="after")
    def _some(self) -> "OpeConfig":
        if not self.policies:
            raise ValueError("name at least one target policy (--policy FILE)")
        return self
