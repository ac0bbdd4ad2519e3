"""The simulation config (a TOML file such as the shipped `simulation`): the world, user behaviour, arms and analysis.
Every constant of the user model is a field here, with its default and what it does."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from persotool.kernels.config import Strict

POLICIES = ("model", "random", "popular", "oracle", "adverse", "logged")
MAX_POPULATION = 50_000_000  # simulated users; memory grows linearly (see SimulationConfig.memory_bytes)

# The truth families' own settings: deliberately unlike the arms' defaults in the shipped model configs, so the
# world does not share an arm's model. `truth_factors` sets the ALS/LightFM factors.
TRUTH_DEFAULTS: dict[str, dict[str, Any]] = {
    "als": {"regularization": 0.1, "alpha": 1.0, "iterations": 10},
    "ease": {"l2": 150.0},
    "itemknn": {"neighbors": 40, "shrinkage": 25.0},
    "lightfm": {"loss": "bpr", "epochs": 15, "learning_rate": 0.05, "use_features": False, "patience": 15},
}


class WorldSpec(Strict):
    """Where the users' true preferences and habits come from."""

    source: str = Field(
        "calibrated",
        json_schema_extra={"path": True, "keywords": ["calibrated", "synthetic"]},
        description="calibrated: fitted on the dataset's whole log now; a world directory from `persotool "
        "calibrate`: its fit; synthetic: the ground truth of `datasets synth`",
    )
    start: Literal["fresh", "cutoff"] = Field(
        "fresh",
        description="fresh: every simulated user starts active, as on a first visit, with habits drawn from "
        "their logged user's posterior; cutoff: in the state the posterior gives them at the calibration's end",
    )
    ground_truth: Path | None = Field(None, description="synthetic: the `datasets synth` output directory")
    population: int = Field(
        0,
        ge=0,
        le=MAX_POPULATION,
        description="simulated users; 0 = the dataset's users, more = resampled from them (each with own draws)",
    )
    truth: Literal["auto", "als", "ease", "itemknn", "lightfm", "mixture"] = Field(
        "auto",
        description="the model family the true affinities come from, fitted on the calibration window with its own "
        "settings (`truth_params`); mixture: the mean of the standardised affinities of `truth_mixture`; auto: "
        "their weighted sum, weighted by how well each predicts the window's last 20% (see truth_fit)",
    )
    truth_mixture: list[Literal["als", "ease", "itemknn", "lightfm"]] = Field(
        ["als", "ease", "itemknn"], min_length=2, description="the families a mixture or auto truth combines"
    )
    truth_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="settings of each truth family, over TRUTH_DEFAULTS (e.g. {ease = {l2 = 50.0}})",
    )
    truth_factors: int = Field(
        32,
        ge=2,
        le=256,
        description="factors of the truth's embeddings (ALS/LightFM factors; the rank kept of EASE and ItemKNN scores)",
    )
    truth_noise: float = Field(
        0.3, ge=0, description="sd of noise added to every truth factor, relative to the factors' sd"
    )
    topic_dims: int = Field(8, ge=2, le=64, description="dimensions of the item topic vectors behind slate similarity")
    churn_inactivity_days: float = Field(
        30.0, gt=0, description="the fidelity report counts a user silent this long before the log ends as churned"
    )

    @property
    def world_dir(self) -> Path | None:
        """The world directory `source` names, if it names one."""
        return None if self.source in ("calibrated", "synthetic") else Path(self.source)


