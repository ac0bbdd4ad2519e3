"""A/B statistics, each checked against ground truth in the tests. scipy and statsmodels do the
tests they implement (Welch's t, bootstrap, chi-square, power, Kaplan-Meier, log-rank); what
they lack is written here with its formula: the delta method for ratio metrics, CUPED, the mixture
SPRT's always-valid p-values and the restricted mean survival time with its variance."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class Effect:
    control: float
    treatment: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    se: float

    @property
    def relative(self) -> float:
        return self.difference / self.control if self.control else float("nan")


def welch(treatment: np.ndarray, control: np.ndarray, *, level: float = 0.95) -> Effect:
    """Difference of means with Welch's t-test (scipy) and its confidence interval."""
    t_mean, c_mean = float(np.mean(treatment)), float(np.mean(control))
    se = float(np.sqrt(np.var(treatment, ddof=1) / len(treatment) + np.var(control, ddof=1) / len(control)))
    if se == 0:
        same = t_mean == c_mean
        return Effect(c_mean, t_mean, t_mean - c_mean, t_mean - c_mean, t_mean - c_mean, 1.0 if same else 0.0, 0.0)
    result = stats.ttest_ind(treatment, control, equal_var=False)
    ci = result.confidence_interval(level)
    return Effect(c_mean, t_mean, t_mean - c_mean, float(ci.low), float(ci.high), float(result.pvalue), se)


