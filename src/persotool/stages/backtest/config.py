"""The backtest stage's config: where the logs are cut, how many clones of each known user are
simulated, the noise floors' resamples, and the world and behaviour of the simulation."""

from pydantic import Field

from persotool.kernels.config import Strict
from persotool.kernels.simulation.spec import BehaviourSpec, WorldSpec


class BacktestBehaviour(BehaviourSpec):
    """The user model of a back-test: fatigue is off by default, because the logs' own policy does
    not re-show skipped items the way a simulated static lineup does."""

    fatigue_weight: float = Field(0.0, ge=0, description="logit lost per earlier examination of the same item")


class BacktestConfig(Strict):
    cutoff: str | float = Field(0.8, description="where the logs are cut: a fraction of their time range, or a date")
    clones: int = Field(
        0, ge=0, le=1000, description="simulated copies of each known user (0: 50, down to 10 on large logs)"
    )
    slate_size: int = Field(10, ge=1, le=200, description="items shown per simulated visit")
    candidates: int = Field(100, ge=1, description="items lined up per user beyond the slate")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="root seed")
    bootstrap: int = Field(400, ge=50, description="resamples behind the noise floors")
    min_returning: int = Field(
        30, ge=1, description="fewer known users returning after the cutoff: the log cannot support a forecast"
    )
    world: WorldSpec = Field(default_factory=WorldSpec)
    behaviour: BacktestBehaviour = Field(default_factory=BacktestBehaviour)
