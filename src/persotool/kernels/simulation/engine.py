"""The day loop: every arm serves every simulated user, vectorised over users with numpy.

Common random numbers: each day draws one set of uniforms per user (visit, per-slot engagement and
examination, churn, reactivation) and every arm uses the same set, so a user's outcome under each
arm is known (potential outcomes) and the true effect of an arm is exact. The loop runs over days
and slate positions, never over users.

Per visit: the slate is the first `slate_size` candidates the user has not consumed; examination
falls with position (cascade or log-discount); an examined item is engaged with probability
sigmoid(intercept + affinity_weight x affinity + quality_weight x quality - fatigue_weight x earlier
examinations of it - similarity_weight x the slate's mean pairwise topic cosine). Satisfaction is
an exponentially weighted mean over visits of what a visit gave relative to the user's expectation,
(engagements - expected) / expected clipped to [-1, 1]: each visit keeps `satisfaction_decay` of it
and adds the rest x that visit's gap, so under the policy the expectation was set from it stays near
zero (a sum would wander, and the convex churn response would turn that noise alone into churn),
a run of empty visits takes it towards -1, and days without a visit leave it where it is (a daily
decay would forget a bad visit before a light user's next one). The daily churn chance is
hazard x exp(-churn_satisfaction x satisfaction); churned users come back with their own daily
return chance (the world's, fitted; or the behaviour's `reactivation`).

With the feedback loop on, arms that learn from data retrain every `feedback.every` days on their
own simulated engagements and line up new candidates (`feedback.py`); consumed items stay excluded
and examination counts move to the new lists. Each day also records homogenization: catalog
coverage, Gini of exposure and the mean Jaccard similarity of a fixed user sample's consumed sets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from persotool.errors import ConfigError
from persotool.kernels.simulation import feedback, impressions
from persotool.kernels.simulation.policies import Candidates, candidates
from persotool.kernels.simulation.spec import ArmSpec, SimulationConfig
from persotool.kernels.simulation.world import SimulatedWorld


@dataclass
class DayDraws:
    visit: np.ndarray
    engage: np.ndarray
    proceed: np.ndarray
    churn: np.ndarray
    react: np.ndarray
    explore: np.ndarray | None = None  # (N,) epsilon-mixture arms: a random slate when below epsilon
    keys: np.ndarray | None = None  # (N, items): the random slate is the available items with the smallest keys


def draws_for(seed: int, day: int, n_users: int, k: int, n_items: int = 0) -> DayDraws:
    """The day's uniforms for every user; the same in every arm (common random numbers). With
    `n_items`, also the exploration draws of epsilon-mixture arms (drawn last: the others do not move)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 101, day]))
    draws = DayDraws(
        visit=rng.random(n_users, dtype=np.float32),
        engage=rng.random((n_users, k), dtype=np.float32),
        proceed=rng.random((n_users, k), dtype=np.float32),
        churn=rng.random(n_users, dtype=np.float32),
        react=rng.random(n_users, dtype=np.float32),
    )
    if n_items:
        draws.explore = rng.random(n_users, dtype=np.float32)
        draws.keys = rng.random((n_users, n_items), dtype=np.float32)
    return draws


