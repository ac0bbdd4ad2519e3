"""The estimators, as Open Bandit Pipeline 0.5 defines them (Saito et al. 2021), on numpy arrays.

With w_i = pi_e(a_i, p_i | x_i) / pscore_i the importance weight of impression i (item a_i shown at
position p_i), q_i = q_hat(x_i, a_i, p_i) and dm_i = sum_a pi_e(a, p_i | x_i) q_hat(x_i, a, p_i):

    IPS         mean(w r)
    SNIPS       sum(w r) / sum(w)
    DM          mean(dm)
    DR          mean(dm + w (r - q))
    SNDR        mean(dm + w (r - q) / mean(w))
    Switch-DR   mean(dm + 1[w <= tau] w (r - q))
    DRos        mean(dm + lambda w / (w^2 + lambda) (r - q))

Each estimate is a mean of per-impression terms (a ratio of two means for the self-normalised
ones), so its interval is the normal one from the terms' variance (for SNIPS and SNDR, the delta
method's linearisation): `interval="normal"`; or a percentile bootstrap over impressions that
recomputes the normalisers in each resample (`interval="bootstrap"`). The difference against the
logger's on-policy value mean(r) uses the paired terms (term_i - r_i), so the shared impressions'
noise cancels.

Switch-DR's threshold tau and DRos' lambda are chosen from a fixed grid by the estimated mean
squared error, bias upper bound^2 + variance, with the bias bounded as Su et al. (2020, p. 17) do
(OBP's `use_bias_upper_bound=True`): |mean((w - w_hat)(r - q))| + sqrt(2 mean(w^2) log(2/delta)/n)
+ 2 max(w) log(2/delta) / (3n). The estimator reported as the answer is chosen by SLOPE (Su,
Srinath and Krishnamurthy 2020): estimators ordered by falling standard error, the last one whose
interval meets the intervals of every estimator before it (DM excluded: its interval omits the
reward model's error)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

NAMES = ("IPS", "SNIPS", "DM", "DR", "SNDR", "Switch-DR", "DRos")
MODEL_FREE = ("IPS", "SNIPS")
GRID = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, np.inf)
DELTA = 0.05


@dataclass(frozen=True)
class Logged:
    """Logged impressions: which item (column index) at which position, its reward and the logging
    policy's probability of it there."""

    item: np.ndarray
    position: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.reward)
        for name in ("item", "position", "pscore"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, reward {n}")
        if n == 0:
            raise ValueError("no impressions")
        if not (np.all(self.pscore > 0) and np.all(self.pscore <= 1)):
            raise ValueError("propensities must lie in (0, 1]")

    @property
    def n(self) -> int:
        return len(self.reward)


@dataclass
class Estimate:
    name: str
    value: float
    se: float
    low: float
    high: float
    diff: float  # against the logger's on-policy value
    diff_low: float
    diff_high: float
    hyperparameter: float | None = None
    terms: np.ndarray | None = field(default=None, repr=False)


CHUNK = 65_536  # impressions per block: an action_dist may be a memory-mapped file larger than memory


def _blocks(n: int):
    for start in range(0, n, CHUNK):
        yield slice(start, min(n, start + CHUNK))


def weights(logged: Logged, action_dist: np.ndarray) -> np.ndarray:
    """w_i = pi_e(a_i, p_i | x_i) / pscore_i, read block by block."""
    w = np.empty(logged.n)
    for sl in _blocks(logged.n):
        block = np.asarray(action_dist[sl])
        w[sl] = block[np.arange(len(block)), logged.item[sl], logged.position[sl]]
    return w / logged.pscore


def direct_terms(logged: Logged, action_dist: np.ndarray, q_hat) -> tuple[np.ndarray, np.ndarray]:
    """(dm_i, q_i): the target's expected predicted reward at the logged position, and the
    prediction for the logged item. `q_hat` is an (n, items, positions) array or a reward model
    whose `q(rows)` builds a block's predictions; both are read block by block."""
    n = logged.n
    dm, qf = np.empty(n), np.empty(n)
    for sl in _blocks(n):
        block = np.asarray(action_dist[sl])
        q = q_hat[sl] if isinstance(q_hat, np.ndarray) else q_hat.q(sl)
        r, p = np.arange(len(block)), logged.position[sl]
        pi, qp = block[r, :, p], q[r, :, p]
        dm[sl] = np.einsum("ij,ij->i", pi, qp, dtype=np.float64) / pi.sum(axis=1, dtype=np.float64)
        qf[sl] = q[r, logged.item[sl], p]
    return dm, qf


def shrunk(w: np.ndarray, kind: str, lam: float) -> np.ndarray:
    if kind == "switch":
        return w * (w <= lam)
    if not np.isfinite(lam):
        return w
    return lam * w / (w * w + lam)


def bias_bound(logged: Logged, w: np.ndarray, w_hat: np.ndarray, q: np.ndarray) -> float:
    n = logged.n
    bias = abs(float(np.mean((w - w_hat) * (logged.reward - q))))
    bias += np.sqrt(2 * np.mean(w * w) * np.log(2 / DELTA) / n)
    return float(bias + 2 * w.max() * np.log(2 / DELTA) / (3 * n))


def tune(logged: Logged, w: np.ndarray, dm: np.ndarray, q: np.ndarray, kind: str) -> float:
    """The grid value with the smallest estimated MSE (bias upper bound^2 + variance)."""
    best, best_mse = GRID[-1], np.inf
    for lam in GRID:
        w_hat = shrunk(w, kind, lam)
        terms = dm + w_hat * (logged.reward - q)
        mse = bias_bound(logged, w, w_hat, q) ** 2 + terms.var() / logged.n
        if mse < best_mse:
            best, best_mse = lam, mse
    return float(best)


def terms(logged: Logged, action_dist: np.ndarray, q_hat: np.ndarray | None) -> dict[str, tuple]:
    """Per estimator: (numerator terms, denominator terms or None, hyperparameter)."""
    w = weights(logged, action_dist)
    r = logged.reward.astype(np.float64)
    out: dict[str, tuple] = {"IPS": (w * r, None, None), "SNIPS": (w * r, w, None)}
    if q_hat is None:
        return out
    dm, q = direct_terms(logged, action_dist, q_hat)
    resid = r - q
    out["DM"] = (dm, None, None)
    out["DR"] = (dm + w * resid, None, None)
    # SNDR = mean(dm) + sum(w resid) / sum(w): a ratio estimator in its own right
    out["SNDR"] = ((dm, w * resid), w, None)
    for name, kind in (("Switch-DR", "switch"), ("DRos", "shrink")):
        lam = tune(logged, w, dm, q, kind)
        out[name] = (dm + shrunk(w, kind, lam) * resid, None, lam)
    return out


def _point(num, den, idx=None) -> float:
    take = (lambda a: a) if idx is None else (lambda a: a[idx])
    if isinstance(num, tuple):  # SNDR: mean(dm) + sum(w resid) / sum(w)
        return float(take(num[0]).mean() + take(num[1]).sum() / take(den).sum())
    if den is None:
        return float(take(num).mean())
    return float(take(num).sum() / take(den).sum())


def _linearised(num, den) -> np.ndarray:
    """Per-impression influence terms whose mean's variance is the estimator's (delta method)."""
    if isinstance(num, tuple):
        a, b = num
        ratio = b.sum() / den.sum()
        return a + (b - ratio * den) / den.mean() + ratio
    if den is None:
        return num
    ratio = num.sum() / den.sum()
    return ratio + (num - ratio * den) / den.mean()


def skew_interval(terms: np.ndarray, z: float) -> tuple[float, float]:
    """An interval for the mean of `terms` that allows for their skewness: Hall's (1992)
    transformation of the studentised mean T = sqrt(n) (mean - mu) / s,
    g(T) = T + b T^2 + b^2 T^3 / 3 + gamma / (6 sqrt(n)) with b = gamma / (3 sqrt(n)) and gamma the
    terms' sample skewness, removes the n^-1/2 skewness term of T's Edgeworth expansion and is
    monotone; {mu : |g(T)| <= z} is inverted in closed form. Importance-weighted rewards are
    right-skewed (a few large weights meet a click), so the normal interval misses mostly below:
    this one reaches further up. Equal to the normal interval when gamma = 0."""
    n = len(terms)
    mean, sd = float(terms.mean()), float(terms.std(ddof=1))
    se = sd / np.sqrt(n)
    d = terms - mean
    m2 = float(np.mean(d * d))
    gamma = float(np.mean(d * d * d) / m2**1.5) if m2 > 0 else 0.0
    b, c = gamma / (3 * np.sqrt(n)), gamma / (6 * np.sqrt(n))
    if abs(b) < 1e-12:
        return mean - z * se, mean + z * se

    def t(g: float) -> float:
        return float((np.cbrt(1 + 3 * b * (g - c)) - 1) / b)

    return mean - t(z) * se, mean - t(-z) * se


def estimate_all(
    logged: Logged,
    action_dist: np.ndarray,
    q_hat: np.ndarray | None = None,
    *,
    interval: str = "skew",
    level: float = 0.95,
    bootstrap: int = 2000,
    seed: int = 0,
    check: bool = True,
) -> list[Estimate]:
    """Every estimator's value, interval and difference against the logger (model-based ones only
    with `q_hat`). `check=False` when the caller has already checked `action_dist`."""
    if check:
        check_action_dist(action_dist, logged)
    r = logged.reward.astype(np.float64)
    z = stats.norm.ppf(0.5 + level / 2)
    found = terms(logged, action_dist, q_hat)
    if interval == "bootstrap":  # one resample at a time: every estimator and the logger's mean on it
        rng = np.random.default_rng(seed)
        boot = {name: np.empty(bootstrap) for name in found}
        logger = np.empty(bootstrap)
        for b in range(bootstrap):
            idx = rng.integers(0, logged.n, logged.n)
            logger[b] = r[idx].mean()
            for name, (num, den, _) in found.items():
                boot[name][b] = _point(num, den, idx)
    out = []
    for name in NAMES:
        if name not in found:
            continue
        num, den, lam = found[name]
        value = _point(num, den)
        lin = _linearised(num, den)
        se = float(lin.std(ddof=1) / np.sqrt(logged.n))
        dse = float((lin - r).std(ddof=1) / np.sqrt(logged.n))
        diff = value - float(r.mean())
        if interval == "bootstrap":
            values = boot[name]
            diffs = values - logger
            tail = 100 * (1 - level) / 2
            low, high = np.percentile(values, [tail, 100 - tail])
            dlow, dhigh = np.percentile(diffs, [tail, 100 - tail])
            se = float(values.std(ddof=1))
        elif interval == "skew":
            low, high = skew_interval(lin, z)
            dlow, dhigh = skew_interval(lin - r, z)
        else:
            low, high, dlow, dhigh = value - z * se, value + z * se, diff - z * dse, diff + z * dse
        out.append(Estimate(name, value, se, float(low), float(high), diff, float(dlow), float(dhigh), lam, lin))
    return out


def check_action_dist(action_dist: np.ndarray, logged: Logged) -> None:
    if action_dist.ndim != 3 or action_dist.shape[0] != logged.n:
        raise ValueError(
            f"action_dist must have shape (impressions={logged.n}, items, positions), not {action_dist.shape}"
        )
    if logged.item.max() >= action_dist.shape[1] or logged.position.max() >= action_dist.shape[2]:
        raise ValueError("action_dist has fewer items or positions than the log")
    for sl in _blocks(logged.n):  # block by block: the array may be a file larger than memory
        block = np.asarray(action_dist[sl])
        sums = block.sum(axis=1, dtype=np.float64)
        if np.any(block < 0) or not np.allclose(sums, 1.0, atol=1e-5):
            i, p = np.unravel_index(np.argmax(np.abs(sums - 1)), sums.shape)
            raise ValueError(
                "action_dist must be a probability distribution over items at every impression and position: "
                f"impression {sl.start + i}, position {p} sums to {sums[i, p]:.6g} (expected 1, no negative entries)"
            )


def slope(estimates: list[Estimate]) -> Estimate:
    """SLOPE: in order of falling standard error, the last estimator whose interval
    [value - 2 se, value + 2 se] meets every earlier one's. DM is no candidate: its standard error
    leaves out the reward model's own error, so it would win on a spurious precision."""
    ordered = sorted((e for e in estimates if e.name != "DM"), key=lambda e: -e.se)
    chosen = ordered[0]
    for i, candidate in enumerate(ordered[1:], start=1):
        if all(abs(candidate.value - e.value) <= 2 * (candidate.se + e.se) for e in ordered[:i]):
            chosen = candidate
        else:
            break
    return chosen


def diagnostics(logged: Logged, action_dist: np.ndarray) -> dict[str, float]:
    """Effective sample size (sum w)^2 / sum w^2; for 0/1 rewards, the effective number of the rarer
    outcome, ESS x min(mean reward, 1 - mean reward) (how many clicks an importance-weighted estimate
    effectively rests on: a log of rare clicks can have a large ESS and rest on a handful; the
    reward's own sample skewness cannot tell, since the missing clicks are what it would need); the
    largest and mean weight; and the share of the target's mass on items the logger never showed."""
    w = weights(logged, action_dist)
    ess = float(w.sum() ** 2 / (w * w).sum()) if w.any() else 0.0
    shown = np.zeros(action_dist.shape[1], dtype=bool)
    shown[np.unique(logged.item)] = True
    unseen = 0.0
    for sl in _blocks(logged.n):
        block = np.asarray(action_dist[sl])
        unseen += float(block[np.arange(len(block)), :, logged.position[sl]][:, ~shown].sum())
    unseen /= logged.n
    return {
        "impressions": float(logged.n),
        "ess": ess,
        "effective_rewards": _effective_rewards(ess, logged.reward),
        "max_weight": float(w.max()),
        "mean_weight": float(w.mean()),
        "mass_on_unshown_items": unseen,
    }


def _effective_rewards(ess: float, reward: np.ndarray) -> float | None:
    """ESS x the rarer outcome's share, for 0/1 rewards (None for other rewards)."""
    if not np.isin(reward, (0.0, 1.0)).all():
        return None
    mean = float(reward.mean())
    return ess * min(mean, 1.0 - mean)


SLATE_NAMES = ("IIPS", "RIPS", "SIPS")


def slate_estimates(
    logged: Logged, slate: np.ndarray, action_dist: np.ndarray, *, level: float = 0.95
) -> list[Estimate]:
    """Slate estimators on a log whose impressions are grouped into slates (OBP's
    `SlateIndependentIPS`, `SlateRewardInteractionIPS`, `SlateStandardIPS`), per impression:
    IIPS weighs each impression by its own position's ratio (rewards depend on their own item
    only); RIPS by the product of the ratios down to its position (a cascade: rewards depend on
    the items above); SIPS by the whole slate's product (any interaction). The slate's logging and
    target probabilities are taken as products of the per-position ones, which assumes each
    position was filled independently. Intervals are cluster-robust: slates are the independent
    units, so the terms are summed per slate and the value is a ratio of per-slate means."""
    import polars as pl

    w = weights(logged, action_dist)
    r = logged.reward.astype(np.float64)
    frame = pl.DataFrame({"i": np.arange(logged.n), "slate": slate, "position": logged.position, "w": w})
    frame = (
        frame.sort("slate", "position")
        .with_columns(cascade=pl.col("w").cum_prod().over("slate"), joint=pl.col("w").product().over("slate"))
        .sort("i")
    )
    cascade, joint = frame["cascade"].to_numpy(), frame["joint"].to_numpy()
    _, group = np.unique(slate, return_inverse=True)
    size = np.bincount(group).astype(np.float64)
    z = stats.norm.ppf(0.5 + level / 2)

    def clustered(terms: np.ndarray) -> tuple[float, float]:
        sums = np.bincount(group, weights=terms)
        ratio = sums.sum() / size.sum()
        lin = (sums - ratio * size) / size.mean()
        return float(ratio), float(lin.std(ddof=1) / np.sqrt(len(sums)))

    out = []
    for name, weight in (("IIPS", w), ("RIPS", cascade), ("SIPS", joint)):
        value, se = clustered(weight * r)
        diff, dse = clustered(weight * r - r)
        out.append(Estimate(name, value, se, value - z * se, value + z * se, diff, diff - z * dse, diff + z * dse))
    return out
