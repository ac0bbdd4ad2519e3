"""From simulated potential outcomes to an experiment's results, measured only as a real platform
could: assign users to arms, enrol them (at their first visit during the test, or all of them for
intention to treat), compute each declared metric per arm from what the logs of the test would show,
its effect against control with interval and p-value, corrected within its declared family, and
beside it the true effect: the same metric over the same users under every arm (common random
numbers).

Metrics, per user, counted from their first exposure (their first visit of the test):
- engagements, visits, examined: totals over the test (CUPED-adjusted by the pre-period when
  `analysis.cuped`); ctr (engagements / impressions) and engagement_rate (engagements / examined) as
  ratio metrics (delta method);
- diversity: 1 - squared length of the mean topic vector of the items a user engaged with, 0 for
  users with fewer than two engagements, so every enrolled user has a value (a population that does
  not depend on the treatment);
- retention_dK: a visit on day K after the first exposure; users whose day K falls after the end of
  the test are left out of that metric (and counted);
- churned: no visit in the test's last `churn_window` days; users first exposed inside that window
  are left out (their window is not fully observed);
- rmst_days: time from first exposure to last visit, with observed churn as the event and everyone
  else censored at the end of the test: Kaplan-Meier, restricted mean survival time (the tested
  effect) and the log-rank test (secondary).
Retention, churn and survival exist only from a first exposure: under intention to treat they cover
the exposed users, like the triggered view. The simulator's hidden churn state is reported only as
`simulator truth`, never as a measured metric.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from persotool.errors import DataError
from persotool.kernels.simulation.engine import ArmState, Simulation
from persotool.kernels.simulation.spec import SEQUENTIAL_METRICS, SimulationConfig
from persotool.kernels.simulation.world import SimulatedWorld
from persotool.stages.simulate import statistics as st

MEAN_METRICS = ("engagements", "visits", "examined", "diversity")
RATIO_METRICS = {"ctr": ("engagements", "impressions"), "engagement_rate": ("engagements", "examined")}
# each metric's pre-period analogue, for CUPED (regression adjustment): returning and churn are
# adjusted on the pre-period's visits
CUPED_COVARIATE = {
    "engagements": "pre_engagements",
    "visits": "pre_visits",
    "examined": "pre_engagements",
    "retention_d1": "pre_visits",
    "retention_d7": "pre_visits",
    "retention_d30": "pre_visits",
    "churned": "pre_visits",
}
# guardrails where a rise is harm (the rest: a fall is harm)
HARMFUL_WHEN_HIGHER = ("churned",)
# what the balance check compares between arms: each pre-period measure, by the metric it stands for
BALANCE = {"pre_visits": "visits", "pre_engagements": "engagements"}
DAILY = {"engagements": "daily_engagements", "visits": "daily_visits", "examined": "daily_examined"}


def assign(user_ids: list[str], seed: int, experiment: str, shares: list[float]) -> np.ndarray:
    """Arm index of each user: a pure function of (seed, experiment name, user id), through a
    keyed BLAKE2b hash mapped to [0, 1) and cut at the cumulative traffic shares."""
    key = hashlib.blake2b(f"{seed}\x1f{experiment}".encode(), digest_size=32).digest()
    digests = b"".join(hashlib.blake2b(u.encode(), digest_size=8, key=key).digest() for u in user_ids)
    values = np.frombuffer(digests, dtype=">u8").astype(np.float64) / 2.0**64
    return np.searchsorted(np.cumsum(shares)[:-1], values, side="right").astype(np.int16)


def diversity(state: ArmState) -> np.ndarray:
    """Consumption diversity of every user; 0 below two engagements (one item has no spread)."""
    n = state.engagements.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = 1 - (state.topic_sum.astype(np.float64) ** 2).sum(axis=1) / n**2
    return np.where(n >= 2, np.clip(spread, 0.0, 1.0), 0.0)


def first_exposure(state: ArmState) -> np.ndarray:
    """Day of each user's first visit of the test (-1: never visited)."""
    visited = state.daily_visits
    return np.where(visited.any(axis=1), visited.argmax(axis=1), -1)