@dataclass
class ArmState:
    """Everything that evolves for one arm; outcomes are per simulated user."""

    items: np.ndarray  # (N, C) candidates
    logit: np.ndarray  # (N, C)
    consumed: np.ndarray  # (N, C) bool
    exposure: np.ndarray  # (N, C) uint8: times examined
    active: np.ndarray
    satisfaction: np.ndarray
    churn_day: np.ndarray
    visits: np.ndarray
    slates: np.ndarray
    impressions: np.ndarray
    examined: np.ndarray
    engagements: np.ndarray
    last_visit: np.ndarray
    topic_sum: np.ndarray
    daily_engagements: np.ndarray  # (N, days) uint16
    daily_visits: np.ndarray  # (N, days) bool
    daily_examined: np.ndarray  # (N, days) uint16
    item_exposure: np.ndarray  # (items,) examinations so far
    item_engagement: np.ndarray  # (items,)
    per_day: dict[str, list[float]] = field(default_factory=dict)
    past_users: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # consumed in
    past_items: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int32))  # earlier lineups
    retrained: list[int] = field(default_factory=list)  # days on which the arm retrained
    stability: list[dict] = field(default_factory=list)  # per retrain: how much active users' next slates changed
    n_consumed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # per row, this lineup

    def __post_init__(self) -> None:
        if len(self.n_consumed) != len(self.items):
            self.n_consumed = self.consumed.sum(axis=1).astype(np.int32)

    @classmethod
    def start(cls, cand: Candidates, world: SimulatedWorld, days: int) -> ArmState:
        n, c = cand.items.shape
        r = world.topics.shape[1]
        return cls(
            items=cand.items,
            logit=cand.logit,
            consumed=np.zeros((n, c), dtype=bool),
            exposure=np.zeros((n, c), dtype=np.uint8),
            active=np.ones(n, dtype=bool) if world.start_active is None else world.start_active.copy(),
            satisfaction=np.zeros(n),
            churn_day=np.full(n, -1, dtype=np.int32),
            visits=np.zeros(n, dtype=np.int32),
            slates=np.zeros(n, dtype=np.int32),
            impressions=np.zeros(n, dtype=np.int32),
            examined=np.zeros(n, dtype=np.int32),
            engagements=np.zeros(n, dtype=np.int32),
            last_visit=np.full(n, -1, dtype=np.int32),
            topic_sum=np.zeros((n, r), dtype=np.float32),
            daily_engagements=np.zeros((n, days), dtype=np.uint16),
            daily_visits=np.zeros((n, days), dtype=bool),
            daily_examined=np.zeros((n, days), dtype=np.uint16),
            item_exposure=np.zeros(world.n_items, dtype=np.int64),
            item_engagement=np.zeros(world.n_items, dtype=np.int64),
        )

    def consumed_pairs(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) of every engagement so far, this lineup's and earlier ones', of all users
        or of the sorted user indices `rows`."""
        if rows is None:
            users, pos = np.nonzero(self.consumed)
            past = slice(None)
        else:
            at, pos = np.nonzero(self.consumed[rows])
            users = rows[at]
            past = np.isin(self.past_users, rows)
        return (
            np.concatenate([self.past_users[past], users]),
            np.concatenate([self.past_items[past], self.items[users, pos]]),
        )

    def refill(self, rows: np.ndarray, cand: Candidates) -> None:
        """Serve users `rows` (sorted) from new candidate lists (which must exclude what they
        consumed); their earlier engagements are kept and their examination counts start over."""
        at, pos = np.nonzero(self.consumed[rows])
        self.past_users = np.concatenate([self.past_users, rows[at]])
        self.past_items = np.concatenate([self.past_items, self.items[rows[at], pos]])
        self.items[rows], self.logit[rows] = cand.items, cand.logit
        self.consumed[rows] = False
        self.n_consumed[rows] = 0
        self.exposure[rows] = 0

    def relineup(self, cand: Candidates, n_items: int) -> None:
        """Serve from new candidate lists (which must exclude what was consumed), keeping the
        examination counts of items on both lists."""
        self.past_users, self.past_items = self.consumed_pairs()
        self.exposure = carry_exposure(self, cand.items, n_items)
        self.items, self.logit = cand.items, cand.logit
        self.consumed = np.zeros(cand.items.shape, dtype=bool)
        self.n_consumed = np.zeros(len(cand.items), dtype=np.int32)


PREFIX = 16  # rows with fewer consumed items in their lineup look at its first slate_size + PREFIX positions


def _first_available(state: ArmState, rows: np.ndarray, light: np.ndarray, k: int):
    """(row index into `rows`, lineup position, slot) of each visiting row's first k unconsumed
    candidates; `light` rows are searched in the lineup's first k + PREFIX positions only."""
    parts = []
    width = state.items.shape[1]
    for group, limit in ((np.flatnonzero(light), min(width, k + PREFIX)), (np.flatnonzero(~light), width)):
        if not len(group):
            continue
        sub = rows[group]
        avail = ~state.consumed[sub, :limit] & (state.items[sub, :limit] >= 0)
        rank = np.cumsum(avail, axis=1, dtype=np.int32)
        r, c = np.nonzero(avail & (rank <= k))
        parts.append((group[r], c, rank[r, c] - 1))
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    return tuple(np.concatenate(arrays) for arrays in zip(*parts, strict=True))


