"""Building a simulated world and fitting its engagement: the truth and habits come from `world`
(and the calibration), then the engagement intercept, `continue_after_engagement` and the logged
policy's popularity exponent are matched to the logs by simulated moments, which runs the day loop
(`engine`) on a probe sample. This module sits above both `world` and `engine` so neither imports
the other."""

from __future__ import annotations

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
        source = resample_users(spec, n_users, rng)
        user_f, item_f, quality_raw, propensity_src, hazard_src, back = synthetic_truth(spec, dataset, n_users, n_items)
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
        rows = (
            variant.rows if variant is not None and variant.rows is not None else resample_users(spec, len(known), rng)
        )
        source = known[rows]
        draws = calibration.draw(
            rows, rng, fresh=spec.start == "fresh", fit=variant.fit if variant is not None else None
        )
        propensity, hazard, reactivation, start_active = draws.p, draws.theta, draws.r, draws.active
        history = seen_matrix(window, n_users, n_items)
        user_f, item_f = fit_truth(history, spec, cfg.seed)
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
    user_truth = noisy(user_f[source], spec.truth_noise, rng)
    item_truth = noisy(item_f, spec.truth_noise, rng)
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
        topics=topics(item_truth, spec.topic_dims),
        propensity=np.asarray(propensity, dtype=np.float64),
        hazard=np.asarray(hazard, dtype=np.float64),
        source_user=source,
        user_ids=user_ids_of(source, logged_ids["user_id"].to_list()),
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
        intercept = engagement_intercept(
            behaviour, world.affinity(su, li), world.quality[li], behaviour.base_engagement
        )
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