def user_table(sim: Simulation, arm: str, cfg: SimulationConfig) -> dict[str, np.ndarray]:
    """Per-user outcomes of every simulated user under `arm` (potential outcomes), each as the
    experiment's logs would show it; NaN where a user is outside a metric's observation window."""
    s, days, a = sim.arms[arm], cfg.days, cfg.analysis
    t0 = first_exposure(s)
    exposed = t0 >= 0
    rows = np.arange(len(t0))
    out = {
        "first_exposure": t0.astype(np.float64),
        "engagements": s.engagements.astype(np.float64),
        "visits": s.visits.astype(np.float64),
        "examined": s.examined.astype(np.float64),
        "impressions": s.impressions.astype(np.float64),
        "slates": s.slates.astype(np.float64),
        "diversity": diversity(s),
        "pre_engagements": sim.pre_engagements.astype(np.float64),
        "pre_visits": sim.pre_visits.astype(np.float64),
        "simulator_truth_churned": (s.churn_day >= 0).astype(np.float64),
    }
    for k in (1, 7, 30):
        day = t0 + k
        seen = exposed & (day < days)
        out[f"retention_d{k}"] = np.where(seen, s.daily_visits[rows, np.clip(day, 0, days - 1)], np.nan)
    end = days - a.churn_window  # the first day of the churn window
    observed = exposed & (t0 < end)
    churned = s.last_visit < end
    out["churned"] = np.where(observed, churned, np.nan)
    event = exposed & churned  # exposed before the window and silent through it
    out["survival_event"] = np.where(exposed, event, np.nan)
    out["survival_time"] = np.where(exposed, np.where(event, s.last_visit - t0 + 1, days - t0), np.nan)
    w = a.sequential_window
    complete = exposed & (t0 + w <= days)
    for metric in SEQUENTIAL_METRICS:
        daily = getattr(s, DAILY[metric])
        cum = np.concatenate([np.zeros((len(t0), 1)), np.cumsum(daily, axis=1, dtype=np.float64)], axis=1)
        start = np.clip(t0, 0, days)
        stop = np.clip(t0 + w, 0, days)
        out[f"first_{w}d_{metric}"] = np.where(complete, cum[rows, stop] - cum[rows, start], np.nan)
    return out


@dataclass
class Analysis:
    results: pl.DataFrame  # one row per (arm, metric)
    srm_p: float
    arm_sizes: dict[str, int]  # users analysed per arm (enrolled)
    assigned: dict[str, int]  # users assigned per arm
    enrollment: str  # triggered or itt
    per_day: pl.DataFrame
    sequential: pl.DataFrame
    survival: dict[str, Any]
    per_user: pl.DataFrame
    homogenization: dict[str, dict[str, Any]] = field(default_factory=dict)
    balance: list[dict[str, Any]] = field(default_factory=list)  # pre-period balance, arm against control
    segments: pl.DataFrame = field(default_factory=pl.DataFrame)  # per segment, arm and metric (analysis.segments)
    segments_skipped: list[dict[str, Any]] = field(default_factory=list)  # too few users to test


def _row(metric: str, kind: str, method: str, arm: str, effect: st.Effect, true: float, **extra) -> dict[str, Any]:
    return {
        "metric": metric,
        "kind": kind,
        "method": method,
        "arm": arm,
        "control": effect.control,
        "treatment": effect.treatment,
        "effect": effect.difference,
        "relative_effect": effect.relative,
        "ci_low": effect.ci_low,
        "ci_high": effect.ci_high,
        "p_value": effect.p_value,
        "true_effect": true,
        **extra,
    }