def step(
    state: ArmState, draws: DayDraws, day: int, world: SimulatedWorld, cfg: SimulationConfig, *, keep: bool = False
) -> impressions.Served | None:
    """One day of one arm, for every simulated user at once. With exploration draws (an
    epsilon-mixture arm) and `keep`, what was served, for the impression log."""
    beh, k = cfg.behaviour, cfg.slate_size
    visit = state.active & (draws.visit < world.propensity)
    rows = np.flatnonzero(visit)
    # a user who consumed m items of this lineup has their first k unconsumed ones within the first
    # k + m positions: most rows need only a short prefix of the lineup
    light = state.n_consumed[rows] < PREFIX
    r_idx, c_idx, slot = _first_available(state, rows, light, k)
    pos = np.full((len(rows), k), -1, dtype=np.int32)
    pos[r_idx, slot] = c_idx
    epsilon = cfg.impressions.epsilon if draws.explore is not None else 0.0
    if epsilon:
        own, available = pos, (state.items[rows] >= 0) & ~state.consumed[rows]
        pos = impressions.explore(state.items[rows], available, own, draws.explore[rows], draws.keys[rows], epsilon)
        r_idx, slot = np.nonzero(pos >= 0)
        c_idx = pos[r_idx, slot]
    valid = pos >= 0
    safe = np.maximum(pos, 0)
    rr = rows[:, None]
    items = np.where(valid, state.items[rr, safe], 0)
    logit = world.intercept + state.logit[rr, safe] - beh.fatigue_weight * state.exposure[rr, safe]
    topics = world.topics[items] * valid[..., None]
    total = topics.sum(axis=1)
    shown = valid.sum(axis=1)
    pairs = shown * (shown - 1)
    similarity = np.where(pairs > 0, ((total * total).sum(axis=1) - shown) / np.maximum(pairs, 1), 0.0)
    logit = logit - beh.similarity_weight * similarity[:, None]
    engage = draws.engage[rows] < 1 / (1 + np.exp(-logit))
    proceed = draws.proceed[rows]
    if beh.examination == "cascade":
        examined = np.zeros_like(valid)
        going = np.ones(len(rows), dtype=bool)
        for j in range(k):
            examined[:, j] = going & valid[:, j]
            chance = np.where(engage[:, j], beh.continue_after_engagement, beh.cascade_continue)
            going = examined[:, j] & (proceed[:, j] < chance)
    else:
        examined = valid & (proceed < (1 / np.log2(np.arange(k) + 2))[None, :])
    engaged = examined & engage  # examined slots are served slots
    served = None
    if epsilon and keep:
        fatigued = world.intercept + state.logit[rows] - beh.fatigue_weight * state.exposure[rows]
        served = impressions.Served(rows, own, pos, engaged, available, fatigued)
    # state by candidate position: only the served (row, position) pairs, which are unique
    ex_flat, en_flat = examined[r_idx, slot], engaged[r_idx, slot]
    users = rows[r_idx]
    state.exposure[users, c_idx] += ex_flat.astype(np.uint8)
    state.consumed[users, c_idx] |= en_flat
    n_eng = engaged.sum(axis=1)
    state.n_consumed[rows] += n_eng.astype(np.int32)
    n_exam = examined.sum(axis=1)
    state.visits[rows] += 1
    state.slates[rows] += shown > 0
    state.impressions[rows] += shown
    state.examined[rows] += n_exam
    state.engagements[rows] += n_eng
    state.last_visit[rows] = day
    state.daily_engagements[rows, day] = n_eng
    state.daily_visits[rows, day] = True
    state.daily_examined[rows, day] = n_exam
    state.topic_sum[rows] += (topics * engaged[..., None]).sum(axis=1)
    state.item_exposure += np.bincount(items[examined], minlength=world.n_items)
    state.item_engagement += np.bincount(items[engaged], minlength=world.n_items)
    expected = world.expectation if np.ndim(world.expectation) == 0 else world.expectation[rows]
    gap = np.clip((n_eng - expected) / np.maximum(expected, 0.1), -1.0, 1.0)
    keep = beh.satisfaction_decay
    state.satisfaction[rows] = keep * state.satisfaction[rows] + (1 - keep) * gap
    hazard = world.hazard * np.exp(-beh.churn_satisfaction * state.satisfaction)
    leaving = state.active & (draws.churn < hazard)
    back = ~state.active & (draws.react < (beh.reactivation if world.reactivation is None else world.reactivation))
    state.churn_day[leaving & (state.churn_day < 0)] = day
    state.active = (state.active & ~leaving) | back
    log = state.per_day
    for key, value in (
        ("active", state.active.sum()),
        ("visitors", len(rows)),
        ("slates", int((shown > 0).sum())),
        ("impressions", int(shown.sum())),
        ("examined", int(n_exam.sum())),
        ("engagements", int(n_eng.sum())),
        ("churned", int(leaving.sum())),
        ("coverage", float((state.item_exposure > 0).mean())),
        ("gini", gini(state.item_exposure)),
    ):
        log.setdefault(key, []).append(float(value))
    return served


