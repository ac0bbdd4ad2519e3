"""The calibrate stage's config: how much of the log to fit on, and the seed of the fit's draws."""

from typing import Literal

from pydantic import Field

from persotool.kernels.config import Strict


class CalibrateConfig(Strict):
    """Which part of the log the world is fitted on."""

    until: str | float | None = Field(
        None, description="the window's end: an ISO date, a fraction of the log's time range, or the whole log"
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the in-sample check's simulation")
    truth_mixture: list[Literal["als", "ease", "itemknn", "lightfm"]] = Field(
        ["als", "ease", "itemknn"],
        min_length=2,
        description="truth families weighed by held-out fit for an auto truth (a simulation with the same list uses "
        "the weights)",
    )