def analyse(
    sim: Simulation,
    world: SimulatedWorld,
    cfg: SimulationConfig,
    *,
    light: bool = False,
    sequential: bool | None = None,
    segments: dict[str, np.ndarray] | None = None,
) -> Analysis:
    """The experiment's results. `light` skips what replicated validation runs do not need
    (minimum detectable effects, the per-user table, and the sequential looks unless `sequential`
    asks for them)."""
    names, control, a = [arm.name for arm in cfg.arms], cfg.control, cfg.analysis
    level = 1 - a.alpha
    arm_of = assign(world.user_ids, cfg.seed, cfg.name, cfg.shares)
    tables = {arm: user_table(sim, arm, cfg) for arm in names}
    exposed = {arm: tables[arm]["first_exposure"] >= 0 for arm in names}
    enrolled_anywhere = np.logical_and.reduce([exposed[arm] for arm in names])  # the same in every arm
    everyone = np.ones(len(arm_of), dtype=bool)
    if a.enrollment == "triggered":
        in_arm = {arm: (arm_of == i) & exposed[arm] for i, arm in enumerate(names)}
        truth_users = enrolled_anywhere
    else:
        in_arm = {arm: arm_of == i for i, arm in enumerate(names)}
        truth_users = everyone
    sizes = {arm: int(in_arm[arm].sum()) for arm in names}
    assigned = {arm: int((arm_of == i).sum()) for i, arm in enumerate(names)}
    if min(sizes.values()) < MIN_ENROLLED:
        raise DataError(_too_few(sizes, assigned, a.enrollment))
    # the SRM check runs on the enrolled users: triggering that depended on the arm would show here
    srm_p = st.sample_ratio_mismatch([sizes[arm] for arm in names], cfg.shares)
    rows: list[dict[str, Any]] = []
    families = a.family()
    for arm in names:
        if arm == control or sizes[arm] < 2 or sizes[control] < 2:
            continue
        for metric in families:
            row = _effect(metric, arm, control, tables, in_arm, truth_users, cfg, level, light)
            if row is not None:
                rows.append(row)
    survival = _survival(tables, in_arm, truth_users, names, control, cfg, rows, families)
    results = _families(pl.DataFrame(rows, infer_schema_length=None), families, a)
    looks = (not light) if sequential is None else sequential
    sequential_table = _sequential(sim, tables, in_arm, names, control, cfg) if looks else pl.DataFrame()
    if len(results) and len(sequential_table):
        first = (
            sequential_table.filter(pl.col("stop")).group_by("arm", "metric").agg(first_stop_day=pl.col("day").min())
        )
        results = results.join(first, on=["arm", "metric"], how="left")
    per_user = pl.DataFrame() if light else _per_user(world, tables, arm_of, in_arm, names)
    balance_rows = _balance(tables, in_arm, names, control, cfg)
    by_segment, skipped = _segment_effects(segments or {}, tables, in_arm, truth_users, names, control, cfg, level)
    return Analysis(
        segments=by_segment,
        segments_skipped=skipped,
        balance=balance_rows,
        results=results,
        srm_p=srm_p,
        arm_sizes=sizes,
        assigned=assigned,
        enrollment=a.enrollment,
        per_day=_per_day(sim, names),
        sequential=sequential_table,
        survival=survival,
        per_user=per_user,
        homogenization=homogenization(sim, names),
    )


