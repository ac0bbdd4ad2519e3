"""The split stage's config: how to cut a dataset into train / valid / test."""

from typing import Literal

from pydantic import Field, field_validator

from persotool.kernels.config import Strict


class SplitConfig(Strict):
    """How to split; every field has a CLI flag of the same name."""

    strategy: Literal["temporal", "leave-last", "user-random", "random"] = Field(
        "temporal", description="how to hold out: a global time cutoff, each user's newest, or at random"
    )
    cutoff: str = Field("0.8", description="temporal: an ISO date-time, or a fraction of the time range")
    valid_cutoff: str = Field("0.9", description="temporal: the same, within the training part")
    leave_last: int = Field(1, ge=1, description="leave-last: test interactions per user")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="user-random and random strategies")
    valid_fraction: float = Field(0.1, gt=0, lt=1, description="user-random and random strategies")
    valid: bool = Field(False, description="also cut a validation set from the training part")
    min_user_interactions: int = Field(0, ge=0, description="k-core: users need at least this many")
    min_item_interactions: int = Field(0, ge=0, description="k-core: items need at least this many")
    relevance_threshold: float | None = Field(None, description="test values below it are not relevant")
    keep_repeats: bool = Field(False, description="keep test pairs the user already had in training")
    test_users: Literal["all", "seen"] = Field(
        "all", description="seen: keep only held-out users with training history (no cold-start users)"
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="root seed")

    @field_validator("cutoff", "valid_cutoff", mode="before")
    @classmethod
    def _fraction(cls, value):
        """A fraction given as a number (pt.split(..., cutoff=0.8)) is the same cutoff as "0.8"."""
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