def _retrain(
    state: ArmState, arm: ArmSpec, day: int, world: SimulatedWorld, cfg: SimulationConfig, pre_pairs, lineup, retrain
):
    """Refit the arm on the pre-period and its own engagements so far, and serve its new lineup."""
    users, items = state.consumed_pairs()
    users, items = np.concatenate([pre_pairs[0], users]), np.concatenate([pre_pairs[1], items])
    matrix = feedback.training_matrix(world, users, items, with_logs=cfg.feedback.with_logs)
    score = retrain(arm, world, matrix)
    before = next_slates(state.items, state.consumed, cfg.slate_size)
    state.relineup(lineup(arm, excluding(users, items), score), world.n_items)
    after = next_slates(state.items, state.consumed, cfg.slate_size)
    overlap = slate_jaccard(before, after)
    active = state.active
    state.stability.append(
        {
            "day": day,
            "jaccard": float(overlap[active].mean()) if active.any() else float("nan"),
            "changed": float((overlap[active] < CHANGED_BELOW).mean()) if active.any() else float("nan"),
        }
    )
    state.retrained.append(day)


CHANGED_BELOW = 0.5  # a user's next slate counts as changed by a retrain below this Jaccard similarity


def next_slates(items: np.ndarray, consumed: np.ndarray, k: int) -> np.ndarray:
    """(N, k) each user's next slate: the first k unconsumed items of their lineup (-1 beyond)."""
    return impressions.first_k(items, (items >= 0) & ~consumed, k)


def slate_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, |A & B| / |A | B| of two rows of item ids (-1: none; 1 when both are empty)."""
    size_a, size_b = (a >= 0).sum(axis=1), (b >= 0).sum(axis=1)
    both = np.sort(np.concatenate([a, b], axis=1), axis=1)
    present = both >= 0
    new = np.ones_like(both, dtype=bool)
    new[:, 1:] = both[:, 1:] != both[:, :-1]
    union = (new & present).sum(axis=1)
    shared = size_a + size_b - union
    return np.where(union > 0, shared / np.maximum(union, 1), 1.0)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of exposure over the catalog (0 = even, 1 = one item gets everything)."""
    total = counts.sum()
    if total == 0:
        return 0.0
    ordered = np.sort(counts)
    n = len(ordered)
    return float((2 * np.arange(1, n + 1) - n - 1).dot(ordered) / (n * total))


def carry_exposure(old: ArmState, new_items: np.ndarray, n_items: int) -> np.ndarray:
    """Examination counts of the old candidate lists, moved to the same (user, item) in new lists."""
    users, pos = np.nonzero(old.exposure)
    keys = users.astype(np.int64) * n_items + old.items[users, pos]
    order = np.argsort(keys)
    keys, counts = keys[order], old.exposure[users, pos][order]
    new_keys = np.arange(new_items.shape[0], dtype=np.int64)[:, None] * n_items + new_items
    out = np.zeros(new_items.shape, dtype=np.uint8)
    if len(keys):
        at = np.minimum(np.searchsorted(keys, new_keys), len(keys) - 1)
        hit = (keys[at] == new_keys) & (new_items >= 0)
        out[hit] = counts[at[hit]]
    return out


@dataclass
class Simulation:
    arms: dict[str, ArmState]
    eligible: np.ndarray  # users active when the experiment starts
    pre_engagements: np.ndarray
    pre_visits: np.ndarray
    seconds: dict[str, float]
    user_days: int
    pre: ArmState | None = None  # the pre-period under control


def excluding(users: np.ndarray, items: np.ndarray):
    """An `exclude` callback for `candidates`: the given (user, item) pairs are never served."""
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]

    def exclude(scores: np.ndarray, batch: np.ndarray) -> None:
        # candidates scores contiguous batches of users
        lo, hi = np.searchsorted(users, [batch[0], batch[-1] + 1])
        scores[users[lo:hi] - batch[0], items[lo:hi]] = -np.inf

    return exclude