def _effect(metric, arm, control, tables, in_arm, truth_users, cfg, level, light) -> dict[str, Any] | None:
    """One (arm, metric) row: the tested effect, its true value and the user counts."""
    a = cfg.analysis
    treat, ctrl, mask, ctrl_mask = tables[arm], tables[control], in_arm[arm], in_arm[control]
    if metric == "rmst_days":
        return None  # from the survival curves, below
    if metric in RATIO_METRICS:
        num, den = RATIO_METRICS[metric]
        effect = st.ratio_delta(
            treat[num][mask], treat[den][mask], ctrl[num][ctrl_mask], ctrl[den][ctrl_mask], level=level
        )
        true = float(
            treat[num][truth_users].sum() / max(treat[den][truth_users].sum(), 1)
            - ctrl[num][truth_users].sum() / max(ctrl[den][truth_users].sum(), 1)
        )
        z = st.stats.norm.ppf(1 - a.alpha / 2) + st.stats.norm.ppf(a.power)
        counts = {"n_control": int(ctrl_mask.sum()), "n_treatment": int(mask.sum()), "left_out": 0}
        return _row(metric, "ratio", "delta method", arm, effect, true, mde=float(z * effect.se), **counts)
    y_t, y_c = treat[metric][mask], ctrl[metric][ctrl_mask]
    seen_t, seen_c = np.isfinite(y_t), np.isfinite(y_c)
    left_out = int((~seen_t).sum() + (~seen_c).sum())
    if seen_t.sum() < 2 or seen_c.sum() < 2:
        return None
    raw = st.welch(y_t[seen_t], y_c[seen_c], level=level)
    both = truth_users & np.isfinite(treat[metric]) & np.isfinite(ctrl[metric])
    true = float(treat[metric][both].mean() - ctrl[metric][both].mean()) if both.any() else float("nan")
    kind = "proportion" if metric.startswith("retention_") or metric == "churned" else "mean"
    extra: dict[str, Any] = {"n_control": int(seen_c.sum()), "n_treatment": int(seen_t.sum()), "left_out": left_out}
    effect, method = raw, "Welch t"
    covariate = CUPED_COVARIATE.get(metric)
    if covariate and cfg.pre_days and a.cuped:
        x_t, x_c = treat[covariate][mask][seen_t], ctrl[covariate][ctrl_mask][seen_c]
        effect, reduction = st.cuped(y_t[seen_t], y_c[seen_c], x_t, x_c, level=level)
        method = "Welch t, CUPED"
        extra |= {
            "cuped_variance_reduction": reduction,
            "raw_effect": raw.difference,
            "raw_ci_low": raw.ci_low,
            "raw_ci_high": raw.ci_high,
            "raw_p_value": raw.p_value,
        }
    if not light:
        sd = float(np.sqrt((y_t[seen_t].var(ddof=1) + y_c[seen_c].var(ddof=1)) / 2))
        if method.endswith("CUPED"):
            sd *= float(np.sqrt(max(1 - extra["cuped_variance_reduction"], 0.0)))
        extra["mde"] = st.minimum_detectable_effect(
            sd, int(seen_t.sum()), int(seen_c.sum()), alpha=a.alpha, power=a.power
        )
    if a.bootstrap and kind == "mean":
        boot = st.bootstrap(y_t[seen_t], y_c[seen_c], resamples=a.bootstrap, seed=cfg.seed, level=level)
        extra |= {"bootstrap_ci_low": boot.ci_low, "bootstrap_ci_high": boot.ci_high}
    return _row(metric, kind, method, arm, effect, true, **extra)


