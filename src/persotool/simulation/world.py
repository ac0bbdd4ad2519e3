"""The simulated world: every simulated user's true preferences and habits, and the items' quality
and topics, calibrated from a dataset's logs or taken from the ground truth of `datasets synth`.

Calibration from logs (all fitted on the whole dataset, never on a split):
- true affinity: an ALS model fitted on every interaction, its factors perturbed by Gaussian noise
  (`truth_noise` x the factors' sd) so the truth is not any arm's own model, and standardised;
- item quality: standardised log(1 + interactions); topic vectors: the items' leading singular
  directions of the truth factors, unit length;
- visit propensity: a user's active days over their active span, shrunk toward the pooled rate;
- base engagement: interactions per session (capped at the slate size) over the expected number of
  examined slots; daily churn hazard: users silent for `churn_inactivity_days` before the log ends,
  over the users' observed days at risk (the exponential-lifetime estimate with censoring).

A population larger than the dataset resamples its users: each simulated user copies a logged
user's habits and history (`source_user`, which is also who models score for) with their own noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from persotool.errors import DataError
from persotool.models.base import seen_matrix
from persotool.simulation.config import BehaviourSpec, SimulationConfig, WorldSpec

DAY_US = 86_400 * 1_000_000


@dataclass
class World:
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
    expectation: float  # engagements per visit a user expects
    calibration: dict[str, Any] = field(default_factory=dict)
    logs: LogStats | None = None  # what the logs said, for the fidelity report

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


def examined_slots(behaviour: BehaviourSpec, k: int, base: float) -> float:
    """Expected number of examined positions of a k-slate when every item is engaged with `base`."""
    if behaviour.examination == "log-discount":
        return float((1 / np.log2(np.arange(k) + 2)).sum())
    go_on = base * behaviour.continue_after_engagement + (1 - base) * behaviour.cascade_continue
    return float(sum(go_on**j for j in range(k)))


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


def build(dataset: Path, cfg: SimulationConfig) -> World:
    """The world of `cfg` for the dataset at `dataset` (an ingested dataset directory)."""
    from persotool.data.artifacts import read_artifact

    manifest = read_artifact(dataset, "dataset")
    n_users, n_items = manifest["counts"]["n_users"], manifest["counts"]["n_items"]
    spec, behaviour = cfg.world, cfg.behaviour
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 11]))
    frame = pl.read_parquet(
        dataset / "interactions.parquet", columns=["user_idx", "item_idx", "timestamp", "session_id"]
    )
    if frame.is_empty():
        raise DataError("has no interactions to calibrate a world from", where=str(dataset))
    stats = log_stats(frame, n_users, n_items, spec.churn_inactivity_days, cfg.pre_days + cfg.days)
    history = seen_matrix(frame, n_users, n_items)
    logged_ids = pl.read_parquet(dataset / "users.parquet", columns=["user_idx", "user_id"]).sort("user_idx")
    source = _population(spec, n_users, rng)
    calibration: dict[str, Any] = {"source": spec.source, "dataset_digest": manifest["dataset_digest"]}
    if spec.source == "synthetic":
        user_f, item_f, quality_raw, propensity_src, hazard_src = _synthetic(spec, dataset, n_users, n_items)
        calibration["ground_truth"] = str(spec.ground_truth)
    else:
        user_f, item_f = _fit_truth(history, spec, cfg.seed)
        quality_raw = np.log1p(stats.item_counts)
        pooled = (stats.active_days - 1).clip(0).sum() / max((stats.span_days - 1).clip(0).sum(), 1)
        kappa = spec.visit_prior_strength
        propensity_src = ((stats.active_days - 1).clip(0) + kappa * pooled) / ((stats.span_days - 1).clip(0) + kappa)
        propensity_src = propensity_src.clip(0.01, 0.95)
        h = stats.churned.sum() / max(stats.days_at_risk.sum(), 1.0)
        hazard_src = np.full(n_users, float(np.clip(h, 1e-4, 0.5)))
        calibration |= {"pooled_visit_rate": float(pooled), "logged_churn_hazard": float(h)}
    user_truth = _noisy(user_f[source], spec.truth_noise, rng)
    item_truth = _noisy(item_f, spec.truth_noise, rng)
    # standardise affinity on a sample of pairs
    su = rng.integers(0, len(source), 20_000)
    si = rng.integers(0, n_items, 20_000)
    raw = np.einsum("nd,nd->n", user_truth[su], item_truth[si])
    mean, sd = float(raw.mean()), float(raw.std() or 1.0)
    quality = ((quality_raw - quality_raw.mean()) / (quality_raw.std() or 1.0)).astype(np.float32)
    k = cfg.slate_size
    if behaviour.base_engagement is not None:
        base = behaviour.base_engagement
    else:
        examined = examined_slots(behaviour, k, 0.3)
        base = float(np.clip(np.minimum(stats.session_lengths, k).mean() / examined, 0.02, 0.9))
    # the intercept is calibrated on pairs like the logged ones: users at random, items by popularity
    p_items = stats.item_counts / stats.item_counts.sum()
    li = rng.choice(n_items, size=20_000, p=p_items)
    affinity = (np.einsum("nd,nd->n", user_truth[su], item_truth[li]) - mean) / sd
    intercept = _intercept(behaviour, affinity, quality[li], base)
    expectation = behaviour.expectation
    if expectation is None:
        expectation = base * examined_slots(behaviour, k, base)
    hazard = hazard_src[source] if behaviour.churn_hazard is None else np.full(len(source), behaviour.churn_hazard)
    calibration |= {
        "base_engagement": base,
        "intercept": intercept,
        "expectation": expectation,
        "mean_visit_propensity": float(propensity_src[source].mean()),
        "mean_churn_hazard": float(hazard.mean()),
        "population": len(source),
        "logged_users": n_users,
    }
    return World(
        user_truth=user_truth,
        item_truth=item_truth,
        affinity_mean=mean,
        affinity_sd=sd,
        quality=quality,
        topics=_topics(item_truth, spec.topic_dims),
        propensity=propensity_src[source].astype(np.float64),
        hazard=hazard.astype(np.float64),
        source_user=source,
        user_ids=_ids(source, logged_ids["user_id"].to_list()),
        history=history,
        popularity=stats.item_counts.astype(np.float64),
        base_engagement=base,
        intercept=intercept,
        expectation=float(expectation),
        calibration=calibration,
        logs=stats,
    )


def _fit_truth(history: sp.csr_matrix, spec: WorldSpec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """ALS on every logged interaction: the basis of the true affinities."""
    from persotool.models.factorization import ALS

    model = ALS(factors=spec.truth_factors, iterations=10, seed=seed)
    model.fit(history.astype(np.float32))
    return model.user_factors_, model.item_factors_


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
    )
