"""Building a simulated world and fitting its engagement: the truth and habits come from `world`
(and the calibration), then the engagement intercept, `continue_after_engagement` and the logged
policy's popularity exponent are matched to the logs by simulated moments, which runs the day loop
(`engine`) on a probe sample. This module sits above both `world` and `engine` so neither imports
the other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from persotool.errors import DataError
from persotool.kernels.models.base import seen_matrix
from persotool.kernels.simulation import engine
from persotool.kernels.simulation.policies import candidates
from persotool.kernels.simulation.spec import ArmSpec, SimulationConfig
from persotool.kernels.simulation.world import (
    SimulatedWorld,
    Variant,
    engagement_intercept,
    fit_truth,
    log_stats,
    noisy,
    resample_users,
    sigmoid,
    synthetic_truth,
    top_share,
    topics,
    user_ids_of,
)


@dataclass
class _Origin:
    """Where the simulated users come from: the logged users they copy (`source`), their habits, the
    truth's factors and item quality before noise, and the log window behind them."""

    window: pl.DataFrame
    source: np.ndarray
    propensity: np.ndarray
    hazard: np.ndarray
    reactivation: np.ndarray | None
    start_active: np.ndarray | None
    history: Any
    user_f: np.ndarray
    item_f: np.ndarray
    quality_raw: np.ndarray
    info: dict[str, Any]
    families: dict[str, Any] | None = None  # each truth family's embeddings (logs only)


def build(dataset: Path, cfg: SimulationConfig, *, calibration=None, variant: Variant | None = None) -> SimulatedWorld:
    """The world of `cfg` for the dataset at `dataset` (an ingested dataset directory). A fitted
    `calibration` (from `calibration.calibrate_frame`) is used as given instead of `cfg.world.source`."""
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
    if spec.source == "synthetic" and calibration is None:
        origin = _synthetic_origin(dataset, frame, cfg, n_users, n_items, rng)
    else:
        origin = _calibrated_origin(dataset, frame, cfg, calibration, variant, n_users, n_items, rng)
    origin.info = {"source": spec.source, "dataset_digest": manifest["dataset_digest"], **origin.info}
    world = _assemble(origin, cfg, logged_ids["user_id"].to_list(), n_users, n_items, rng)
    _engagement(world, cfg, _engagement_targets(origin.window, cfg.slate_size), rng)
    world.calibration |= {
        "mean_visit_propensity": float(world.propensity.mean()),
        "mean_churn_hazard": float(world.hazard.mean()),
        "mean_reactivation": float(world.reactivation.mean()) if world.reactivation is not None else None,
        "population": len(origin.source),
        "logged_users": n_users,
    }
    return world


def _synthetic_origin(dataset: Path, frame, cfg: SimulationConfig, n_users: int, n_items: int, rng) -> _Origin:
    """Users copy the ground truth of a `datasets synth` log."""
    spec = cfg.world
    source = resample_users(spec, n_users, rng)
    user_f, item_f, quality_raw, propensity_src, hazard_src, back = synthetic_truth(spec, dataset, n_users, n_items)
    return _Origin(
        window=frame,
        source=source,
        propensity=propensity_src[source],
        hazard=hazard_src[source],
        reactivation=np.full(len(source), back),
        start_active=None,
        history=seen_matrix(frame, n_users, n_items),
        user_f=user_f,
        item_f=item_f,
        quality_raw=quality_raw,
        info={"ground_truth": str(spec.ground_truth)},
    )