def _segment_effects(labels, tables, in_arm, truth_users, names, control, cfg, level):
    """Every metric's effect per segment and arm, with the exact true effect in the segment; its
    difference from the effect in the rest of the users (a heterogeneity z-test); both p-values
    corrected over every segment, metric and arm (`segment_correction`). Harmed: a guardrail the
    arm significantly worsens in the segment. Segments with fewer than `min_segment_users` enrolled
    users in an arm are not tested, and listed. Returns (the rows, the skipped segments)."""
    a = cfg.analysis
    z = st.stats.norm.ppf(0.5 + level / 2)
    families = a.family()
    rows, skipped = [], []
    for by, label in labels.items():
        for value in sorted(set(label.tolist())):
            inside = label == value
            users = {arm: int((in_arm[arm] & inside).sum()) for arm in names}
            if min(users.values()) < a.min_segment_users:
                skipped.append({"segment_by": by, "segment": value, "users": users})
                continue
            for arm in names:
                if arm == control:
                    continue
                for metric in families:
                    found = []
                    for part in (inside, ~inside):
                        masks = {arm: in_arm[arm] & part, control: in_arm[control] & part}
                        found.append(_effect(metric, arm, control, tables, masks, truth_users & part, cfg, level, True))
                    row, rest = found
                    if row is None or rest is None:
                        continue
                    se = (row["ci_high"] - row["ci_low"]) / (2 * z)
                    se_rest = (rest["ci_high"] - rest["ci_low"]) / (2 * z)
                    gap = (row["effect"] - rest["effect"]) / np.sqrt(se**2 + se_rest**2) if se + se_rest > 0 else 0.0
                    rows.append(
                        {
                            "segment_by": by,
                            "segment": value,
                            "arm": arm,
                            "metric": metric,
                            "family": families[metric],
                            "users": row["n_treatment"] + row["n_control"],
                            **{k: row[k] for k in ("control", "treatment", "effect", "ci_low", "ci_high", "p_value")},
                            "true_effect": row["true_effect"],
                            "rest_effect": rest["effect"],
                            "rest_true_effect": rest["true_effect"],
                            "heterogeneity_p": float(2 * st.stats.norm.sf(abs(gap))),
                        }
                    )
    if not rows:
        return pl.DataFrame(), skipped
    frame = pl.DataFrame(rows, infer_schema_length=None)
    method = a.segment_correction
    frame = frame.with_columns(
        p_adjusted=pl.Series(st.adjust(frame["p_value"].to_numpy(), method)),
        heterogeneity_p_adjusted=pl.Series(st.adjust(frame["heterogeneity_p"].to_numpy(), method)),
    )
    worse = (
        pl.when(pl.col("metric").is_in(HARMFUL_WHEN_HIGHER)).then(pl.col("effect") > 0).otherwise(pl.col("effect") < 0)
    )
    frame = frame.with_columns(
        significant=pl.col("p_adjusted") < a.alpha,
        differential=pl.col("heterogeneity_p_adjusted") < a.alpha,
        covers_truth=(pl.col("ci_low") <= pl.col("true_effect")) & (pl.col("true_effect") <= pl.col("ci_high")),
    ).with_columns(harmed=(pl.col("family") == "guardrail") & pl.col("significant") & worse)
    order = ["harmed", "differential", "segment_by", "segment", "arm"]
    return frame.sort(order, descending=[True, True, False, False, False], maintain_order=True), skipped


def _balance(tables, in_arm, names, control, cfg) -> list[dict[str, Any]]:
    """Is the assignment balanced before the test? Each pre-period measure of the analysed users, arm
    against control (Welch's t), Holm-corrected over every check: an unbalanced row (adjusted p below
    alpha) happens by chance at most alpha of the time in an A/A, and warns that effects on the
    metrics it stands for lean on the adjustment."""
    if not cfg.pre_days:
        return []
    rows = []
    for arm in names:
        if arm == control:
            continue
        for covariate, metric in BALANCE.items():
            t, c = tables[arm][covariate][in_arm[arm]], tables[control][covariate][in_arm[control]]
            if len(t) < 2 or len(c) < 2:
                continue
            test = st.welch(t, c)
            sd = float(np.sqrt((t.var(ddof=1) + c.var(ddof=1)) / 2))
            rows.append(
                {
                    "arm": arm,
                    "measure": f"{metric} per user in the pre-period",
                    "covariate": covariate,
                    "control": float(c.mean()),
                    "treatment": float(t.mean()),
                    "standardized_difference": float((t.mean() - c.mean()) / sd) if sd > 0 else 0.0,
                    "p_value": test.p_value,
                }
            )
    adjusted = st.adjust(np.array([row["p_value"] for row in rows]), "holm") if rows else []
    for row, p in zip(rows, adjusted, strict=True):
        row["p_adjusted"] = float(p)
        row["unbalanced"] = bool(p < cfg.analysis.alpha)
    return rows


