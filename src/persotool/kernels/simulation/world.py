"""The simulated world: every simulated user's true preferences and habits, and the items' quality
and topics, calibrated from a dataset's logs or taken from the ground truth of `datasets synth`.

Calibration from logs (on the calibration window: the whole log, or a world directory's window):
- visits and returns: the fitted two-state visit model (`calibration.py`); every simulated user
  draws their own daily active-day chance, leaving chance and return chance (and, with `start =
  "cutoff"`, their state) from their logged user's posterior, so clones keep their user's habits
  and the posterior's uncertainty;
- true affinity: a model of the family `truth` names (ALS, EASE, ItemKNN, LightFM, or a mixture
  of them) fitted on the window's interactions with its own settings, its factors perturbed by
  Gaussian noise (`truth_noise` x the factors' sd) so the truth is not any arm's own model;
- item quality: standardised log(1 + interactions); topic vectors: the items' leading singular
  directions of the truth factors, unit length;
- engagement: the engagement intercept and `continue_after_engagement` are chosen by the method of
  simulated moments (common random numbers): one visit of a sample of simulated users under the
  logged-like policy must give the logs' mean interactions per active day (capped at the slate
  size) and their share of active days with a single interaction. A simulated visit stands for a
  logged active day: the visit chance is the fitted active-day chance (on a first visit nearly
  every simulated visit engages; later ones engage less as a static lineup goes deeper).

A population larger than the dataset resamples its users: each simulated user copies a logged
user's habits and history (`source_user`, which is also who models score for) with their own draws.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from persotool.errors import ConfigError, DataError
from persotool.kernels.models.base import seen_matrix
from persotool.kernels.simulation.spec import BehaviourSpec, SimulationConfig, WorldSpec

DAY_US = 86_400 * 1_000_000


@dataclass
class SimulatedWorld:
    user_truth: np.ndarray  # (N, d) float32: simulated users' true taste
    item_truth: np.ndarray  # (items, d) float32
    affinity_mean: float
    affinity_sd: float
    quality: np.ndarray  # (items,) standardised
    topics: np.ndarray  # (items, r) unit vectors
    propensity: np.ndarray  # (N,) daily visit chance
    hazard: np.ndarray  # (N,) daily churn chance at zero satisfaction
    source_user: np.ndarray  # (N,) dataset user_idx each simulated user was drawn from
    user_ids: list[str]  # (N,) ids of simulated users (the dataset's id, '#k' suffix for clones)
    history: sp.csr_matrix  # (dataset users, items) bool: consumed in the logs
    popularity: np.ndarray  # (items,) logged interactions
    base_engagement: float
    intercept: float  # engagement logit at average affinity and quality, no fatigue
    expectation: float | np.ndarray  # engagements per visit a user expects (one value, or one per user)
    calibration: dict[str, Any] = field(default_factory=dict)
    logs: LogStats | None = None  # what the logs said, for the fidelity report
    reactivation: np.ndarray | None = None  # (N,) daily return chance when churned (None: the behaviour's)
    start_active: np.ndarray | None = None  # (N,) bool: active on the first simulated day (None: all)
    fitted_behaviour: dict[str, float] = field(default_factory=dict)  # behaviour fields set by calibration
    logged_exponent: float = 1.0  # the logged-like policy samples items with probability ~ popularity^this

    def behaviour(self, cfg: SimulationConfig) -> SimulationConfig:
        """`cfg` with the behaviour fields this world's calibration chose."""
        if not self.fitted_behaviour:
            return cfg
        return cfg.model_copy(update={"behaviour": cfg.behaviour.model_copy(update=self.fitted_behaviour)})

    @property
    def n_users(self) -> int:
        return len(self.propensity)

    @property
    def n_items(self) -> int:
        return len(self.quality)

    def affinity(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Standardised true affinity of users x all items (or x `items`, same shape as users)."""
        if items is None:
            raw = self.user_truth[users] @ self.item_truth.T
        else:
            raw = np.einsum("...d,...d->...", self.user_truth[users], self.item_truth[items])
        return ((raw - self.affinity_mean) / self.affinity_sd).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _intercept(behaviour: BehaviourSpec, affinity: np.ndarray, quality: np.ndarray, base: float) -> float:
    """The logit intercept at which the mean engagement chance over logged-like pairs is `base`."""
    lo, hi = -20.0, 20.0
    shift = behaviour.affinity_weight * affinity + behaviour.quality_weight * quality
    for _ in range(60):
        mid = (lo + hi) / 2
        if _sigmoid(mid + shift).mean() < base:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _topics(item_truth: np.ndarray, dims: int) -> np.ndarray:
    centred = item_truth - item_truth.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    topics = centred @ vt[: min(dims, vt.shape[0])].T
    norms = np.linalg.norm(topics, axis=1, keepdims=True)
    return (topics / np.maximum(norms, 1e-12)).astype(np.float32)


def _population(spec: WorldSpec, n_source: int, rng: np.random.Generator) -> np.ndarray:
    size = spec.population or n_source
    if size == n_source:
        return np.arange(n_source)
    # every logged user at least once (while size allows), the rest drawn at random
    base = np.tile(np.arange(n_source), size // n_source)
    extra = rng.choice(n_source, size=size - len(base), replace=False)
    return np.sort(np.concatenate([base, extra]))


def _ids(source: np.ndarray, logged_ids: list[str]) -> list[str]:
    seen: dict[int, int] = {}
    out = []
    for s in source.tolist():
        copy = seen.get(s, 0)
        seen[s] = copy + 1
        out.append(logged_ids[s] if copy == 0 else f"{logged_ids[s]}#{copy}")
    return out


@dataclass
class LogStats:
    """What the logs say about habits, for calibration and the fidelity report."""

    active_days: np.ndarray  # per user
    span_days: np.ndarray  # per user: last active day - first + 1
    gaps: np.ndarray  # days between consecutive active days, all users
    session_lengths: np.ndarray  # interactions per session
    item_counts: np.ndarray
    first_window_days: np.ndarray  # per user: active days within `window` days of their first
    churned: np.ndarray  # per user bool
    days_at_risk: np.ndarray  # per user


def log_stats(frame: pl.DataFrame, n_users: int, n_items: int, inactivity_days: float, window: int = 30) -> LogStats:
    """Habits in the interactions table (user_idx, item_idx, timestamp, session_id)."""
    t0 = frame["timestamp"].min()
    t_end = frame["timestamp"].max()
    day = ((pl.col("timestamp") - pl.lit(t0)).dt.total_microseconds() // DAY_US).alias("day")
    days = frame.select("user_idx", day).unique().sort("user_idx", "day")
    per_user = days.group_by("user_idx").agg(
        n=pl.len(),
        first=pl.col("day").min(),
        last=pl.col("day").max(),
        gaps=pl.col("day").diff().drop_nulls(),
        in_window=(pl.col("day") < pl.col("day").min() + window).sum(),
    )
    active = np.zeros(n_users)
    first = np.zeros(n_users)
    last = np.zeros(n_users)
    idx = per_user["user_idx"].to_numpy()
    active[idx] = per_user["n"].to_numpy()
    first[idx] = per_user["first"].to_numpy()
    last[idx] = per_user["last"].to_numpy()
    gaps = per_user["gaps"].explode().drop_nulls().to_numpy().astype(np.float64)
    sessions = frame.group_by("user_idx", "session_id").len()
    log_days = float((t_end - t0).total_seconds() / 86400)
    cutoff = log_days - inactivity_days
    churned = (last < cutoff) & (active > 0)
    at_risk = np.clip(np.minimum(last, cutoff) - first + 1, 1, None) * (active > 0)
    items = np.bincount(frame["item_idx"].to_numpy(), minlength=n_items)
    return LogStats(
        active_days=active,
        span_days=last - first + 1,
        gaps=gaps,
        session_lengths=sessions["len"].to_numpy().astype(np.float64),
        item_counts=items,
        first_window_days=per_user["in_window"].to_numpy().astype(np.float64),
        churned=churned,
        days_at_risk=at_risk,
    )


def _noisy(values: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    scale = noise * float(values.std())
    return (values + rng.normal(0, scale, size=values.shape)).astype(np.float32)


@dataclass
class Variant:
    """One world among many drawn for a robustness run: which logged users it is built from (a
    bootstrap, rows of the calibration's histories) and the visit model's parameters."""

    rows: np.ndarray | None = None
    fit: Any = None  # a calibration.Fit drawn from the fit's posterior


def build(dataset: Path, cfg: SimulationConfig, *, calibration=None, variant: Variant | None = None) -> SimulatedWorld:
    """The world of `cfg` for the dataset at `dataset` (an ingested dataset directory). A fitted
    `calibration` (from `fitted.calibrate_frame`) is used as given instead of `cfg.world.source`."""
    from persotool.kernels.simulation import calibration as fitted
    from persotool.kernels.storage import read_artifact

    manifest = read_artifact(dataset, "dataset")
    n_users, n_items = manifest["counts"]["n_users"], manifest["counts"]["n_items"]
    spec = cfg.world
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 11]))
    frame = pl.read_parquet(
        dataset / "interactions.parquet", columns=["user_idx", "item_idx", "timestamp", "session_id"]
    )
    if frame.is_empty():
        raise DataError("has no interactions to calibrate a world from", where=str(dataset))
    logged_ids = pl.read_parquet(dataset / "users.parquet", columns=["user_idx", "user_id"]).sort("user_idx")
    calibration_info: dict[str, Any] = {"source": spec.source, "dataset_digest": manifest["dataset_digest"]}
    reactivation = start_active = None
    if spec.source == "synthetic" and calibration is None:
        window = frame
        source = _population(spec, n_users, rng)
        user_f, item_f, quality_raw, propensity_src, hazard_src, back = _synthetic(spec, dataset, n_users, n_items)
        propensity, hazard = propensity_src[source], hazard_src[source]
        reactivation = np.full(len(source), back)
        calibration_info["ground_truth"] = str(spec.ground_truth)
        history = seen_matrix(window, n_users, n_items)
    else:
        if calibration is None:
            if spec.world_dir is not None:
                calibration, _ = fitted.load(spec.world_dir, dataset)
                calibration_info["world_dir"] = str(spec.world_dir)
            else:
                calibration = fitted.calibrate_frame(frame.select("user_idx", "timestamp"), None, seed=cfg.seed)
        window = frame.filter(pl.col("timestamp") < calibration.window.until)
        known = calibration.histories.user_idx
        rows = variant.rows if variant is not None and variant.rows is not None else _population(spec, len(known), rng)
        source = known[rows]
        draws = calibration.draw(
            rows, rng, fresh=spec.start == "fresh", fit=variant.fit if variant is not None else None
        )
        propensity, hazard, reactivation, start_active = draws.p, draws.theta, draws.r, draws.active
        history = seen_matrix(window, n_users, n_items)
        user_f, item_f = _fit_truth(history, spec, cfg.seed)
        quality_raw = np.log1p(np.bincount(window["item_idx"].to_numpy(), minlength=n_items))
        calibration_info |= {
            "window": calibration.window.to_dict(),
            "visit_model": calibration.fit.to_dict()
            if variant is None or variant.fit is None
            else variant.fit.to_dict(),
            "start": spec.start,
            "truth": spec.truth if spec.truth != "mixture" else "mixture of " + ", ".join(spec.truth_mixture),
            "active_at_start": float(start_active.mean()),
        }
    stats = log_stats(window, n_users, n_items, spec.churn_inactivity_days, cfg.pre_days + cfg.days)
    user_truth = _noisy(user_f[source], spec.truth_noise, rng)
    item_truth = _noisy(item_f, spec.truth_noise, rng)
    # standardise affinity on a sample of pairs
    su = rng.integers(0, len(source), 20_000)
    si = rng.integers(0, n_items, 20_000)
    raw = np.einsum("nd,nd->n", user_truth[su], item_truth[si])
    mean, sd = float(raw.mean()), float(raw.std() or 1.0)
    quality = ((quality_raw - quality_raw.mean()) / (quality_raw.std() or 1.0)).astype(np.float32)
    behaviour = cfg.behaviour
    if behaviour.churn_hazard is not None:
        hazard = np.full(len(source), behaviour.churn_hazard)
    if behaviour.reactivation is not None:
        reactivation = None  # the engine uses the behaviour's
    world = SimulatedWorld(
        user_truth=user_truth,
        item_truth=item_truth,
        affinity_mean=mean,
        affinity_sd=sd,
        quality=quality,
        topics=_topics(item_truth, spec.topic_dims),
        propensity=np.asarray(propensity, dtype=np.float64),
        hazard=np.asarray(hazard, dtype=np.float64),
        source_user=source,
        user_ids=_ids(source, logged_ids["user_id"].to_list()),
        history=history,
        popularity=stats.item_counts.astype(np.float64),
        base_engagement=0.0,
        intercept=0.0,
        expectation=0.0,
        calibration=calibration_info,
        logs=stats,
        reactivation=None if reactivation is None else np.asarray(reactivation, dtype=np.float64),
        start_active=start_active,
    )
    _engagement(world, cfg, _engagement_targets(window, cfg.slate_size), rng)
    world.calibration |= {
        "mean_visit_propensity": float(world.propensity.mean()),
        "mean_churn_hazard": float(world.hazard.mean()),
        "mean_reactivation": float(world.reactivation.mean()) if world.reactivation is not None else None,
        "population": len(source),
        "logged_users": n_users,
    }
    return world


def _engagement_targets(window: pl.DataFrame, k: int) -> dict[str, Any]:
    """The logs' interactions per active day after users' first (`fitted.per_active_day`), capped at
    the slate size (mean, share of single ones), and the share of interactions on the top 10% of
    items."""
    from persotool.kernels.simulation import calibration as fitted

    counts = np.minimum(fitted.per_active_day(window), k)
    return {
        "mean": float(counts.mean()),
        "single_share": float((counts == 1).mean()),
        "distribution": (np.bincount(counts, minlength=k + 1)[1:] / len(counts)).tolist(),
        "top_share": _late_top_share(window),
    }


def _late_top_share(window: pl.DataFrame) -> float:
    """The top-10% item share of the user-item pairs first seen in the window's last fifth (by
    time): like a simulation's engagements, they exclude what each user consumed before. The whole
    window's distinct pairs when the last fifth has fewer than 1,000."""
    t0, t1 = window["timestamp"].min(), window["timestamp"].max()
    late = window["timestamp"] >= t0 + (t1 - t0) * 0.8
    pairs = window.select("user_idx", "item_idx", late=late)
    early = pairs.filter(~pl.col("late")).select("user_idx", "item_idx").unique()
    new = (
        pairs.filter(pl.col("late"))
        .select("user_idx", "item_idx")
        .unique()
        .join(early, on=["user_idx", "item_idx"], how="anti")
    )
    if new.height < 1000:
        new = pairs.select("user_idx", "item_idx").unique()
    return top_share(np.bincount(new["item_idx"].to_numpy()))


def top_share(counts: np.ndarray) -> float:
    """Share of engagements on the top 10% of items by engagements."""
    total = counts.sum()
    if total == 0:
        return float("nan")
    ordered = np.sort(counts)[::-1]
    return float(ordered[: max(1, len(ordered) // 10)].sum() / total)


ENGAGEMENT_SAMPLE = 1500
MAX_INTERCEPT = 4.0
PROBE_VISITS = 6
CONTINUE_GRID = (0.3, 0.45, 0.6, 0.7, 0.8, 0.88, 0.95)


def _engagement(
    world: SimulatedWorld, cfg: SimulationConfig, target: dict[str, float], rng: np.random.Generator
) -> None:
    """Set the world's engagement intercept, each user's expectation, the logged-like policy's
    popularity exponent and (unless given) `continue_after_engagement` by the method of simulated
    moments: a sample of simulated users visits PROBE_VISITS days in a row under the logged-like
    policy, with one fixed set of uniforms (common random numbers) for every candidate setting,
    and must match the logs' interactions per active day (the mean, then the distribution's shape by
    KS distance) and their concentration on popular items. Each parameter is found by bisection, where the moment it
    matches is monotone in it under common random numbers."""
    from persotool.kernels.simulation import engine
    from persotool.kernels.simulation.policies import candidates
    from persotool.kernels.simulation.spec import ArmSpec

    behaviour, k = cfg.behaviour, cfg.slate_size
    users = np.sort(rng.choice(world.n_users, size=min(ENGAGEMENT_SAMPLE, world.n_users), replace=False))
    probe = SimulatedWorld(
        **{
            **world.__dict__,
            "propensity": np.ones(len(users)),
            "hazard": np.zeros(len(users)),
            "user_truth": world.user_truth[users],
            "source_user": world.source_user[users],
            "user_ids": [world.user_ids[u] for u in users],
            "reactivation": np.zeros(len(users)),
            "start_active": None,
            "expectation": 0.0,
        }
    )
    logged = ArmSpec(name="logged-probe", policy="logged", share=1.0)
    draws = [engine.draws_for(cfg.seed, 10_000_019 + v, len(users), k) for v in range(PROBE_VISITS)]
    lineups: dict[float, Any] = {}

    log_pop = np.log(world.popularity + 0.5).astype(np.float32)
    gumbel = (
        np.random.default_rng(np.random.SeedSequence([cfg.seed, 73]))
        .gumbel(size=(len(users), world.n_items))
        .astype(np.float32)
    )  # one draw for every exponent (common random numbers)

    def lineup(exponent: float):
        if exponent not in lineups:
            lineups[exponent] = candidates(
                logged,
                probe,
                behaviour,
                k + cfg.candidates,
                seed=cfg.seed,
                dataset_digest="",
                score=lambda batch: exponent * log_pop + gumbel[batch],
            )
        return lineups[exponent]

    def visits(intercept: float, go_on: float, exponent: float) -> engine.ArmState:
        probe.intercept = intercept
        run_cfg = cfg.model_copy(
            update={"behaviour": behaviour.model_copy(update={"continue_after_engagement": go_on})}
        )
        state = engine.ArmState.start(lineup(exponent), probe, PROBE_VISITS)
        for day, day_draws in enumerate(draws):
            engine.step(state, day_draws, day, probe, run_cfg)
        return state

    def engaged_mean(state: engine.ArmState) -> float:
        n = state.daily_engagements[state.daily_engagements > 0]
        return float(n.mean()) if len(n) else 0.0

    def solve_intercept(go_on: float, exponent: float) -> float:
        # at most 4 (an engagement chance of 0.98 at average affinity): beyond it every arm's users
        # engage with everything they examine, and no policy could differ from another
        lo, hi = -12.0, MAX_INTERCEPT
        for _ in range(18):
            mid = (lo + hi) / 2
            if engaged_mean(visits(mid, go_on, exponent)) >= target["mean"]:
                hi = mid
            else:
                lo = mid
        return hi

    def solve_exponent(intercept: float, go_on: float) -> float:
        lo, hi = 0.0, 3.0
        for _ in range(8):
            mid = round((lo + hi) / 2, 4)
            if top_share(visits(intercept, go_on, mid).item_engagement) >= target["top_share"]:
                hi = mid
            else:
                lo = mid
        return hi

    go_on = behaviour.continue_after_engagement
    exponent = 1.0
    if behaviour.base_engagement is not None:  # given: the mean engagement chance over logged-like pairs
        p_items = world.popularity / world.popularity.sum()
        su = rng.integers(0, world.n_users, 20_000)
        li = rng.choice(world.n_items, size=20_000, p=p_items)
        intercept = _intercept(behaviour, world.affinity(su, li), world.quality[li], behaviour.base_engagement)
    else:
        intercept = solve_intercept(go_on, exponent)
        exponent = solve_exponent(intercept, go_on)
        if "continue_after_engagement" not in behaviour.model_fields_set:
            best = None
            for option in CONTINUE_GRID:
                found = solve_intercept(option, exponent)
                n = visits(found, option, exponent).daily_engagements
                engaged = n[n > 0]
                if not len(engaged):
                    continue
                # the mean first (it may be out of reach at this setting), then the distribution's
                # shape: the KS distance between the simulated and logged interactions per active day
                shape = np.bincount(engaged, minlength=k + 1)[1 : k + 1] / len(engaged)
                ks = float(np.abs(np.cumsum(shape) - np.cumsum(target["distribution"])).max())
                miss = abs(float(engaged.mean()) - target["mean"]) / target["mean"] + ks
                if best is None or miss < best[0]:
                    best = (miss, option, found)
            if best is not None:
                _, go_on, intercept = best
            world.fitted_behaviour["continue_after_engagement"] = float(go_on)
        else:
            intercept = solve_intercept(go_on, exponent)
    state = visits(intercept, go_on, exponent)
    n = state.daily_engagements
    engaged = n[n > 0]
    world.intercept = float(intercept)
    world.logged_exponent = float(exponent)
    world.base_engagement = float(1 / (1 + np.exp(-intercept)))
    fitted_behaviour = cfg.behaviour.model_copy(update={"continue_after_engagement": go_on})
    expected, engaged_chance = _first_visit(world, fitted_behaviour, cfg, logged)
    # each user expects what the logged-like policy gives them
    world.expectation = expected if behaviour.expectation is None else behaviour.expectation
    world.calibration |= {
        "engagement_target": target,
        "engagement_simulated": {
            "mean": float(engaged.mean()) if len(engaged) else 0.0,
            "single_share": float((engaged == 1).mean()) if len(engaged) else 0.0,
            "top_share": top_share(state.item_engagement),
            "visits_with_engagement": float((n > 0).mean()),
            "first_visit_engaged_chance": float(engaged_chance.mean()),
        },
        "intercept": world.intercept,
        "engagement_target_reached": bool(abs(float(engaged.mean()) - target["mean"]) <= 0.05 * target["mean"])
        if len(engaged)
        else False,
        "continue_after_engagement": float(go_on),
        "logged_popularity_exponent": world.logged_exponent,
        "expectation": float(np.mean(world.expectation)),
    }


def _first_visit(world: SimulatedWorld, behaviour, cfg: SimulationConfig, logged) -> tuple[np.ndarray, np.ndarray]:
    """Each simulated user's expected engagements on a first visit under the logged-like policy
    (one draw of its slate), and their chance of engaging at all, from the examination model in
    closed form."""
    from persotool.kernels.simulation.policies import candidates

    k = cfg.slate_size
    cand = candidates(logged, world, behaviour, k, seed=cfg.seed + 1, dataset_digest="")
    valid = cand.items >= 0
    topics = world.topics[np.maximum(cand.items, 0)] * valid[..., None]
    total = topics.sum(axis=1)
    shown = valid.sum(axis=1)
    pairs = shown * (shown - 1)
    similarity = np.where(pairs > 0, ((total * total).sum(axis=1) - shown) / np.maximum(pairs, 1), 0.0)
    chance = np.where(
        valid, _sigmoid(world.intercept + cand.logit - behaviour.similarity_weight * similarity[:, None]), 0.0
    )
    if behaviour.examination == "log-discount":
        seen = 1 / np.log2(np.arange(chance.shape[1]) + 2)[None, :]
        return (chance * seen).sum(axis=1), 1 - np.prod(1 - chance * seen, axis=1)
    reach = np.ones(len(chance))  # examines position j
    expected = np.zeros(len(chance))
    for j in range(chance.shape[1]):
        expected += reach * chance[:, j]
        reach = reach * (
            chance[:, j] * behaviour.continue_after_engagement + (1 - chance[:, j]) * behaviour.cascade_continue
        )
    # P(no engagement) = P(stop before engaging): sum over the position of stopping, or the slate's end
    stop = np.zeros(len(chance))
    alive = np.ones(len(chance))
    for j in range(chance.shape[1]):
        stop += alive * (1 - chance[:, j]) * (1 - behaviour.cascade_continue)
        alive = alive * (1 - chance[:, j]) * behaviour.cascade_continue
    never = stop + alive
    return expected, 1 - never


def truth_settings(spec: WorldSpec, family: str) -> dict[str, Any]:
    """The settings a truth family is fitted with: TRUTH_DEFAULTS, the factors, `truth_params`."""
    from persotool.kernels.simulation.spec import TRUTH_DEFAULTS

    factors = {"als": {"factors": spec.truth_factors}, "lightfm": {"components": spec.truth_factors}}
    return {**TRUTH_DEFAULTS[family], **factors.get(family, {}), **spec.truth_params.get(family, {})}


DENSE_TRUTH_CELLS = 200_000_000  # users x items of the score matrix EASE and ItemKNN truths factorise


def _family_factors(family: str, history: sp.csr_matrix, spec: WorldSpec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) embeddings of one truth family fitted on the logged interactions. EASE and
    ItemKNN have none: their score matrix is factorised to `truth_factors` by a truncated SVD."""
    from persotool.kernels.models.registry import build

    settings = truth_settings(spec, family)
    params = {**settings, "seed": seed} if family in ("als", "lightfm") else settings
    model = build(family, params)
    model.fit(history.astype(np.float32))
    if family in ("als", "lightfm"):
        users, items = np.asarray(model.user_factors_), np.asarray(model.item_factors_)
        if family == "lightfm":  # the item bias as one more factor against a constant
            users = np.hstack([users, np.ones((len(users), 1), dtype=users.dtype)])
            items = np.hstack([items, np.asarray(model.item_bias_)[:, None]])
        return users, items
    n_users, n_items = history.shape
    if n_users * n_items > DENSE_TRUTH_CELLS:
        raise ConfigError(
            f"a {family} truth factorises the {n_users:,} x {n_items:,} score matrix, more than "
            f"{DENSE_TRUTH_CELLS:,} cells; use truth = 'als' or 'lightfm' for a log this size"
        )
    scores = np.vstack([model.score(np.arange(lo, min(lo + 2048, n_users))) for lo in range(0, n_users, 2048)])
    rank = max(1, min(spec.truth_factors, min(scores.shape) - 1))
    from scipy.sparse.linalg import svds

    u, s, vt = svds(scores.astype(np.float64), k=rank, random_state=seed)
    root = np.sqrt(s)
    return (u * root).astype(np.float32), (vt.T * root).astype(np.float32)


def engagement_notes(world: SimulatedWorld) -> list[str]:
    """A warning when the engagement model could not reach the logs' interactions per active day."""
    c = world.calibration
    if c.get("engagement_target_reached", True):
        return []
    return [
        f"the logs' {c['engagement_target']['mean']:.2f} interactions per active day are out of reach of one "
        f"slate with continue_after_engagement = {c['continue_after_engagement']:g}; the engagement chance is "
        f"capped (simulated {c['engagement_simulated']['mean']:.2f}). Leave continue_after_engagement unset to fit it."
    ]


def truth_overlap(cfg: SimulationConfig) -> list[str]:
    """Warnings for arms whose model is of the truth's family: the world favours its own kind."""
    from persotool.kernels.storage import read_artifact

    spec = cfg.world
    if spec.source == "synthetic":
        return []
    families = spec.truth_mixture if spec.truth == "mixture" else [spec.truth]
    warnings = []
    for arm in cfg.arms:
        if arm.policy != "model":
            continue
        manifest = read_artifact(arm.model, "model")
        family = manifest["model"]
        if family not in families:
            continue
        settings = truth_settings(spec, family)
        same = all(manifest["params"].get(key) == value for key, value in settings.items() if key != "seed")
        where = "is" if spec.truth != "mixture" else "is part of"
        warnings.append(
            f"arm {arm.name!r} is a {family} model and {family} {where} the world's truth"
            + (" with the same settings" if same else "")
            + ": the simulation favours it. Set [world] truth to another family or 'mixture', or run --worlds "
            "over several truths."
        )
    return warnings


def _fit_truth(history: sp.csr_matrix, spec: WorldSpec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The basis of the true affinities: one family's embeddings, or a mixture's (each family's
    affinity scaled to unit sd over random pairs, the embeddings side by side, so the affinity is
    their sum)."""
    families = spec.truth_mixture if spec.truth == "mixture" else [spec.truth]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 71]))
    users, items = [], []
    for family in families:
        u, v = _family_factors(family, history, spec, seed)
        a, b = rng.integers(0, len(u), 20_000), rng.integers(0, len(v), 20_000)
        sd = float(np.einsum("nd,nd->n", u[a], v[b]).std()) or 1.0
        users.append(u / np.sqrt(sd))
        items.append(v / np.sqrt(sd))
    return np.hstack(users).astype(np.float32), np.hstack(items).astype(np.float32)


def _synthetic(spec: WorldSpec, dataset: Path, n_users: int, n_items: int):
    """Truth from `datasets synth`: ids u{k} / i{k} of the dataset map to rows of ground_truth.npz."""
    folder = Path(spec.ground_truth)
    path = folder / "ground_truth.npz"
    if not path.is_file():
        raise DataError("is not a `datasets synth` directory (no ground_truth.npz)", where=str(folder))
    with np.load(path, allow_pickle=False) as data:
        truth = {k: data[k] for k in data.files}
    meta = json.loads((folder / "ground_truth.json").read_text())
    temperature = float(meta["config"]["affinity_temperature"])
    users = pl.read_parquet(dataset / "users.parquet", columns=["user_idx", "user_id"]).sort("user_idx")
    items = pl.read_parquet(dataset / "items.parquet", columns=["item_idx", "item_id"]).sort("item_idx")

    def rows(ids: pl.Series, prefix: str, limit: int, what: str) -> np.ndarray:
        numbers = ids.str.strip_prefix(prefix).cast(pl.Int64, strict=False)
        if numbers.null_count() or numbers.max() >= limit:
            raise DataError(
                f"{what} ids of the dataset are not {prefix}<k> ids of this ground truth", where=str(dataset)
            )
        return numbers.to_numpy()

    u = rows(users["user_id"], "u", truth["user_factors"].shape[0], "user")
    i = rows(items["item_id"], "i", truth["item_factors"].shape[0], "item")
    scale = np.sqrt(temperature)
    return (
        truth["user_factors"][u] * scale,
        truth["item_factors"][i] * scale,
        truth["item_bias"][i].astype(np.float64),
        truth["visit_propensity"][u].astype(np.float64),
        truth["churn_hazard"][u].astype(np.float64),
        float(meta["config"]["reactivation_probability"]),
    )