def run_days(
    world: SimulatedWorld,
    cfg: SimulationConfig,
    dataset_digest: str,
    *,
    retrain: feedback.Retrain | None = None,
    recorder: impressions.Recorder | None = None,
) -> Simulation:
    """Pre-period under control, then every arm over `days` days from the same starting state.
    With the feedback loop on, `retrain` refits the arms that learn (the simulate stage's). With
    `impressions.epsilon`, every arm is an epsilon-mixture over a whole-catalog lineup, and
    `recorder` (if given) keeps each arm's impression log."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    cfg = world.behaviour(cfg)
    explore = world.n_items if cfg.impressions.epsilon else 0
    size = world.n_items if explore else cfg.slate_size + cfg.candidates
    control = next(a for a in cfg.arms if a.name == cfg.control)

    def lineup(arm: ArmSpec, exclude=None, score=None) -> Candidates:
        return candidates(
            arm, world, cfg.behaviour, size, seed=cfg.seed, dataset_digest=dataset_digest, exclude=exclude, score=score
        )

    pre: ArmState | None = None
    exclude = None
    pre_users = np.empty(0, dtype=np.int64)
    pre_items = np.empty(0, dtype=np.int32)
    if cfg.pre_days:
        pre = ArmState.start(lineup(control), world, cfg.pre_days)
        for day in range(cfg.pre_days):
            step(pre, draws_for(cfg.seed, day, world.n_users, cfg.slate_size, explore), day, world, cfg)
        pre_users, pre_items = pre.consumed_pairs()
        exclude = excluding(pre_users, pre_items)  # consumed in the pre-period: not served again
    timings["pre_period"] = time.perf_counter() - started
    arms: dict[str, ArmState] = {}
    t = time.perf_counter()
    for arm in cfg.arms:
        cand = lineup(arm, exclude)
        state = ArmState.start(cand, world, cfg.days)
        if pre is not None:
            # every arm starts from where the pre-period left each user
            state.exposure = carry_exposure(pre, cand.items, world.n_items)
            state.active = pre.active.copy()
            state.satisfaction = pre.satisfaction.copy()
            state.item_exposure = pre.item_exposure.copy()
            state.item_engagement = pre.item_engagement.copy()
        arms[arm.name] = state
    timings["candidates"] = time.perf_counter() - t
    eligible = pre.active.copy() if pre is not None else np.ones(world.n_users, dtype=bool)
    fb = cfg.feedback
    sample = feedback.sample_users(world, fb.homogenization_users, cfg.seed)
    timings["retrain"] = 0.0
    t = time.perf_counter()
    for day in range(cfg.days):
        if fb.every and day and day % fb.every == 0:
            r = time.perf_counter()
            for arm in cfg.arms:
                if arm.retrain and arm.policy in feedback.LEARNING:
                    if retrain is None:
                        raise ConfigError("the feedback loop (`feedback.every`) needs a way to retrain the arms")
                    _retrain(arms[arm.name], arm, day, world, cfg, (pre_users, pre_items), lineup, retrain)
            timings["retrain"] += time.perf_counter() - r
        draws = draws_for(cfg.seed, cfg.pre_days + day, world.n_users, cfg.slate_size, explore)
        for name, state in arms.items():
            served = step(state, draws, day, world, cfg, keep=recorder is not None)
            if recorder is not None and served is not None:
                recorder.record(name, served, day, {a: s.items for a, s in arms.items()})
            users, items = state.consumed_pairs(sample)
            jaccard = feedback.mean_jaccard(users, items, sample, world.n_items)
            state.per_day.setdefault("jaccard", []).append(jaccard)
    timings["days"] = time.perf_counter() - t - timings["retrain"]
    timings["total"] = time.perf_counter() - started
    return Simulation(
        arms=arms,
        eligible=eligible,
        pre_engagements=pre.engagements.copy() if pre is not None else np.zeros(world.n_users, dtype=np.int32),
        pre_visits=pre.visits.copy() if pre is not None else np.zeros(world.n_users, dtype=np.int32),
        seconds=timings,
        user_days=world.n_users * cfg.days * len(arms),
        pre=pre,
    )