def ratio_delta(
    num_t: np.ndarray, den_t: np.ndarray, num_c: np.ndarray, den_c: np.ndarray, *, level: float = 0.95
) -> Effect:
    """Difference of ratio metrics sum(num)/sum(den) (e.g. CTR = engagements / impressions) whose
    unit of randomisation is the user, by the delta method:

        Var(mean_x / mean_y) ~ (1/n) [s_x^2 / m_y^2 - 2 m_x s_xy / m_y^3 + m_x^2 s_y^2 / m_y^4],

    a normal interval for the difference of the two arms' ratios (Deng et al. 2018)."""

    def ratio_and_var(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
        n = len(num)
        mx, my = num.mean(), den.mean()
        if my == 0:
            return float("nan"), float("nan")
        cov = np.cov(num, den, ddof=1)
        var = (cov[0, 0] / my**2 - 2 * mx * cov[0, 1] / my**3 + mx**2 * cov[1, 1] / my**4) / n
        return float(mx / my), float(max(var, 0.0))

    rt, vt = ratio_and_var(num_t.astype(np.float64), den_t.astype(np.float64))
    rc, vc = ratio_and_var(num_c.astype(np.float64), den_c.astype(np.float64))
    diff, se = rt - rc, float(np.sqrt(vt + vc))
    z = stats.norm.ppf(0.5 + level / 2)
    p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else float(diff == 0)
    return Effect(rc, rt, diff, diff - z * se, diff + z * se, p, se)


def bootstrap(treatment: np.ndarray, control: np.ndarray, *, resamples: int, seed: int, level: float = 0.95) -> Effect:
    """Difference of means with a BCa bootstrap interval (scipy.stats.bootstrap, users resampled
    within each arm); the p-value is the two-sided share of the bootstrap distribution beyond 0."""

    def statistic(t, c, axis=-1):
        return np.mean(t, axis=axis) - np.mean(c, axis=axis)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.bootstrap(
            (treatment, control),
            statistic,
            n_resamples=resamples,
            confidence_level=level,
            method="BCa",
            random_state=np.random.default_rng(seed),
            vectorized=True,
        )
    dist = result.bootstrap_distribution
    diff = float(statistic(treatment, control))
    p = float(min(1.0, 2 * min((dist <= 0).mean(), (dist >= 0).mean())))
    return Effect(
        float(np.mean(control)),
        float(np.mean(treatment)),
        diff,
        float(result.confidence_interval.low),
        float(result.confidence_interval.high),
        p,
        float(result.standard_error),
    )


def cuped(
    treatment: np.ndarray, control: np.ndarray, pre_t: np.ndarray, pre_c: np.ndarray, *, level: float = 0.95
) -> tuple[Effect, float]:
    """CUPED (Deng et al. 2013): Y - theta (X - mean X) with theta = cov(Y, X) / var(X) pooled over
    both arms, then Welch's t. Returns the effect and the share of variance removed."""
    y = np.concatenate([treatment, control]).astype(np.float64)
    x = np.concatenate([pre_t, pre_c]).astype(np.float64)
    var_x = x.var(ddof=1)
    theta = float(np.cov(y, x, ddof=1)[0, 1] / var_x) if var_x > 0 else 0.0
    mean_x = x.mean()
    adj_t = treatment - theta * (pre_t - mean_x)
    adj_c = control - theta * (pre_c - mean_x)
    effect = welch(adj_t, adj_c, level=level)
    effect.control, effect.treatment = float(np.mean(control)), float(np.mean(treatment))
    var_y = y.var(ddof=1)
    reduction = 1 - np.concatenate([adj_t, adj_c]).var(ddof=1) / var_y if var_y > 0 else 0.0
    return effect, float(reduction)


def sample_ratio_mismatch(counts: list[int], shares: list[float]) -> float:
    """p-value of the chi-square goodness-of-fit test of arm sizes against the configured shares."""
    total = sum(counts)
    expected = [total * s for s in shares]
    return float(stats.chisquare(counts, expected).pvalue)


def msprt_pvalues(differences: np.ndarray, variances: np.ndarray, tau: float | np.ndarray) -> np.ndarray:
    """Always-valid p-values of the normal-mixture SPRT (Johari et al. 2017) for a sequence of looks:
    with estimate d and its variance V at a look and mixture variance tau^2,

        Lambda = sqrt(V / (V + tau^2)) exp(d^2 tau^2 / (2 V (V + tau^2))),  p = min over looks of 1/Lambda.

    Rejecting when p < alpha at any look keeps the false-positive rate at most alpha."""
    d, v = np.asarray(differences, dtype=np.float64), np.asarray(variances, dtype=np.float64)
    t2 = np.asarray(tau, dtype=np.float64) ** 2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_lambda = 0.5 * np.log(v / (v + t2)) + d**2 * t2 / (2 * v * (v + t2))
        p = np.where(v > 0, np.minimum(1.0, np.exp(-log_lambda)), 1.0)
    return np.minimum.accumulate(p)


def minimum_detectable_effect(sd: float, n_treatment: int, n_control: int, *, alpha: float, power: float) -> float:
    """Smallest true difference of means Welch's test detects with `power`: the root in d > 0 of
    statsmodels' power function, bracketed and found with brentq. (statsmodels' own solve_power
    falls back to fsolve for some sample sizes and then returns a one-element array, sometimes the
    negative root.)"""
    from scipy.optimize import brentq
    from statsmodels.stats.power import TTestIndPower

    if sd == 0 or n_control < 2 or n_treatment < 2:
        return float("nan")
    solver = TTestIndPower()
    ratio = n_control / n_treatment

    def shortfall(d: float) -> float:
        return float(solver.power(effect_size=d, nobs1=n_treatment, alpha=alpha, ratio=ratio)) - power

    from scipy.stats import norm

    # Start from the large-sample answer (the noncentral t's power is NaN far beyond it), then
    # widen until the power is reached: it rises to 1 with the effect.
    upper = 1.5 * (norm.ppf(1 - alpha / 2) + norm.ppf(power)) * np.sqrt(1 / n_treatment + 1 / n_control)
    while shortfall(upper) < 0:
        upper *= 1.5
    d = brentq(shortfall, 1e-12, upper, xtol=1e-12, rtol=1e-10)
    return float(d * sd)


def power_of(difference: float, sd: float, n_treatment: int, n_control: int, *, alpha: float) -> float:
    from statsmodels.stats.power import TTestIndPower

    if sd == 0:
        return float("nan")
    return float(
        TTestIndPower().power(
            effect_size=abs(difference) / sd, nobs1=n_treatment, alpha=alpha, ratio=n_control / n_treatment
        )
    )


# --- retention: Kaplan-Meier, log-rank and restricted mean survival time


@dataclass
class Survival:
    times: np.ndarray
    survival: np.ndarray
    band_low: np.ndarray
    band_high: np.ndarray
    rmst: float
    rmst_var: float


def kaplan_meier(time: np.ndarray, event: np.ndarray, horizon: float) -> Survival:
    """Kaplan-Meier curve (statsmodels) with Hall-Wellner 95% simultaneous bands, and the RMST up to
    `horizon` = area under the curve, with the Klein-Moeschberger variance
    sum_j A_j^2 d_j / (n_j (n_j - d_j)), A_j the area from event time t_j to the horizon."""
    from statsmodels.duration.survfunc import SurvfuncRight

    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event, dtype=np.int64)
    if event.sum() == 0:
        ones = np.ones(1)
        return Survival(np.array([horizon]), ones, ones, ones, float(horizon), 0.0)
    fit = SurvfuncRight(time, event)
    times, surv = fit.surv_times, fit.surv_prob
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        low, high = fit.simultaneous_cb(alpha=0.05)
    keep = times <= horizon
    t, s = times[keep], surv[keep]
    edges = np.concatenate([[0.0], t, [horizon]])
    levels = np.concatenate([[1.0], s])
    widths = np.diff(edges)
    rmst = float((levels * widths).sum())
    # area after each event time
    pieces = levels[1:] * widths[1:]
    after = np.cumsum(pieces[::-1])[::-1]
    n, d = fit.n_risk[keep].astype(np.float64), fit.n_events[keep].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(n > d, after**2 * d / (n * (n - d)), 0.0)
    return Survival(times, surv, np.nan_to_num(low, nan=0.0), np.nan_to_num(high, nan=1.0), rmst, float(terms.sum()))