def balance_warnings(rows: list[dict[str, Any]], control: str) -> list[str]:
    return [
        f"the assignment is unbalanced before the test: {row['measure']}, {row['arm']} {row['treatment']:.3g} "
        f"against {control} {row['control']:.3g} ({row['standardized_difference']:+.2f} SD, p = "
        f"{row['p_adjusted']:.2g} after Holm over {len(rows)} checks); effects on metrics tied to it are "
        "CUPED-adjusted on the pre-period, but read them with care (another experiment name reshuffles the "
        "assignment)"
        for row in rows
        if row["unbalanced"]
    ]


def _families(results: pl.DataFrame, families: dict[str, str], a) -> pl.DataFrame:
    """Family and adjusted p-value of every row: the declared correction runs within each family,
    over its metrics and arms."""
    if not len(results):
        return results
    results = results.with_columns(family=pl.col("metric").replace_strict(families, default="secondary"))
    adjusted = np.full(len(results), np.nan)
    family = results["family"].to_numpy()
    p = results["p_value"].to_numpy().astype(np.float64)
    for name in ("primary", "guardrail", "secondary"):
        chosen = np.flatnonzero(family == name)
        if len(chosen):
            adjusted[chosen] = st.adjust(p[chosen], a.correction)
    results = results.with_columns(p_adjusted=pl.Series(adjusted), correction=pl.lit(a.correction))
    order = {"primary": 0, "guardrail": 1, "secondary": 2}
    return (
        results.with_columns(
            significant=pl.col("p_adjusted") < a.alpha,
            covers_truth=(pl.col("ci_low") <= pl.col("true_effect")) & (pl.col("true_effect") <= pl.col("ci_high")),
            _order=pl.col("family").replace_strict(order, return_dtype=pl.Int8),
        )
        .sort("arm", "_order", maintain_order=True)
        .drop("_order")
    )


def homogenization(sim: Simulation, names: list[str]) -> dict[str, dict[str, Any]]:
    """Per arm, at the end of the test: mean Jaccard similarity of consumed sets, catalog
    coverage and Gini of exposure, with the days on which the arm retrained and, per retrain, how
    much the active users' next slates changed (mean Jaccard of the slates before and after, and
    the share of users below 0.5)."""
    out = {}
    for arm in names:
        state = sim.arms[arm]
        out[arm] = {
            "jaccard": state.per_day["jaccard"][-1],
            "coverage": state.per_day["coverage"][-1],
            "gini": state.per_day["gini"][-1],
            "retrained_on_days": list(state.retrained),
            "retrain_stability": list(state.stability),
        }
    return out


def _survival(tables, in_arm, truth_users, names, control, cfg, rows, families) -> dict[str, Any]:
    """Kaplan-Meier curves of time from first exposure to last visit (observed churn is the event,
    censoring at the end of the test), RMST effects with their true values, log-rank p-values."""
    horizon = float(cfg.days - cfg.analysis.churn_window)  # the latest time an event can be seen at
    curves: dict[str, Any] = {}
    fits = {}
    for arm in names:
        t = tables[arm]
        mask = in_arm[arm] & np.isfinite(t["survival_time"])
        truth = truth_users & np.isfinite(t["survival_time"])
        fits[arm] = st.kaplan_meier(t["survival_time"][mask], t["survival_event"][mask], horizon)
        true_fit = st.kaplan_meier(t["survival_time"][truth], t["survival_event"][truth], horizon)
        curves[arm] = {"fit": fits[arm], "true_rmst": true_fit.rmst}
    if "rmst_days" not in families:
        return curves
    level = 1 - cfg.analysis.alpha
    for arm in names:
        if arm == control or in_arm[arm].sum() < 2:
            continue
        pick = {k: in_arm[k] & np.isfinite(tables[k]["survival_time"]) for k in (arm, control)}
        both = pick[arm] | pick[control]
        group = np.where(pick[arm][both], 1, 0)
        time = np.where(pick[arm], tables[arm]["survival_time"], tables[control]["survival_time"])[both]
        event = np.where(pick[arm], tables[arm]["survival_event"], tables[control]["survival_event"])[both]
        p_logrank = st.logrank(time, event, group)
        effect = st.rmst_effect(fits[arm], fits[control], level=level)
        true = curves[arm]["true_rmst"] - curves[control]["true_rmst"]
        counts = {"n_control": int(pick[control].sum()), "n_treatment": int(pick[arm].sum()), "left_out": 0}
        rows.append(
            _row("rmst_days", "survival", "RMST (Kaplan-Meier)", arm, effect, true, logrank_p=p_logrank, **counts)
        )
        curves[arm]["logrank_p"] = p_logrank
    return curves


