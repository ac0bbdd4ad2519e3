"""From simulated potential outcomes to an experiment's results: assign users to arms, compute each
metric per arm as the experiment would see it (assigned users only), its effect against control
with confidence interval and p-value, and beside it the true effect over every eligible user.

Metrics (per user over the test period): engagements, visits, examined items; CTR (engagements /
impressions) and engagement rate (engagements / examined) as ratio metrics; consumption diversity
(1 - squared length of the mean topic vector of consumed items, users with 2+ engagements);
D1/D7/D30 rolling retention (a visit on or after that day); churned; and retention time (days
until churn) by Kaplan-Meier, log-rank and restricted mean survival time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from persotool.evaluation.comparison import holm
from persotool.simulation import statistics as st
from persotool.simulation.config import SimulationConfig
from persotool.simulation.engine import ArmState, Simulation
from persotool.simulation.world import World

MEAN_METRICS = ("engagements", "visits", "examined")
RATIO_METRICS = {"ctr": ("engagements", "impressions"), "engagement_rate": ("engagements", "examined")}
RETENTION_DAYS = (1, 7, 30)
CUPED_COVARIATE = {"engagements": "pre_engagements", "visits": "pre_visits", "examined": "pre_engagements"}
SEQUENTIAL_METRICS = ("engagements", "visits")


def assign(user_ids: list[str], seed: int, experiment: str, shares: list[float]) -> np.ndarray:
    """Arm index of each user: a pure function of (seed, experiment name, user id), through a
    keyed BLAKE2b hash mapped to [0, 1) and cut at the cumulative traffic shares."""
    key = hashlib.blake2b(f"{seed}\x1f{experiment}".encode(), digest_size=32).digest()
    digests = b"".join(hashlib.blake2b(u.encode(), digest_size=8, key=key).digest() for u in user_ids)
    values = np.frombuffer(digests, dtype=">u8").astype(np.float64) / 2.0**64
    return np.searchsorted(np.cumsum(shares)[:-1], values, side="right").astype(np.int16)


def diversity(state: ArmState) -> np.ndarray:
    n = state.engagements.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = 1 - (state.topic_sum.astype(np.float64) ** 2).sum(axis=1) / n**2
    return np.where(n >= 2, spread, np.nan)


def user_table(sim: Simulation, arm: str, days: int) -> dict[str, np.ndarray]:
    """Per-user outcomes of every simulated user under `arm` (potential outcomes)."""
    s = sim.arms[arm]
    churned = s.churn_day >= 0
    out = {
        "engagements": s.engagements.astype(np.float64),
        "visits": s.visits.astype(np.float64),
        "examined": s.examined.astype(np.float64),
        "impressions": s.impressions.astype(np.float64),
        "slates": s.slates.astype(np.float64),
        "diversity": diversity(s),
        "churned": churned.astype(np.float64),
        "days_to_churn": np.where(churned, s.churn_day + 1, days).astype(np.float64),
        "pre_engagements": sim.pre_engagements.astype(np.float64),
        "pre_visits": sim.pre_visits.astype(np.float64),
    }
    for d in RETENTION_DAYS:
        if d < days:
            out[f"retention_d{d}"] = (s.last_visit >= d).astype(np.float64)
    return out


@dataclass
class Analysis:
    results: pl.DataFrame  # one row per (arm, metric)
    srm_p: float
    arm_sizes: dict[str, int]
    per_day: pl.DataFrame
    sequential: pl.DataFrame
    survival: dict[str, Any]
    per_user: pl.DataFrame
    homogenization: dict[str, dict[str, Any]] = field(default_factory=dict)


def _row(metric: str, kind: str, arm: str, effect: st.Effect, true_effect: float, **extra: Any) -> dict[str, Any]:
    return {
        "metric": metric,
        "kind": kind,
        "arm": arm,
        "control": effect.control,
        "treatment": effect.treatment,
        "effect": effect.difference,
        "relative_effect": effect.relative,
        "ci_low": effect.ci_low,
        "ci_high": effect.ci_high,
        "p_value": effect.p_value,
        "true_effect": true_effect,
        **extra,
    }


def analyse(
    sim: Simulation, world: World, cfg: SimulationConfig, *, light: bool = False, sequential: bool | None = None
) -> Analysis:
    """The experiment's results. `light` skips what replicated validation runs do not need
    (minimum detectable effects, Holm correction, the per-user table, and the sequential looks unless
    `sequential` asks for them)."""
    names = [a.name for a in cfg.arms]
    control = cfg.control
    alpha, level = cfg.analysis.alpha, 1 - cfg.analysis.alpha
    eligible = sim.eligible
    arm_of = assign(world.user_ids, cfg.seed, cfg.name, cfg.shares)
    tables = {a: user_table(sim, a, cfg.days) for a in names}
    in_arm = {a: eligible & (arm_of == i) for i, a in enumerate(names)}
    sizes = {a: int(in_arm[a].sum()) for a in names}
    srm_p = st.sample_ratio_mismatch([sizes[a] for a in names], cfg.shares)
    ctrl, ctrl_mask = tables[control], in_arm[control]
    rows: list[dict[str, Any]] = []
    metrics = [*MEAN_METRICS, "diversity", *(k for k in tables[control] if k.startswith("retention_")), "churned"]
    for arm in names:
        if arm == control:
            continue
        treat, mask = tables[arm], in_arm[arm]
        n_t, n_c = sizes[arm], sizes[control]
        if n_t < 2 or n_c < 2:
            continue
        for metric in metrics:
            y_t, y_c = treat[metric][mask], ctrl[metric][ctrl_mask]
            finite_t, finite_c = y_t[np.isfinite(y_t)], y_c[np.isfinite(y_c)]
            if len(finite_t) < 2 or len(finite_c) < 2:
                continue
            effect = st.welch(finite_t, finite_c, level=level)
            true = float(np.nanmean(treat[metric][eligible]) - np.nanmean(ctrl[metric][eligible]))
            pooled_sd = float(np.sqrt((finite_t.var(ddof=1) + finite_c.var(ddof=1)) / 2))
            extra: dict[str, Any] = {}
            if not light:
                extra["mde"] = st.minimum_detectable_effect(
                    pooled_sd, len(finite_t), len(finite_c), alpha=alpha, power=cfg.analysis.power
                )
            covariate = CUPED_COVARIATE.get(metric)
            if covariate and cfg.pre_days:
                adjusted, reduction = st.cuped(
                    y_t, y_c, treat[covariate][mask], ctrl[covariate][ctrl_mask], level=level
                )
                extra |= {
                    "cuped_effect": adjusted.difference,
                    "cuped_ci_low": adjusted.ci_low,
                    "cuped_ci_high": adjusted.ci_high,
                    "cuped_p_value": adjusted.p_value,
                    "cuped_variance_reduction": reduction,
                }
            if cfg.analysis.bootstrap:
                boot = st.bootstrap(finite_t, finite_c, resamples=cfg.analysis.bootstrap, seed=cfg.seed, level=level)
                extra |= {"bootstrap_ci_low": boot.ci_low, "bootstrap_ci_high": boot.ci_high}
            kind = "proportion" if metric.startswith("retention_") or metric == "churned" else "mean"
            rows.append(_row(metric, kind, arm, effect, true, **extra))
        for metric, (num, den) in RATIO_METRICS.items():
            effect = st.ratio_delta(
                treat[num][mask], treat[den][mask], ctrl[num][ctrl_mask], ctrl[den][ctrl_mask], level=level
            )
            true = float(
                treat[num][eligible].sum() / max(treat[den][eligible].sum(), 1)
                - ctrl[num][eligible].sum() / max(ctrl[den][eligible].sum(), 1)
            )
            z = st.stats.norm.ppf(1 - alpha / 2) + st.stats.norm.ppf(cfg.analysis.power)
            rows.append(_row(metric, "ratio", arm, effect, true, mde=float(z * effect.se)))
    survival = _survival(tables, in_arm, eligible, names, control, cfg, rows)
    results = pl.DataFrame(rows, infer_schema_length=None)
    if len(results):
        # statsmodels' Holm runs a full garbage collection on every call: replicates skip it
        adjusted = np.full(len(results), np.nan) if light else holm(results["p_value"].to_numpy())
        results = results.with_columns(p_holm=pl.Series(adjusted))
        results = results.with_columns(
            significant=pl.col("p_holm") < alpha,
            covers_truth=(pl.col("ci_low") <= pl.col("true_effect")) & (pl.col("true_effect") <= pl.col("ci_high")),
        )
    looks = (not light) if sequential is None else sequential
    sequential_table = _sequential(sim, in_arm, names, control, cfg) if looks else pl.DataFrame()
    if len(results) and len(sequential_table):
        first = (
            sequential_table.filter(pl.col("p_always_valid") < alpha)
            .group_by("arm", "metric")
            .agg(first_stop_day=pl.col("day").min())
        )
        results = results.join(first, on=["arm", "metric"], how="left")
    per_user = pl.DataFrame() if light else _per_user(world, tables, arm_of, eligible, names)
    return Analysis(
        results=results,
        srm_p=srm_p,
        arm_sizes=sizes,
        per_day=_per_day(sim, names),
        sequential=sequential_table,
        survival=survival,
        per_user=per_user,
        homogenization=homogenization(sim, names),
    )


def homogenization(sim: Simulation, names: list[str]) -> dict[str, dict[str, Any]]:
    """Per arm, at the end of the test: mean Jaccard similarity of consumed sets, catalog
    coverage and Gini of exposure, with the days on which the arm retrained."""
    out = {}
    for arm in names:
        state = sim.arms[arm]
        out[arm] = {
            "jaccard": state.per_day["jaccard"][-1],
            "coverage": state.per_day["coverage"][-1],
            "gini": state.per_day["gini"][-1],
            "retrained_on_days": list(state.retrained),
        }
    return out


def _survival(tables, in_arm, eligible, names, control, cfg, rows) -> dict[str, Any]:
    horizon = float(cfg.days)
    curves: dict[str, Any] = {}
    fits = {}
    for arm in names:
        t = tables[arm]
        mask = in_arm[arm]
        fits[arm] = st.kaplan_meier(t["days_to_churn"][mask], t["churned"][mask], horizon)
        truth = st.kaplan_meier(t["days_to_churn"][eligible], t["churned"][eligible], horizon)
        curves[arm] = {"fit": fits[arm], "true_rmst": truth.rmst}
    level = 1 - cfg.analysis.alpha
    for arm in names:
        if arm == control or in_arm[arm].sum() < 2:
            continue
        both = in_arm[arm] | in_arm[control]
        group = np.where(in_arm[arm][both], 1, 0)
        time = np.where(in_arm[arm], tables[arm]["days_to_churn"], tables[control]["days_to_churn"])[both]
        event = np.where(in_arm[arm], tables[arm]["churned"], tables[control]["churned"])[both]
        p_logrank = st.logrank(time, event, group)
        effect = st.rmst_effect(fits[arm], fits[control], level=level)
        true = curves[arm]["true_rmst"] - curves[control]["true_rmst"]
        rows.append(_row("rmst_days", "survival", arm, effect, true, logrank_p=p_logrank))
        curves[arm]["logrank_p"] = p_logrank
    return curves


def _sequential(sim: Simulation, in_arm, names, control, cfg) -> pl.DataFrame:
    """Daily looks at cumulative per-user engagements and visits, with always-valid p-values."""
    rows = []
    ctrl = sim.arms[control]
    for arm in names:
        if arm == control or in_arm[arm].sum() < 2:
            continue
        treat = sim.arms[arm]
        for metric in SEQUENTIAL_METRICS:
            daily_t = (treat.daily_engagements if metric == "engagements" else treat.daily_visits)[in_arm[arm]]
            daily_c = (ctrl.daily_engagements if metric == "engagements" else ctrl.daily_visits)[in_arm[control]]
            cum_t = np.cumsum(daily_t, axis=1, dtype=np.float64)
            cum_c = np.cumsum(daily_c, axis=1, dtype=np.float64)
            diff = cum_t.mean(axis=0) - cum_c.mean(axis=0)
            var = cum_t.var(axis=0, ddof=1) / cum_t.shape[0] + cum_c.var(axis=0, ddof=1) / cum_c.shape[0]
            sd = np.sqrt((cum_t.var(axis=0, ddof=1) + cum_c.var(axis=0, ddof=1)) / 2)
            p_av = st.msprt_pvalues(diff, var, cfg.analysis.msprt_tau * np.maximum(sd, 1e-12))
            with np.errstate(divide="ignore", invalid="ignore"):
                p_fixed = 2 * st.stats.norm.sf(np.abs(diff) / np.sqrt(var))
            for day in range(cfg.days):
                rows.append(
                    {
                        "arm": arm,
                        "metric": metric,
                        "day": day,
                        "effect": float(diff[day]),
                        "p_always_valid": float(p_av[day]),
                        "p_fixed": float(np.nan_to_num(p_fixed[day], nan=1.0)),
                    }
                )
    return pl.DataFrame(rows)


def _per_day(sim: Simulation, names: list[str]) -> pl.DataFrame:
    frames = []
    for arm in names:
        log = sim.arms[arm].per_day
        frame = pl.DataFrame(log).with_columns(pl.lit(arm).alias("arm"), pl.int_range(pl.len()).alias("day"))
        frames.append(frame)
    out = pl.concat(frames)
    return out.with_columns(
        ctr=pl.col("engagements") / pl.col("impressions").clip(1),
        engagements_per_active=pl.col("engagements") / pl.col("active").clip(1),
    ).select("arm", "day", pl.exclude("arm", "day"))


def _per_user(world: World, tables, arm_of, eligible, names) -> pl.DataFrame:
    data: dict[str, Any] = {
        "user_id": world.user_ids,
        "source_user_idx": world.source_user.astype(np.int32),
        "eligible": eligible,
        "arm": [names[i] for i in arm_of.tolist()],
    }
    rows = np.arange(len(arm_of))
    observed = {key: np.stack([tables[a][key] for a in names])[arm_of, rows] for key in tables[names[0]]}
    data |= observed
    for a in names:
        data[f"engagements__{a}"] = tables[a]["engagements"]
    return pl.DataFrame(data)
