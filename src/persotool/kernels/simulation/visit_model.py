"""The fitted visit-and-return model, estimated by maximum likelihood on every user's active days.

Each user is, each day, either active or dormant. An active user has an active day (a day with at
least one logged interaction) with their own chance p; each day an active user turns dormant with
their own chance theta and a dormant user becomes active again with their own chance r. Across
users p, theta and r are independent Beta variables: six parameters. With r = 0 this is the
beta-geometric/beta-Bernoulli model of customer-base analysis (Fader, Hardie & Shang 2010), in
which a user who leaves never comes back; r > 0 lets the long gaps of real logs end in a return.
Most users of a rating or shopping log never come back: the fitted theta distribution puts them
there, and their silence after one day moves their posterior to a high theta and a low r.

A user's history starts at their first active day (active, by definition) and is the list of gaps
between active days plus the silent days after the last one up to the cutoff. Its likelihood is a
product of 2x2 matrix powers, one per gap, in closed form. Heterogeneity is integrated on a fixed
grid of (p, theta, r) nodes: a history's likelihood at every node is computed once, so fitting the
six Beta parameters is a matrix-vector product per step, with an analytic gradient. The same grid
gives each user's exact posterior over nodes and over their state at the cutoff, from which the
simulation draws every clone's own (state, p, theta, r).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy import optimize, special, stats

DAY_US = 86_400 * 1_000_000
PARAMS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")  # p ~ B(a, b), theta ~ B(g, d), r ~ B(e, z)


def day_of(start) -> pl.Expr:
    """Whole days since `start` of the `timestamp` column."""
    return ((pl.col("timestamp") - pl.lit(start)).dt.total_microseconds() // DAY_US).alias("day")


@dataclass
class Histories:
    """Users' active days before a cutoff day, reduced to what the likelihood needs; users with
    the same gaps and silence share one distinct history."""

    user_idx: np.ndarray  # (users,) dataset user index, sorted
    first: np.ndarray  # (users,) first active day, counted from the log's first day
    last: np.ndarray  # (users,) last active day before the cutoff
    active_days: np.ndarray  # (users,) active days before the cutoff
    history: np.ndarray  # (users,) row of the user's distinct history
    gaps: sp.csr_matrix  # (distinct, gap lengths) count of each gap length
    gap_lengths: np.ndarray  # the gap lengths of the columns
    silence: np.ndarray  # (distinct,) days after the last active day up to the cutoff
    cutoff_day: int

    def __len__(self) -> int:
        return len(self.user_idx)

    @property
    def x(self) -> np.ndarray:
        """Active days after the first."""
        return self.active_days - 1


def histories(frame: pl.DataFrame, start, cutoff_day: int) -> Histories:
    """The histories in the interactions `frame` (user_idx, timestamp) on days before
    `cutoff_day`, days counted from `start`; the silence runs to day cutoff_day - 1."""
    days = frame.select("user_idx", day_of(start)).filter(pl.col("day") < cutoff_day).unique().sort("user_idx", "day")
    per_user = (
        days.group_by("user_idx", maintain_order=True)
        .agg(
            first=pl.col("day").first(),
            last=pl.col("day").last(),
            active=pl.len(),
            gaps=pl.col("day").diff().drop_nulls().sort(),
        )
        .with_columns(silence=cutoff_day - 1 - pl.col("last"))
    )
    key = pl.concat_str(
        pl.col("silence").cast(pl.String), pl.col("gaps").cast(pl.List(pl.String)).list.join(","), separator="|"
    )
    per_user = per_user.with_columns(history=key.rank("dense").cast(pl.Int64) - 1)
    distinct = per_user.unique("history").sort("history")
    exploded = distinct.select("history", "gaps").explode("gaps").drop_nulls("gaps")
    lengths, column = np.unique(exploded["gaps"].to_numpy(), return_inverse=True)
    gaps = sp.csr_matrix(
        (np.ones(exploded.height), (exploded["history"].to_numpy(), column.ravel())),
        shape=(distinct.height, len(lengths)),
    )
    gaps.sum_duplicates()
    return Histories(
        user_idx=per_user["user_idx"].to_numpy().astype(np.int64),
        first=per_user["first"].to_numpy().astype(np.int64),
        last=per_user["last"].to_numpy().astype(np.int64),
        active_days=per_user["active"].to_numpy().astype(np.int64),
        history=per_user["history"].to_numpy(),
        gaps=gaps,
        gap_lengths=lengths.astype(np.int64),
        silence=distinct["silence"].to_numpy().astype(np.int64),
        cutoff_day=cutoff_day,
    )


@dataclass
class Grid:
    """The (p, theta, r) nodes heterogeneity is integrated over: p evenly spaced on the logit
    scale, theta and r on the log scale; `log_cell` is each node's cell size in those units."""

    p: np.ndarray
    theta: np.ndarray
    r: np.ndarray
    log_cell: np.ndarray

    @classmethod
    def default(cls, sizes: tuple[int, int, int] = (24, 24, 10)) -> Grid:
        p = special.expit(np.linspace(-9.0, 3.0, sizes[0]))
        theta = np.exp(np.linspace(np.log(1e-4), np.log(0.99), sizes[1]))
        r = np.exp(np.linspace(np.log(1e-6), np.log(0.2), sizes[2]))
        pp, tt, rr = (a.ravel() for a in np.meshgrid(p, theta, r, indexing="ij"))
        # a node's mass is density x cell width; the widths are p(1-p), theta and r times constants
        return cls(pp, tt, rr, np.log(pp * (1 - pp)) + np.log(tt) + np.log(rr))

    def __len__(self) -> int:
        return len(self.p)

    def log_prior(self, params: np.ndarray) -> np.ndarray:
        """Normalised log mass of every node under the Beta parameters."""
        a, b, g, d, e, z = params
        lw = (
            (a - 1) * np.log(self.p)
            + (b - 1) * np.log1p(-self.p)
            + (g - 1) * np.log(self.theta)
            + (d - 1) * np.log1p(-self.theta)
            + (e - 1) * np.log(self.r)
            + (z - 1) * np.log1p(-self.r)
            + self.log_cell
        )
        return lw - special.logsumexp(lw)

    def features(self) -> np.ndarray:
        """(nodes, 6) the sufficient statistics of the six Beta parameters."""
        return np.stack(
            [
                np.log(self.p),
                np.log1p(-self.p),
                np.log(self.theta),
                np.log1p(-self.theta),
                np.log(self.r),
                np.log1p(-self.r),
            ],
            axis=1,
        )