MATCHED_P = 0.001  # the fixed-horizon p-value whose effect a matched mixture detects soonest


def sequential_tau(sim: Simulation, metric: str, cfg: SimulationConfig) -> float:
    """The mSPRT mixture's sd, fixed before the test from the pre-period alone (so the test stays
    always valid). With `msprt_tau` set: that many sds per user of the metric's total over
    `sequential_window` days in the pre-period (scaled up when the pre-period is shorter), over users
    who visited in it. Unset (the default): matched to the planned test, tau^2 = (z^2 - 1) V, where V
    is the variance of the difference of means with the pre-period's visitors split by the traffic
    shares and z the normal quantile of a two-sided p of 0.001: the mixture whose always-valid p is
    smallest, at the planned size, for an effect a fixed-horizon test would call p = 0.001 (the
    maximum over tau^2 / V of the mixture's likelihood ratio is at z^2 - 1). Without a pre-period,
    `msprt_tau` (or 0.1) on the raw scale."""
    a, pre = cfg.analysis, sim.pre
    if pre is None or not cfg.pre_days:
        return a.msprt_tau or 0.1
    days = min(a.sequential_window, cfg.pre_days)
    totals = getattr(pre, DAILY[metric])[:, :days].sum(axis=1, dtype=np.float64) * (a.sequential_window / days)
    visited = pre.visits > 0
    sd = float(totals[visited].std(ddof=1)) if visited.sum() > 1 else 0.0
    sd = sd if sd > 0 else 1.0
    if a.msprt_tau is not None:
        return a.msprt_tau * sd
    shares = np.asarray(cfg.shares, dtype=np.float64) / sum(cfg.shares)
    control = [arm.name for arm in cfg.arms].index(cfg.control)
    smallest = float(np.delete(shares, control).min()) if len(shares) > 1 else 0.5
    visitors = max(int(visited.sum()), 4)
    variance = sd**2 * (1 / (visitors * smallest) + 1 / (visitors * shares[control]))
    z = st.stats.norm.ppf(1 - MATCHED_P / 2)
    return float(np.sqrt((z**2 - 1) * variance))


