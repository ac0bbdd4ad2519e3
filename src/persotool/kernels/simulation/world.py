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
    truth_families: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # before noise

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


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def engagement_intercept(behaviour: BehaviourSpec, affinity: np.ndarray, quality: np.ndarray, base: float) -> float:
    """The logit intercept at which the mean engagement chance over logged-like pairs is `base`."""
    lo, hi = -20.0, 20.0
    shift = behaviour.affinity_weight * affinity + behaviour.quality_weight * quality
    for _ in range(60):
        mid = (lo + hi) / 2
        if sigmoid(mid + shift).mean() < base:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def topics(item_truth: np.ndarray, dims: int) -> np.ndarray:
    centred = item_truth - item_truth.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    topics = centred @ vt[: min(dims, vt.shape[0])].T
    norms = np.linalg.norm(topics, axis=1, keepdims=True)
    return (topics / np.maximum(norms, 1e-12)).astype(np.float32)


def resample_users(spec: WorldSpec, n_source: int, rng: np.random.Generator) -> np.ndarray:
    size = spec.population or n_source
    if size == n_source:
        return np.arange(n_source)
    # every logged user at least once (while size allows), the rest drawn at random
    base = np.tile(np.arange(n_source), size // n_source)
    extra = rng.choice(n_source, size=size - len(base), replace=False)
    return np.sort(np.concatenate([base, extra]))


def user_ids_of(source: np.ndarray, logged_ids: list[str]) -> list[str]:
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


def noisy(values: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    scale = noise * float(values.std())
    return (values + rng.normal(0, scale, size=values.shape)).astype(np.float32)


@dataclass
class Variant:
    """One world among many drawn for a robustness run: which logged users it is built from (a
    bootstrap, rows of the calibration's histories) and the visit model's parameters."""

    rows: np.ndarray | None = None
    fit: Any = None  # a calibration.Fit drawn from the fit's posterior


def top_share(counts: np.ndarray) -> float:
    """Share of engagements on the top 10% of items by engagements."""
    total = counts.sum()
    if total == 0:
        return float("nan")
    ordered = np.sort(counts)[::-1]
    return float(ordered[: max(1, len(ordered) // 10)].sum() / total)


def truth_settings(spec: WorldSpec, family: str) -> dict[str, Any]:
    """The settings a truth family is fitted with: TRUTH_DEFAULTS, the factors, `truth_params`."""
    from persotool.kernels.simulation.spec import TRUTH_DEFAULTS

    factors = {"als": {"factors": spec.truth_factors}, "lightfm": {"components": spec.truth_factors}}
    return {**TRUTH_DEFAULTS[family], **factors.get(family, {}), **spec.truth_params.get(family, {})}


DENSE_TRUTH_CELLS = 200_000_000  # users x items of the score matrix EASE and ItemKNN truths factorise


def too_large(family: str, n_users: int, n_items: int) -> str | None:
    """Why `family` cannot be a truth for a log of this size (None: it can): EASE and ItemKNN
    truths factorise the dense users x items score matrix."""
    if family in ("ease", "itemknn") and n_users * n_items > DENSE_TRUTH_CELLS:
        return (
            f"a {family} truth factorises the {n_users:,} x {n_items:,} score matrix, more than "
            f"{DENSE_TRUTH_CELLS:,} cells"
        )
    if family == "ease" and n_items > 30_000:
        return f"an ease truth inverts a {n_items:,} x {n_items:,} matrix (more than 30,000 items)"
    return None


_FITTED: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # family_factors' results in this process
_FITTED_KEEP = 8


def family_factors(family: str, history: sp.csr_matrix, spec: WorldSpec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) embeddings of one truth family fitted on the logged interactions. EASE and
    ItemKNN have none: their score matrix is factorised to `truth_factors` by a truncated SVD.
    A process keeps its last few fits (keyed by the history, the family's settings and
    the seed): a fit is deterministic, and simulations of one log refit the same truth."""
    import hashlib

    settings = truth_settings(spec, family)
    history = sp.csr_matrix(history)
    digest = hashlib.blake2b(digest_size=16)
    for part in (np.asarray(history.shape), history.indptr, history.indices, history.data):
        digest.update(np.ascontiguousarray(part).tobytes())
    seeded = family in ("als", "lightfm")  # EASE and ItemKNN fits do not depend on the seed
    key = json.dumps([family, settings, spec.truth_factors, seed if seeded else None, digest.hexdigest()], default=str)
    if key not in _FITTED:
        while len(_FITTED) >= _FITTED_KEEP:
            _FITTED.pop(next(iter(_FITTED)))
        _FITTED[key] = _fit_family(family, history, spec, seed, settings)
    users, items = _FITTED[key]
    return users.copy(), items.copy()


def _fit_family(family: str, history: sp.csr_matrix, spec: WorldSpec, seed: int, settings: dict[str, Any]):
    from persotool.kernels.models.registry import build

    if why := too_large(family, *history.shape):
        raise ConfigError(f"{why}; use truth = 'als' or 'lightfm' for a log this size")

    params = {**settings, "seed": seed} if family in ("als", "lightfm") else settings
    model = build(family, params)
    model.fit(history.astype(np.float32))
    if family in ("als", "lightfm"):
        users, items = np.asarray(model.user_factors_), np.asarray(model.item_factors_)
        if family == "lightfm":  # the item bias as one more factor against a constant
            users = np.hstack([users, np.ones((len(users), 1), dtype=users.dtype)])
            items = np.hstack([items, np.asarray(model.item_bias_)[:, None]])
        return users, items
    n_users = history.shape[0]
    scores = np.vstack([model.score(np.arange(lo, min(lo + 2048, n_users))) for lo in range(0, n_users, 2048)])
    rank = max(1, min(spec.truth_factors, min(scores.shape) - 1))
    from scipy.sparse.linalg import svds

    u, s, vt = svds(scores.astype(np.float64), k=rank, random_state=0)  # the same truth whatever the seed
    root = np.sqrt(s)
    return (u * root).astype(np.float32), (vt.T * root).astype(np.float32)


def combine(
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]], weights: dict[str, float], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """One pair of embeddings whose dot product is the weighted sum of the families' affinities,
    each scaled to unit sd over random (user, item) pairs: the families side by side."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 71]))
    users, items = [], []
    for family, weight in weights.items():
        if weight <= 0:
            continue
        u, v = embeddings[family]
        a, b = rng.integers(0, len(u), 20_000), rng.integers(0, len(v), 20_000)
        sd = float(np.einsum("nd,nd->n", u[a], v[b]).std()) or 1.0
        users.append(u * np.sqrt(weight / sd))
        items.append(v * np.sqrt(weight / sd))
    return np.hstack(users).astype(np.float32), np.hstack(items).astype(np.float32)


def truth_overlap(cfg: SimulationConfig) -> list[str]:
    """Warnings for arms whose model is of the truth's family: the world favours its own kind."""
    from persotool.kernels.storage import read_artifact

    spec = cfg.world
    if spec.source == "synthetic":
        return []
    families = spec.truth_mixture if spec.truth in ("mixture", "auto") else [spec.truth]
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
        where = "is" if spec.truth not in ("mixture", "auto") else "is part of"
        warnings.append(
            f"arm {arm.name!r} is a {family} model and {family} {where} the world's truth"
            + (" with the same settings" if same else "")
            + ": the simulation favours it. Set [world] truth to another family or 'mixture', or run --worlds "
            "over several truths."
        )
    return warnings


def fit_truth(
    history: sp.csr_matrix, spec: WorldSpec, seed: int, weights: dict[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The basis of the true affinities: one family's embeddings, or a mixture's (each family's
    affinity scaled to unit sd over random pairs and by its weight, the embeddings side by side, so
    the affinity is the weighted sum; `weights` None: one family, or equal weights), and each
    family's own embeddings (unweighted), which the back-test scores on held-out behaviour."""
    if weights is None:
        families = spec.truth_mixture if spec.truth in ("mixture", "auto") else [spec.truth]
        weights = {f: 1.0 for f in families}
    fitted = {f: family_factors(f, history, spec, seed) for f, w in weights.items() if w > 0}
    return (*combine(fitted, weights, seed), fitted)


def synthetic_truth(spec: WorldSpec, dataset: Path, n_users: int, n_items: int):
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