class BehaviourSpec(Strict):
    """How a simulated user examines a slate, engages, grows (dis)satisfied and churns. Fields left
    at None are calibrated from the logs."""

    examination: Literal["cascade", "log-discount"] = Field(
        "cascade",
        description="cascade: top-down, going on with `cascade_continue` (or `continue_after_engagement`); "
        "log-discount: position j is examined with probability 1/log2(j+1)",
    )
    cascade_continue: float = Field(0.85, gt=0, le=1, description="chance of examining the next item after a skip")
    continue_after_engagement: float = Field(0.7, ge=0, le=1, description="same, after an engagement")
    base_engagement: float | None = Field(
        None, gt=0, lt=1, description="mean engagement chance of an examined item (None: from the logs' sessions)"
    )
    affinity_weight: float = Field(1.5, ge=0, description="logit per sd of true user-item affinity")
    quality_weight: float = Field(0.3, ge=0, description="logit per sd of item quality (log popularity)")
    fatigue_weight: float = Field(0.5, ge=0, description="logit lost per earlier examination of the same item")
    similarity_weight: float = Field(1.0, ge=0, description="logit lost times the slate's mean pairwise cosine")
    satisfaction_decay: float = Field(
        0.7,
        ge=0,
        lt=1,
        description="weight satisfaction keeps at each visit; it is a weighted mean over visits of the visit's "
        "engagements relative to the user's expectation, (n - expected) / expected clipped to [-1, 1]",
    )
    expectation: float | None = Field(
        None, ge=0, description="engagements per visit a user expects (None: what the logged behaviour gives)"
    )
    churn_hazard: float | None = Field(
        None, ge=0, lt=1, description="daily churn chance at zero satisfaction (None: each user's fitted chance)"
    )
    churn_satisfaction: float = Field(
        1.0,
        ge=0,
        description="hazard is multiplied by exp(-this x satisfaction): a stated prior (rating logs show no link); "
        "at 1.0 a user whose recent visits gave nothing leaves e = 2.7 times as often",
    )
    reactivation: float | None = Field(
        None, ge=0, lt=1, description="daily chance that a churned user comes back (None: each user's fitted chance)"
    )


class ArmSpec(Strict):
    name: str
    policy: Literal["model", "random", "popular", "oracle", "adverse", "logged"]
    model: Path | None = Field(None, description="policy = model: a model directory from `persotool train`")
    share: float = Field(gt=0, description="traffic share (normalised over arms)")
    retrain: bool = Field(
        True, description="with the feedback loop on, whether this arm (model or popular) retrains on its own data"
    )

    @model_validator(mode="after")
    def _model(self) -> ArmSpec:
        if (self.policy == "model") != (self.model is not None):
            raise ValueError("`model = PATH` goes with policy = 'model', and only with it")
        return self


class FeedbackSpec(Strict):
    """The optional feedback loop: arms that learn from data retrain on their own simulated users."""

    every: int = Field(0, ge=0, description="days between retrains of model and most-popular arms (0: off)")
    with_logs: bool = Field(
        True, description="retrain on the logs plus the simulated engagements (false: simulated engagements only)"
    )
    epochs: int | None = Field(
        None, ge=1, description="epochs of a retrained model that trains in epochs (None: what its training kept)"
    )
    homogenization_users: int = Field(
        500, ge=2, description="users sampled for the daily mean Jaccard similarity of consumed sets"
    )


METRICS = (
    "engagements",
    "visits",
    "examined",
    "ctr",
    "engagement_rate",
    "diversity",
    "retention_d1",
    "retention_d7",
    "retention_d30",
    "churned",
    "rmst_days",
)
SEQUENTIAL_METRICS = ("engagements", "visits", "examined")