def logrank(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> float:
    """p-value of the log-rank test (statsmodels survdiff)."""
    from statsmodels.duration.survfunc import survdiff

    if np.asarray(event).sum() == 0:
        return 1.0
    _, p = survdiff(np.asarray(time, dtype=np.float64), np.asarray(event, dtype=np.int64), np.asarray(group))
    return float(p)


def rmst_effect(treatment: Survival, control: Survival, *, level: float = 0.95) -> Effect:
    diff = treatment.rmst - control.rmst
    se = float(np.sqrt(treatment.rmst_var + control.rmst_var))
    z = stats.norm.ppf(0.5 + level / 2)
    p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else float(diff == 0)
    return Effect(control.rmst, treatment.rmst, diff, diff - z * se, diff + z * se, p, se)


# --- multiple testing


def adjust(pvalues: np.ndarray, method: str) -> np.ndarray:
    """Adjusted p-values: Holm's step-down (p_(i) x (m - i + 1), made monotone), Bonferroni (p x m),
    Benjamini-Hochberg (bh: p_(i) x m / i, made monotone from the largest; controls the false
    discovery rate) or none. NaNs stay NaN and are not part of the family. (statsmodels'
    multipletests gives the same numbers but runs a full garbage collection per call, too slow for
    the validation's thousands of replicates; the tests check the two agree.)"""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(len(p), np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if not m:
        return out
    if method == "none":
        out[finite] = p[finite]
    elif method == "bonferroni":
        out[finite] = np.minimum(1.0, p[finite] * m)
    elif method == "holm":
        order = finite[np.argsort(p[finite], kind="stable")]
        scaled = p[order] * (m - np.arange(m))
        out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    elif method == "bh":  # Benjamini-Hochberg: the false discovery rate, not the family-wise error
        order = finite[np.argsort(p[finite], kind="stable")][::-1]
        scaled = p[order] * m / (m - np.arange(m))
        out[order] = np.minimum(1.0, np.minimum.accumulate(scaled))
    else:
        raise ValueError(f"unknown correction {method!r}")
    return out