def _arrivals(values: np.ndarray, ready: np.ndarray, days: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and variance of the observations arrived by the end of each day (an observation
    arrives on its `ready` day)."""
    keep = np.isfinite(values)
    v, day = values[keep], ready[keep].astype(np.int64)
    n = np.bincount(day, minlength=days)[:days].cumsum()
    s1 = np.bincount(day, weights=v, minlength=days)[:days].cumsum()
    s2 = np.bincount(day, weights=v * v, minlength=days)[:days].cumsum()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = np.maximum(s2 - n * mean**2, 0.0) / (n - 1)
    return n, mean, var


def _sequential(sim: Simulation, tables, in_arm, names, control, cfg) -> pl.DataFrame:
    """Daily looks at the arriving stream: a user's observation (their total over the first
    `sequential_window` days after first exposure) arrives when that window closes, and every look
    tests all observations arrived so far with the always-valid mSPRT (fixed tau). Each primary
    metric that has a per-user total is monitored; a look stops the test when its p-value is below
    alpha over the number of monitored (arm, metric) pairs (Bonferroni: family-wise alpha)."""
    a = cfg.analysis
    metrics = [m for m in a.primary if m in SEQUENTIAL_METRICS]
    treated = [arm for arm in names if arm != control and in_arm[arm].sum() >= 2]
    if not metrics or not treated:
        return pl.DataFrame()
    threshold = a.alpha / (len(metrics) * len(treated))
    w = a.sequential_window
    rows = []
    for metric in metrics:
        tau = sequential_tau(sim, metric, cfg)
        key = f"first_{w}d_{metric}"
        ready_day = {arm: tables[arm]["first_exposure"] + w - 1 for arm in names}  # the window closes
        ctrl = _arrivals(tables[control][key][in_arm[control]], ready_day[control][in_arm[control]], cfg.days)
        for arm in treated:
            n_t, mean_t, var_t = _arrivals(tables[arm][key][in_arm[arm]], ready_day[arm][in_arm[arm]], cfg.days)
            n_c, mean_c, var_c = ctrl
            looked = (n_t >= 2) & (n_c >= 2)  # before that, no look: p = 1
            with np.errstate(invalid="ignore", divide="ignore"):
                diffs = np.where(looked, mean_t - mean_c, 0.0)
                variances = np.where(looked, var_t / np.maximum(n_t, 1) + var_c / np.maximum(n_c, 1), 0.0)
            p_av = st.msprt_pvalues(diffs, variances, tau)
            for day in range(cfg.days):
                rows.append(
                    {
                        "arm": arm,
                        "metric": metric,
                        "day": day,
                        "n_treatment": int(n_t[day]),
                        "n_control": int(n_c[day]),
                        "effect": float(diffs[day]) if looked[day] else None,
                        "p_always_valid": float(p_av[day]),
                        "threshold": threshold,
                        "stop": bool(p_av[day] < threshold),
                    }
                )
    return pl.DataFrame(rows)


def _per_day(sim: Simulation, names: list[str]) -> pl.DataFrame:
    """Per arm and day, what the logs show (visitors, slates, impressions, engagements, CTR,
    engagements per visitor, exposure coverage and Gini, Jaccard) and, named as such, the
    simulator's hidden state (users active, users who churned that day)."""
    frames = []
    for arm in names:
        log = sim.arms[arm].per_day
        frame = pl.DataFrame(log).with_columns(pl.lit(arm).alias("arm"), pl.int_range(pl.len()).alias("day"))
        frames.append(frame)
    out = pl.concat(frames)
    out = out.rename({"active": "simulator_truth_active", "churned": "simulator_truth_churned"})
    return out.with_columns(
        ctr=pl.col("engagements") / pl.col("impressions").clip(1),
        engagements_per_visitor=pl.col("engagements") / pl.col("visitors").clip(1),
    ).select("arm", "day", pl.exclude("arm", "day"))


MIN_ENROLLED = 2  # per arm: fewer, and no effect, interval or test means anything


def _too_few(sizes: dict[str, int], assigned: dict[str, int], enrollment: str) -> str:
    shown = ", ".join(f"{arm} {sizes[arm]:,} of {assigned[arm]:,}" for arm in sizes)
    who = "only users who visit during the test enter it (enrollment triggered)" if enrollment == "triggered" else ""
    return (
        f"the experiment enrolled too few users to analyse ({shown}; at least {MIN_ENROLLED} per arm)"
        + (f": {who}" if who else "")
        + "; simulate more users (world.population) or more days"
    )


def _per_user(world: SimulatedWorld, tables, arm_of, in_arm, names) -> pl.DataFrame:
    enrolled = np.logical_or.reduce([in_arm[arm] for arm in names])
    data: dict[str, Any] = {
        "user_id": world.user_ids,
        "source_user_idx": world.source_user.astype(np.int32),
        "arm": [names[i] for i in arm_of.tolist()],
        "enrolled": enrolled,
    }
    rows = np.arange(len(arm_of))
    observed = {key: np.stack([tables[arm][key] for arm in names])[arm_of, rows] for key in tables[names[0]]}
    data |= observed
    for arm in names:
        data[f"engagements__{arm}"] = tables[arm]["engagements"]
    return pl.DataFrame(data)