def _calibrated_origin(
    dataset: Path, frame, cfg: SimulationConfig, calibration, variant, n_users: int, n_items: int, rng
) -> _Origin:
    """Users copy logged users, with habits drawn from their posterior under the fitted visit model,
    and a truth fitted on the calibration window."""
    from persotool.kernels.simulation import calibration as fitted

    spec = cfg.world
    info: dict[str, Any] = {}
    if calibration is None:
        if spec.world_dir is not None:
            calibration, _ = fitted.load(spec.world_dir, dataset)
            info["world_dir"] = str(spec.world_dir)
        else:
            calibration = fitted.calibrate_frame(frame.select("user_idx", "timestamp"), None, seed=cfg.seed)
    window = frame.filter(pl.col("timestamp") < calibration.window.until)
    known = calibration.histories.user_idx
    rows = variant.rows if variant is not None and variant.rows is not None else resample_users(spec, len(known), rng)
    fit = variant.fit if variant is not None else None
    draws = calibration.draw(rows, rng, fresh=spec.start == "fresh", fit=fit)
    history = seen_matrix(window, n_users, n_items)
    weights, fit_info = _truth_weights(window, cfg, calibration, n_users, n_items)
    user_f, item_f, families = fit_truth(history, spec, cfg.seed, weights)
    info |= {
        "window": calibration.window.to_dict(),
        "visit_model": (fit or calibration.fit).to_dict(),
        "start": spec.start,
        "truth": truth_label(spec, weights),
        "active_at_start": float(draws.active.mean()),
    }
    if weights is not None:
        info |= {"truth_weights": weights, "truth_fit": fit_info}
    return _Origin(
        window=window,
        source=known[rows],
        propensity=draws.p,
        hazard=draws.theta,
        reactivation=draws.r,
        start_active=draws.active,
        history=history,
        user_f=user_f,
        item_f=item_f,
        quality_raw=np.log1p(np.bincount(window["item_idx"].to_numpy(), minlength=n_items)),
        info=info,
        families=families,
    )


def _truth_weights(window, cfg: SimulationConfig, calibration, n_users: int, n_items: int):
    """An auto truth's family weights (None for any other truth): a world directory's, when it
    weighed the same families, else fitted now on the window's own time split (`truth_fit`)."""
    from persotool.kernels.simulation import truth_fit

    spec = cfg.world
    if spec.truth != "auto":
        return None, {}
    kept = getattr(calibration, "truth", None) or {}
    if sorted(kept.get("weights", {})) == sorted(spec.truth_mixture):
        return dict(kept["weights"]), {k: v for k, v in kept.items() if k != "weights"} | {"from": "world directory"}
    families = list(spec.truth_mixture)
    return truth_fit.auto_weights(window, spec, n_users, n_items, cfg.seed, families, cfg.behaviour.affinity_weight)


def truth_label(spec, weights: dict[str, float] | None) -> str:
    """The truth as the report names it: a family, a mixture, or auto with its weights."""
    if weights is not None:
        return "auto: " + ", ".join(f"{f} {w:.2f}" for f, w in weights.items())
    return spec.truth if spec.truth != "mixture" else "mixture of " + ", ".join(spec.truth_mixture)


def _assemble(origin: _Origin, cfg: SimulationConfig, logged_ids: list[str], n_users: int, n_items: int, rng):
    """The world before its engagement is fitted: noisy truths, affinity standardised on a sample of
    pairs, item quality, and the behaviour's overrides of the fitted habits."""
    spec, source = cfg.world, origin.source
    stats = log_stats(origin.window, n_users, n_items, spec.churn_inactivity_days, cfg.pre_days + cfg.days)
    user_truth = noisy(origin.user_f[source], spec.truth_noise, rng)
    item_truth = noisy(origin.item_f, spec.truth_noise, rng)
    su = rng.integers(0, len(source), 20_000)
    si = rng.integers(0, n_items, 20_000)
    raw = np.einsum("nd,nd->n", user_truth[su], item_truth[si])
    quality_raw = origin.quality_raw
    hazard, reactivation = origin.hazard, origin.reactivation
    if cfg.behaviour.churn_hazard is not None:
        hazard = np.full(len(source), cfg.behaviour.churn_hazard)
    if cfg.behaviour.reactivation is not None:
        reactivation = None  # the engine uses the behaviour's
    return SimulatedWorld(
        user_truth=user_truth,
        item_truth=item_truth,
        affinity_mean=float(raw.mean()),
        affinity_sd=float(raw.std() or 1.0),
        quality=((quality_raw - quality_raw.mean()) / (quality_raw.std() or 1.0)).astype(np.float32),
        topics=topics(item_truth, spec.topic_dims),
        propensity=np.asarray(origin.propensity, dtype=np.float64),
        hazard=np.asarray(hazard, dtype=np.float64),
        source_user=source,
        user_ids=user_ids_of(source, logged_ids),
        history=origin.history,
        popularity=stats.item_counts.astype(np.float64),
        base_engagement=0.0,
        intercept=0.0,
        expectation=0.0,
        calibration=origin.info,
        logs=stats,
        reactivation=None if reactivation is None else np.asarray(reactivation, dtype=np.float64),
        start_active=origin.start_active,
        truth_families=origin.families or {},
    )


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