def _powers(grid: Grid, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Entries of S^m for every (m, node), S the one-silent-day matrix: from (active, dormant) to
    (active, dormant) with no active day. Closed form through S's two real eigenvalues."""
    p, th, r = grid.p, grid.theta, grid.r
    a, b, c, d = (1 - th) * (1 - p), th, r * (1 - p), 1 - r
    disc = np.sqrt((a - d) ** 2 + 4 * b * c)
    l1, l2 = (a + d + disc) / 2, (a + d - disc) / 2
    mm = np.asarray(m, dtype=np.float64)[:, None]
    p1, p2 = l1[None] ** mm, l2[None] ** mm
    den = (l1 - l2)[None]
    s00 = (p1 * (a - l2) - p2 * (a - l1)) / den
    s01 = (p1 - p2) * b / den
    s10 = (p1 - p2) * c / den
    s11 = (p1 * (d - l2) - p2 * (d - l1)) / den
    tiny = 1e-300
    return np.maximum(s00, tiny), np.maximum(s01, tiny), np.maximum(s10, tiny), np.maximum(s11, tiny)


@dataclass
class Likelihood:
    """Each distinct history's log-likelihood at every node, and its chance of being active at
    the cutoff given the node."""

    log_lik: np.ndarray  # (distinct, nodes)
    active: np.ndarray  # (distinct, nodes)


def node_likelihood(h: Histories, grid: Grid) -> Likelihood:
    """After an active day the user is active. A gap of g days is g - 1 silent days then an
    active day: the (active -> active) entry of S^(g-1) T E1; the silence after the last active
    day is the row sum of S^silence."""
    p, th, r = grid.p, grid.theta, grid.r
    s00, s01, _, _ = _powers(grid, h.gap_lengths - 1)
    per_gap = np.log(s00 * (1 - th) * p + s01 * r * p)
    log_lik = np.asarray(h.gaps @ per_gap) if h.gaps.shape[1] else np.zeros((len(h.silence), len(grid)))
    lengths, where = np.unique(h.silence, return_inverse=True)
    t00, t01, _, _ = _powers(grid, lengths)
    stay, drift = t00[where.ravel()], t01[where.ravel()]
    return Likelihood(log_lik + np.log(stay + drift), stay / (stay + drift))


@dataclass
class Fit:
    params: dict[str, float]
    log_cov: np.ndarray  # covariance of the log parameters (inverse observed information)
    log_likelihood: float
    users: int
    converged: bool

    @property
    def vector(self) -> np.ndarray:
        return np.array([self.params[k] for k in PARAMS])

    def standard_errors(self) -> dict[str, float]:
        """Delta-method standard errors of the parameters."""
        sd = np.sqrt(np.clip(np.diag(self.log_cov), 0, None))
        return {k: float(v * s) for k, v, s in zip(PARAMS, self.vector, sd, strict=True)}

    def means(self) -> dict[str, float]:
        a, b, g, d, e, z = self.vector
        return {"visit_chance": a / (a + b), "leaving_chance": g / (g + d), "return_chance": e / (e + z)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "standard_errors": self.standard_errors(),
            "log_cov": self.log_cov.tolist(),
            "log_likelihood": self.log_likelihood,
            "users": self.users,
            "converged": self.converged,
            "means": self.means(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fit:
        return cls(
            params={k: float(data["params"][k]) for k in PARAMS},
            log_cov=np.asarray(data["log_cov"], dtype=np.float64),
            log_likelihood=float(data["log_likelihood"]),
            users=int(data["users"]),
            converged=bool(data["converged"]),
        )

    def draw(self, rng: np.random.Generator) -> Fit:
        """Parameters drawn from the fit's approximate posterior (normal on the log scale)."""
        vector = np.exp(rng.multivariate_normal(np.log(self.vector), self.log_cov))
        return Fit(dict(zip(PARAMS, vector.tolist(), strict=True)), self.log_cov, self.log_likelihood, self.users, True)


class _Objective:
    """Negative log-likelihood of the Beta parameters (on the log scale) and its gradient."""

    def __init__(self, lik: Likelihood, counts: np.ndarray, grid: Grid) -> None:
        top = lik.log_lik.max(axis=1, keepdims=True)
        self.scaled = np.exp(lik.log_lik - top)  # (distinct, nodes), each row's best node at 1
        self.offset = float((counts * top.ravel()).sum())
        self.counts = counts
        self.grid = grid
        self.features = grid.features()

    def __call__(self, log_params: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(log_params)
        w = np.exp(self.grid.log_prior(params))
        # a history whose likely nodes all have negligible prior mass underflows: floor it
        per_history = np.maximum(self.scaled @ w, 1e-300)
        value = -(self.counts * np.log(per_history)).sum() - self.offset
        # d log w / d param_k = feature_k - E_w[feature_k]; chain rule for the log scale
        centred = self.features - w @ self.features
        posterior = (self.counts / per_history) @ (self.scaled * w)  # (nodes,) sum over histories
        grad = -(posterior @ centred) * params
        return float(value), grad


def fit(h: Histories, grid: Grid | None = None, lik: Likelihood | None = None) -> Fit:
    """Maximum likelihood on the log scale (L-BFGS-B with the analytic gradient); the inverse of
    the numerical Hessian is the parameters' covariance."""
    from statsmodels.tools.numdiff import approx_fprime

    grid = grid or Grid.default()
    lik = lik or node_likelihood(h, grid)
    counts = np.bincount(h.history, minlength=len(h.silence)).astype(np.float64)
    objective = _Objective(lik, counts, grid)
    best = None
    for guess in ([0.5, 5.0, 0.5, 5.0, 0.5, 50.0], [1.0, 1.0, 1.0, 10.0, 0.2, 500.0]):
        result = optimize.minimize(objective, np.log(guess), jac=True, method="L-BFGS-B", bounds=[(-7.0, 12.0)] * 6)
        if best is None or result.fun < best.fun:
            best = result
        if best.success:
            break
    hessian = approx_fprime(best.x, lambda v: objective(v)[1], centered=True)
    hessian = (hessian + hessian.T) / 2
    try:
        cov = np.linalg.inv(hessian)
        if not np.all(np.isfinite(cov)) or np.any(np.diag(cov) <= 0):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(hessian + np.eye(6) * 1e-6)
    return Fit(
        params=dict(zip(PARAMS, np.exp(best.x).tolist(), strict=True)),
        log_cov=(cov + cov.T) / 2,
        log_likelihood=-float(best.fun),
        users=len(h),
        converged=bool(best.success),
    )


def npmle(
    fit: Fit, h: Histories, lik: Likelihood, grid: Grid, *, iterations: int = 300, tol: float = 1e-6
) -> tuple[np.ndarray, float]:
    """The nonparametric maximum-likelihood mixing distribution over the grid's nodes, by EM
    started halfway between the fitted Beta prior and uniform: the best any heterogeneity
    distribution can do with the visit model's structure. If its forecasts miss as the Beta fit's
    do, the misfit lies in the structure (constant daily chances), not in the Beta family. Returns
    its log masses and log-likelihood; EM stops when a step gains less than `tol` per user."""
    counts = np.bincount(h.history, minlength=len(h.silence)).astype(np.float64)
    top = lik.log_lik.max(axis=1, keepdims=True)
    scaled = np.exp(lik.log_lik - top)
    # every node starts with mass (EM's multiplicative steps never revive a node at zero)
    w = 0.5 * np.exp(grid.log_prior(fit.vector)) + 0.5 / len(grid)
    per_history = np.maximum(scaled @ w, 1e-300)
    value = float((counts * np.log(per_history)).sum())
    for _ in range(iterations):
        w = w * ((counts / per_history) @ scaled) / counts.sum()
        per_history = np.maximum(scaled @ w, 1e-300)
        new = float((counts * np.log(per_history)).sum())
        gained, value = new - value, new
        if gained < tol * counts.sum():
            break
    return np.log(np.maximum(w, 1e-300)), value + float((counts * top.ravel()).sum())


@dataclass
class UserHabits:
    """Each simulated user's state at the cutoff and habits, drawn from their history's posterior."""

    active: np.ndarray  # bool
    p: np.ndarray
    theta: np.ndarray
    r: np.ndarray


def node_posterior(fit: Fit, lik: Likelihood, grid: Grid, log_prior: np.ndarray | None = None) -> np.ndarray:
    """(distinct, nodes) each history's posterior over the nodes, under the fitted Beta prior or
    another `log_prior` over the nodes (e.g. `npmle`'s)."""
    log_post = lik.log_lik + (grid.log_prior(fit.vector) if log_prior is None else log_prior)[None]
    return np.exp(log_post - special.logsumexp(log_post, axis=1, keepdims=True))


def draw(
    fit: Fit,
    h: Histories,
    lik: Likelihood,
    grid: Grid,
    users: np.ndarray,
    rng: np.random.Generator,
    *,
    fresh: bool = False,
) -> UserHabits:
    """One posterior draw per entry of `users` (rows of the histories; repeats are clones, each
    with its own draw). A node is picked by its posterior weight, then the state at the cutoff by
    the node's chance of being active; values are jittered within the node's cell. `fresh`
    starts everyone active (a user at their first active day) with habits from their posterior."""
    post = node_posterior(fit, lik, grid)
    rows = h.history[users]
    cdf = np.cumsum(post, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random(len(users))
    node = np.empty(len(users), dtype=np.int64)
    for row in np.unique(rows):  # one searchsorted per distinct history
        mine = np.flatnonzero(rows == row)
        node[mine] = np.minimum(np.searchsorted(cdf[row], u[mine]), len(grid) - 1)
    active = np.ones(len(users), dtype=bool) if fresh else rng.random(len(users)) < lik.active[rows, node]
    sizes = _cell_sizes(grid)
    jitter = rng.uniform(-0.5, 0.5, size=(3, len(users)))
    p = special.expit(special.logit(grid.p[node]) + jitter[0] * sizes[0])
    theta = np.minimum(np.exp(np.log(grid.theta[node]) + jitter[1] * sizes[1]), 0.999)
    r = np.minimum(np.exp(np.log(grid.r[node]) + jitter[2] * sizes[2]), 0.999)
    return UserHabits(active=active, p=p, theta=theta, r=r)


def _cell_sizes(grid: Grid) -> tuple[float, float, float]:
    def step(values: np.ndarray, transform) -> float:
        distinct = np.unique(transform(values))
        return float(np.diff(distinct).mean()) if len(distinct) > 1 else 0.0

    return step(grid.p, special.logit), step(grid.theta, np.log), step(grid.r, np.log)


def return_probability(
    fit: Fit,
    lik: Likelihood,
    grid: Grid,
    horizon: int,
    log_prior: np.ndarray | None = None,
    *,
    post: np.ndarray | None = None,
) -> np.ndarray:
    """(distinct,) the model's chance that each history has an active day in the next `horizon`
    days: 1 - P(every day silent), averaged over the posterior of node and state (`post`, when the
    caller has it from `node_posterior`)."""
    post = node_posterior(fit, lik, grid, log_prior) if post is None else post
    s00, s01, s10, s11 = _powers(grid, np.array([horizon]))
    silent_from_active = (s00 + s01)[0]
    silent_from_dormant = (s10 + s11)[0]
    silent = lik.active * silent_from_active + (1 - lik.active) * silent_from_dormant
    return 1 - (post * silent).sum(axis=1)


def expected_active_days(
    fit: Fit,
    lik: Likelihood,
    grid: Grid,
    horizon: int,
    log_prior: np.ndarray | None = None,
    *,
    post: np.ndarray | None = None,
) -> np.ndarray:
    """(distinct,) expected active days in the next `horizon` days: p times the expected days
    spent active, from the two-state chain's closed form (stationary share r / (theta + r), which
    the chain approaches at rate 1 - theta - r per day); `post` as in `return_probability`."""
    post = node_posterior(fit, lik, grid, log_prior) if post is None else post
    p, th, r = grid.p, grid.theta, grid.r
    share = r / (th + r)
    rho = 1 - th - r
    geometric = np.where(np.abs(1 - rho) > 1e-12, rho * (1 - rho**horizon) / np.maximum(1 - rho, 1e-12), horizon)
    from_active = p * (share * horizon + (1 - share) * geometric)
    from_dormant = p * (share * horizon - share * geometric)
    expected = lik.active * from_active[None] + (1 - lik.active) * from_dormant[None]
    return (post * expected).sum(axis=1)


REPEAT_BINS = (0, 1, 2, 3, 5, 10, 20, 50)


def simulate_active_days(fit: Fit, n_days: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Active days after the first, for fresh users drawn from the fitted population, each
    followed for the given number of days (a day loop over the two-state chain)."""
    a, b, g, d, e, z = fit.vector
    n = len(n_days)
    p, theta, r = rng.beta(a, b, n), rng.beta(g, d, n), rng.beta(e, z, n)
    active = np.ones(n, dtype=bool)
    count = np.zeros(n, dtype=np.int64)
    for day in range(1, int(n_days.max(initial=0)) + 1):
        u = rng.random(n)
        active = np.where(active, u >= theta, u < r)
        count += active & (rng.random(n) < p) & (day <= n_days)
    return count


def active_day_check(fit: Fit, h: Histories, rng: np.random.Generator, replicates: int = 20) -> dict[str, Any]:
    """In-sample check: users by active days after the first (binned), observed against what the
    fitted model gives users followed as long, with a chi-square test."""
    n_days = np.repeat(h.cutoff_day - 1 - h.first, replicates)
    simulated = simulate_active_days(fit, n_days, rng)
    edges = [*REPEAT_BINS, np.inf]
    observed = np.histogram(h.x, bins=edges)[0].astype(np.float64)
    expected = np.histogram(simulated, bins=edges)[0] / replicates
    labels = [
        str(lo) if hi - lo == 1 else (f"{lo}-{int(hi) - 1}" if np.isfinite(hi) else f"{lo}+")
        for lo, hi in itertools.pairwise(edges)
    ]
    keep = expected >= 1
    chi2 = float((((observed - expected) ** 2) / np.maximum(expected, 1e-9))[keep].sum())
    dof = max(int(keep.sum()) - 1, 1)
    return {
        "bins": labels,
        "observed": observed.astype(int).tolist(),
        "expected": [round(float(x), 1) for x in expected],
        "chi2": round(chi2, 3),
        "dof": dof,
        "p_value": float(stats.chi2.sf(chi2, dof)),
    }