class AnalysisSpec(Strict):
    """How the experiment is analysed, as a real platform would: who is in it, what is measured,
    which metrics form which test family, and how the experiment is monitored day by day."""

    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of every test")
    enrollment: Literal["triggered", "itt"] = Field(
        "triggered",
        description="triggered: users enter at their first visit during the test (their first exposure), as a "
        "platform logs them; itt: every assigned user (intention to treat), visitors or not",
    )
    churn_window: int = Field(
        7, ge=1, description="a user is churned when they did not visit in the test's last churn_window days"
    )
    primary: list[str] = Field(["engagements"], description="the metrics the decision rests on")
    guardrails: list[str] = Field(["churned", "retention_d7"], description="metrics that must not get worse")
    secondary: list[str] | None = Field(None, description="the other metrics reported (None: all the rest)")
    correction: Literal["holm", "bonferroni", "none"] = Field(
        "holm", description="multiple-testing correction, applied within each family over its metrics and arms"
    )
    cuped: bool = Field(
        True, description="test engagements, visits and examined on their CUPED-adjusted values (needs pre_days)"
    )
    segments: list[str] = Field(
        [],
        description="report every metric's effect per segment of users: activity (logged interactions), tenure (days "
        "from a user's first logged event to the log's end), taste_breadth (entropy of the popularity tiers of what "
        "they consumed) or any column of the dataset's users.parquet; numeric ones cut into quantile bins",
    )
    segment_bins: int = Field(3, ge=2, le=20, description="quantile bins of a numeric segment")
    segment_edges: dict[str, list[float]] = Field(
        {}, description="explicit bin edges of a numeric segment instead of quantiles, e.g. {activity = [10, 50]}"
    )
    segment_correction: Literal["holm", "bh"] = Field(
        "holm",
        description="correction of segment effects and of their heterogeneity tests, each over every segment, "
        "metric and arm (holm: family-wise error; bh: false discovery rate)",
    )
    min_segment_users: int = Field(50, ge=2, description="segments with fewer enrolled users per arm are not tested")
    bootstrap: int = Field(0, ge=0, description="bootstrap resamples for mean metrics (0: off)")
    power: float = Field(0.8, gt=0, lt=1, description="power at which the minimum detectable effect is reported")
    sequential_window: int = Field(
        7, ge=1, description="days after a user's first exposure whose total the sequential test monitors"
    )
    msprt_tau: float | None = Field(
        None,
        gt=0,
        description="sd of the mSPRT's normal mixture, in units of the monitored metric's sd per user in the "
        "pre-period; unset: matched to the test's planned size, so that an effect a fixed-horizon test would "
        "find at p = 0.001 stops it soonest (fixed before the test starts)",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        """`population` was this setting's name before 0.2 (it clashed with the world's population,
        a count of users): still read, with a warning, until 0.3."""
        if isinstance(data, dict) and "population" in data:
            import warnings

            warnings.warn(
                "analysis.population is now analysis.enrollment (triggered or itt); the old name stops "
                "working in persotool 0.3",
                FutureWarning,
                stacklevel=2,
            )
            data = {("enrollment" if key == "population" else key): value for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _families(self) -> AnalysisSpec:
        declared = [*self.primary, *self.guardrails, *(self.secondary or [])]
        for name in declared:
            if name not in METRICS:
                raise ValueError(f"unknown metric {name!r}; metrics: {', '.join(METRICS)}")
        twice = sorted({name for name in declared if declared.count(name) > 1})
        if twice:
            raise ValueError(f"{twice[0]!r} is in two families; a metric belongs to one")
        if not self.primary:
            raise ValueError("declare at least one primary metric")
        return self

    def family(self) -> dict[str, str]:
        """Each reported metric's family: primary, guardrail or secondary."""
        families = {name: "primary" for name in self.primary} | {name: "guardrail" for name in self.guardrails}
        rest = self.secondary if self.secondary is not None else [m for m in METRICS if m not in families]
        return families | {name: "secondary" for name in rest}


# What each world varies of the user model, and where each range comes from (`RobustnessSpec.vary`).
# None of these is measured by a rating log (it has no impressions): each range is a stated prior
# around the default, wide enough to hold the values the literature and the audit tried.
VARY_DEFAULTS: dict[str, tuple[float, float]] = {
    "fatigue_weight": (0.0, 1.0),  # prior: none to twice the default 0.5 logit per earlier examination
    "similarity_weight": (0.0, 2.0),  # prior: none to twice the default 1.0
    "cascade_continue": (0.7, 0.95),  # prior on position decay: a skip ends the look 5-30% of the time
    "truth_noise": (0.1, 0.6),  # prior: a third to twice the default 0.3 sd of noise on the truth's factors
    "churn_satisfaction": (0.0, 2.0),  # prior: no link from what users get to leaving, to twice the default 1.0
}
VARY_BOUNDS: dict[str, tuple[float, float]] = {
    "fatigue_weight": (0.0, 10.0),
    "similarity_weight": (0.0, 10.0),
    "cascade_continue": (0.01, 1.0),
    "truth_noise": (0.0, 5.0),
    "affinity_weight": (0.0, 20.0),
    "quality_weight": (0.0, 20.0),
    "churn_satisfaction": (0.0, 20.0),
}


class RobustnessSpec(Strict):
    """Rerun the experiment over worlds drawn from what the logs do not pin down, and predict the
    effect an experiment of the configured size would find across them (`simulate --worlds N`)."""

    worlds: int = Field(0, ge=0, le=1000, description="worlds to draw (0: off)")
    workers: int = Field(1, ge=1, le=64, description="worlds run in this many parallel processes")
    truths: list[Literal["auto", "als", "ease", "itemknn", "lightfm", "mixture"]] = Field(
        ["auto"],
        min_length=1,
        description="auto: each world's truth family drawn with its held-out weight (see world.truth); a list of "
        "families: cycled over the worlds",
    )
    vary: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(VARY_DEFAULTS),
        description="behaviour (and world.truth_noise) drawn uniformly in [low, high] per world; the defaults are "
        "stated priors (see VARY_DEFAULTS); {} keeps the config's values",
    )
    bootstrap_users: bool = Field(True, description="resample the logged users each world is built from")
    posterior: bool = Field(True, description="draw the visit model's parameters from the fit's posterior")
    sign_probability: float = Field(
        0.9,
        gt=0.5,
        le=1,
        description="robust needs at least this share of worlds to have a true effect of the predicted effect's sign",
    )

    @model_validator(mode="after")
    def _ranges(self) -> RobustnessSpec:
        for name, (low, high) in self.vary.items():
            if name not in VARY_BOUNDS:
                raise ValueError(f"robustness.vary: {name!r} cannot vary; expected one of {', '.join(VARY_BOUNDS)}")
            floor, ceiling = VARY_BOUNDS[name]
            if not floor <= low <= high <= ceiling:
                raise ValueError(
                    f"robustness.vary.{name}: [{low}, {high}] must be ordered and within [{floor}, {ceiling}]"
                )
        if "auto" in self.truths and len(self.truths) > 1:
            raise ValueError("robustness.truths: 'auto' draws the families itself; list families without it")
        return self


class ImpressionLogSpec(Strict):
    """Each arm's impression log with exact propensities, for off-policy evaluation (`persotool ope`)."""

    epsilon: float = Field(
        0.0,
        ge=0,
        le=1,
        description="0: off. Else every arm is an epsilon-mixture of whole slates: at each visit, with this chance, a "
        "uniformly random slate of the items the user can still be served, else the arm's own slate; lineups then "
        "span the whole catalog, and each arm's log of its assigned users, every arm's action distribution on it "
        "and their exact values are written to impressions/",
    )


class SimulationConfig(Strict):
    """An experiment: its world, users' behaviour, arms, analysis, feedback loop and robustness."""

    default_config: ClassVar[str | None] = "simulation"  # the shipped one: oracle against most popular

    name: str = Field("experiment", description="experiment name: salts the assignment of users to arms")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="root seed")
    days: int = Field(30, ge=1, le=3650, description="days the test runs")
    pre_days: int = Field(14, ge=0, le=365, description="days simulated under the control arm before the test (CUPED)")
    slate_size: int = Field(10, ge=1, le=200, description="items shown per visit")
    candidates: int = Field(100, ge=1, description="items per user beyond the slate that a policy lines up")
    control: str | None = Field(None, description="the control arm (default: the first)")
    world: WorldSpec = Field(default_factory=WorldSpec)
    behaviour: BehaviourSpec = Field(default_factory=BehaviourSpec)
    arms: list[ArmSpec]
    feedback: FeedbackSpec = Field(default_factory=FeedbackSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    robustness: RobustnessSpec = Field(default_factory=RobustnessSpec)
    impressions: ImpressionLogSpec = Field(default_factory=ImpressionLogSpec)

    @model_validator(mode="after")
    def _arms(self) -> SimulationConfig:
        names = [a.name for a in self.arms]
        if len(names) < 2:
            raise ValueError("an experiment needs at least two arms")
        if len(set(names)) != len(names):
            raise ValueError("arm names must be unique")
        if self.control is None:
            self.control = names[0]
        elif self.control not in names:
            raise ValueError(f"control {self.control!r} is not an arm ({', '.join(names)})")
        for what in ("churn_window", "sequential_window"):
            window = getattr(self.analysis, what)
            if window < self.days:
                continue
            if what not in self.analysis.model_fields_set:  # the default of 7 days: half a shorter test
                setattr(self.analysis, what, max(1, self.days // 2))
            else:
                raise ValueError(f"analysis.{what} ({window}) must be shorter than the test ({self.days} days)")
        if self.world.source == "synthetic" and self.world.ground_truth is None:
            raise ValueError("world.source = 'synthetic' needs world.ground_truth (a `datasets synth` directory)")
        return self

    @property
    def shares(self) -> list[float]:
        total = sum(a.share for a in self.arms)
        return [a.share / total for a in self.arms]

    def memory_bytes(self, users: int) -> int:
        """About how much memory simulating `users` users takes: per user and arm (the pre-period
        counts as one more), a lineup of slate_size + candidates items (item, logit, consumed and
        exposure: 10 bytes each), daily outcomes (5 bytes a day) and some 200 bytes of state; and
        the world's truth factors (4 bytes each, twice for noise)."""
        lineup = (self.slate_size + self.candidates) * 10
        daily = (self.pre_days + self.days) * 5
        per_arm = lineup + daily + 200
        return int(users * (per_arm * (len(self.arms) + 1) + self.world.truth_factors * 8))