ENGAGEMENT_SAMPLE = 1500
MAX_INTERCEPT = 4.0
PROBE_VISITS = 6
CONTINUE_GRID = (0.3, 0.45, 0.6, 0.7, 0.8, 0.88, 0.95)


class _Probe:
    """The simulated-moments machinery: a sample of simulated users visiting PROBE_VISITS days in a
    row under the logged-like policy, with one fixed set of uniforms (common random numbers) for
    every candidate setting, so each moment is monotone in the parameter it is matched with."""

    def __init__(self, world: SimulatedWorld, cfg: SimulationConfig, rng: np.random.Generator) -> None:
        self.cfg, self.behaviour, self.k = cfg, cfg.behaviour, cfg.slate_size
        users = np.sort(rng.choice(world.n_users, size=min(ENGAGEMENT_SAMPLE, world.n_users), replace=False))
        self.world = SimulatedWorld(
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
        self.logged = ArmSpec(name="logged-probe", policy="logged", share=1.0)
        self.draws = [engine.draws_for(cfg.seed, 10_000_019 + v, len(users), self.k) for v in range(PROBE_VISITS)]
        self.lineups: dict[float, Any] = {}
        self.log_pop = np.log(world.popularity + 0.5).astype(np.float32)
        self.gumbel = (
            np.random.default_rng(np.random.SeedSequence([cfg.seed, 73]))
            .gumbel(size=(len(users), world.n_items))
            .astype(np.float32)
        )  # one draw for every exponent (common random numbers)

    def lineup(self, exponent: float):
        if exponent not in self.lineups:
            self.lineups[exponent] = candidates(
                self.logged,
                self.world,
                self.behaviour,
                self.k + self.cfg.candidates,
                seed=self.cfg.seed,
                dataset_digest="",
                score=lambda batch: exponent * self.log_pop + self.gumbel[batch],
            )
        return self.lineups[exponent]

    def visits(self, intercept: float, go_on: float, exponent: float) -> engine.ArmState:
        self.world.intercept = intercept
        run_cfg = self.cfg.model_copy(
            update={"behaviour": self.behaviour.model_copy(update={"continue_after_engagement": go_on})}
        )
        state = engine.ArmState.start(self.lineup(exponent), self.world, PROBE_VISITS)
        for day, day_draws in enumerate(self.draws):
            engine.step(state, day_draws, day, self.world, run_cfg)
        return state

    def solve_intercept(self, target: dict[str, Any], go_on: float, exponent: float) -> float:
        """The intercept matching the logs' interactions per active day, by bisection. At most
        MAX_INTERCEPT (an engagement chance of 0.98 at average affinity): beyond it every arm's
        users engage with everything they examine, and no policy could differ from another."""
        lo, hi = -12.0, MAX_INTERCEPT
        for _ in range(18):
            mid = (lo + hi) / 2
            if _engaged_mean(self.visits(mid, go_on, exponent)) >= target["mean"]:
                hi = mid
            else:
                lo = mid
        return hi

    def solve_exponent(self, target: dict[str, Any], intercept: float, go_on: float) -> float:
        """The logged policy's popularity exponent matching the logs' top-10% item share."""
        lo, hi = 0.0, 3.0
        for _ in range(8):
            mid = round((lo + hi) / 2, 4)
            if top_share(self.visits(intercept, go_on, mid).item_engagement) >= target["top_share"]:
                hi = mid
            else:
                lo = mid
        return hi

    def best_continuation(self, target: dict[str, Any], exponent: float) -> tuple[float, float] | None:
        """(continue_after_engagement, intercept) on a grid: the mean first (it may be out of reach
        at a setting), then the shape, the KS distance between the simulated and logged
        interactions per active day."""
        best = None
        for option in CONTINUE_GRID:
            found = self.solve_intercept(target, option, exponent)
            n = self.visits(found, option, exponent).daily_engagements
            engaged = n[n > 0]
            if not len(engaged):
                continue
            shape = np.bincount(engaged, minlength=self.k + 1)[1 : self.k + 1] / len(engaged)
            ks = float(np.abs(np.cumsum(shape) - np.cumsum(target["distribution"])).max())
            miss = abs(float(engaged.mean()) - target["mean"]) / target["mean"] + ks
            if best is None or miss < best[0]:
                best = (miss, option, found)
        return None if best is None else (best[1], best[2])


def _engaged_mean(state: engine.ArmState) -> float:
    n = state.daily_engagements[state.daily_engagements > 0]
    return float(n.mean()) if len(n) else 0.0


def _engagement(
    world: SimulatedWorld, cfg: SimulationConfig, target: dict[str, float], rng: np.random.Generator
) -> None:
    """Set the world's engagement intercept, each user's expectation, the logged-like policy's
    popularity exponent and (unless given) `continue_after_engagement` by the method of simulated
    moments (see `_Probe`): they must match the logs' interactions per active day (the mean, then
    the distribution's shape by KS distance) and their concentration on popular items."""
    behaviour = cfg.behaviour
    probe = _Probe(world, cfg, rng)
    go_on = behaviour.continue_after_engagement
    exponent = 1.0
    if behaviour.base_engagement is not None:  # given: the mean engagement chance over logged-like pairs
        p_items = world.popularity / world.popularity.sum()
        su = rng.integers(0, world.n_users, 20_000)
        li = rng.choice(world.n_items, size=20_000, p=p_items)
        intercept = engagement_intercept(
            behaviour, world.affinity(su, li), world.quality[li], behaviour.base_engagement
        )
    else:
        intercept = probe.solve_intercept(target, go_on, exponent)
        exponent = probe.solve_exponent(target, intercept, go_on)
        if "continue_after_engagement" not in behaviour.model_fields_set:
            best = probe.best_continuation(target, exponent)
            if best is not None:
                go_on, intercept = best
            world.fitted_behaviour["continue_after_engagement"] = float(go_on)
        else:
            intercept = probe.solve_intercept(target, go_on, exponent)
    state = probe.visits(intercept, go_on, exponent)
    _keep_engagement(world, cfg, target, state, intercept, go_on, exponent, probe.logged)


def _keep_engagement(world, cfg, target, state, intercept: float, go_on: float, exponent: float, logged) -> None:
    """The fitted engagement into the world: the intercept, the exponent, each user's expectation
    (what the logged-like policy gives them), and what was matched, for the record."""
    n = state.daily_engagements
    engaged = n[n > 0]
    world.intercept = float(intercept)
    world.logged_exponent = float(exponent)
    world.base_engagement = float(1 / (1 + np.exp(-intercept)))
    fitted_behaviour = cfg.behaviour.model_copy(update={"continue_after_engagement": go_on})
    expected, engaged_chance = _first_visit(world, fitted_behaviour, cfg, logged)
    world.expectation = expected if cfg.behaviour.expectation is None else cfg.behaviour.expectation
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
    k = cfg.slate_size
    cand = candidates(logged, world, behaviour, k, seed=cfg.seed + 1, dataset_digest="")
    valid = cand.items >= 0
    topics = world.topics[np.maximum(cand.items, 0)] * valid[..., None]
    total = topics.sum(axis=1)
    shown = valid.sum(axis=1)
    pairs = shown * (shown - 1)
    similarity = np.where(pairs > 0, ((total * total).sum(axis=1) - shown) / np.maximum(pairs, 1), 0.0)
    chance = np.where(
        valid, sigmoid(world.intercept + cand.logit - behaviour.similarity_weight * similarity[:, None]), 0.0
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
