"""A/B statistics against ground truth: hand-computed cases, an independent library, and seeded
simulations whose true effect is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from persotool.stages.simulate import statistics as st
from persotool.stages.simulate.analysis import assign

REPLICATES = 300
# 3-sigma binomial tolerance around a 95% coverage
COVERAGE_FLOOR = 0.95 - 3 * np.sqrt(0.95 * 0.05 / REPLICATES)


def test_welch_interval_by_hand() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 2.0, 80), rng.normal(0.0, 1.0, 120)
    effect = st.welch(a, b)
    va, vb = a.var(ddof=1) / 80, b.var(ddof=1) / 120
    df = (va + vb) ** 2 / (va**2 / 79 + vb**2 / 119)
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    assert effect.difference == pytest.approx(a.mean() - b.mean())
    assert (effect.ci_low, effect.ci_high) == pytest.approx((effect.difference - half, effect.difference + half))


def test_delta_method_covers_the_true_ratio_difference() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(REPLICATES):
        n = 400
        imp_t, imp_c = rng.poisson(8, n) + 1, rng.poisson(8, n) + 1
        # per-user click rates vary (clustering within users: the reason for the delta method)
        clicks_t = rng.binomial(imp_t, rng.beta(3, 27, n) + 0.02)
        clicks_c = rng.binomial(imp_c, rng.beta(3, 27, n))
        effect = st.ratio_delta(clicks_t, imp_t, clicks_c, imp_c)
        covered += effect.ci_low <= 0.02 <= effect.ci_high
    assert covered / REPLICATES >= COVERAGE_FLOOR


def test_delta_method_standard_error_matches_the_bootstrap() -> None:
    rng = np.random.default_rng(2)
    imp_t, imp_c = rng.poisson(10, 2000) + 1, rng.poisson(6, 2000) + 1
    clicks_t, clicks_c = rng.binomial(imp_t, rng.beta(2, 18, 2000)), rng.binomial(imp_c, rng.beta(3, 17, 2000))
    effect = st.ratio_delta(clicks_t, imp_t, clicks_c, imp_c)
    differences = []
    for _ in range(500):
        t, c = rng.integers(0, 2000, 2000), rng.integers(0, 2000, 2000)
        differences.append(clicks_t[t].sum() / imp_t[t].sum() - clicks_c[c].sum() / imp_c[c].sum())
    assert effect.se == pytest.approx(np.std(differences, ddof=1), rel=0.1)


def test_cuped_is_unbiased_covers_and_reduces_variance() -> None:
    rng = np.random.default_rng(3)
    covered, estimates, reductions = 0, [], []
    for _ in range(REPLICATES):
        pre_t, pre_c = rng.gamma(2, 2, 500), rng.gamma(2, 2, 500)
        y_t = 0.8 * pre_t + rng.normal(0, 1, 500) + 0.3
        y_c = 0.8 * pre_c + rng.normal(0, 1, 500)
        effect, reduction = st.cuped(y_t, y_c, pre_t, pre_c)
        covered += effect.ci_low <= 0.3 <= effect.ci_high
        estimates.append(effect.difference)
        reductions.append(reduction)
    assert covered / REPLICATES >= COVERAGE_FLOOR
    assert np.mean(estimates) == pytest.approx(0.3, abs=0.02)
    # var(0.8 X) = 0.64 * 8 = 5.12 of 6.12 is explained by the covariate
    assert np.mean(reductions) == pytest.approx(5.12 / 6.12, abs=0.03)


def test_sample_ratio_mismatch_by_hand() -> None:
    assert st.sample_ratio_mismatch([500, 500], [0.5, 0.5]) == pytest.approx(1.0)
    # chi2 = 100^2/500 * 2 = 40 on one degree of freedom
    assert st.sample_ratio_mismatch([600, 400], [0.5, 0.5]) == pytest.approx(stats.chi2.sf(40, 1))


def test_msprt_keeps_the_error_rate_at_any_look_and_detects_a_real_effect() -> None:
    rng = np.random.default_rng(4)
    looks, per_look = 20, 50
    false_alarms = 0
    for _ in range(REPLICATES):
        # running means of unit-variance observations, 50 more per arm at each look
        a = rng.normal(0, 1, (looks, per_look)).sum(axis=1).cumsum()
        b = rng.normal(0, 1, (looks, per_look)).sum(axis=1).cumsum()
        n = per_look * np.arange(1, looks + 1)
        diff = a / n - b / n
        var = 2 / n
        p = st.msprt_pvalues(diff, var, 0.2)
        assert np.all(np.diff(p) <= 0)  # always-valid p-values never rise
        false_alarms += p[-1] < 0.05
    assert false_alarms / REPLICATES <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / REPLICATES)
    n = np.arange(1, 41) * 100
    strong = st.msprt_pvalues(np.full(40, 0.3), 2 / n, 0.2)
    assert strong[-1] < 1e-6


def test_minimum_detectable_effect_has_the_stated_power() -> None:
    mde = st.minimum_detectable_effect(2.0, 500, 500, alpha=0.05, power=0.8)
    # normal approximation: (z_0.975 + z_0.8) * sd * sqrt(2 / n)
    assert mde == pytest.approx((1.959964 + 0.841621) * 2.0 * np.sqrt(2 / 500), rel=0.01)
    assert st.power_of(mde, 2.0, 500, 500, alpha=0.05) == pytest.approx(0.8, abs=1e-3)


def test_kaplan_meier_rmst_by_hand_and_logrank_against_scipy() -> None:
    # no censoring: RMST = mean of min(T, horizon)
    fit = st.kaplan_meier(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 1, 1, 1]), horizon=4)
    assert fit.rmst == pytest.approx(2.5)
    assert list(fit.survival) == pytest.approx([0.75, 0.5, 0.25, 0.0])
    rng = np.random.default_rng(5)
    t1, t2 = rng.exponential(10, 300), rng.exponential(14, 300)
    e1, e2 = t1 < 20, t2 < 20
    t1, t2 = np.minimum(t1, 20), np.minimum(t2, 20)
    ours = st.logrank(np.concatenate([t1, t2]), np.concatenate([e1, e2]).astype(int), np.repeat([0, 1], 300))
    theirs = stats.logrank(
        stats.CensoredData.right_censored(t1, ~e1), stats.CensoredData.right_censored(t2, ~e2)
    ).pvalue
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_rmst_interval_covers_the_true_difference() -> None:
    rng = np.random.default_rng(6)
    horizon = 30.0
    # true RMST of an exponential with mean m up to h: m (1 - exp(-h / m))
    truth = 14 * (1 - np.exp(-horizon / 14)) - 10 * (1 - np.exp(-horizon / 10))
    covered = 0
    for _ in range(200):
        t1, t2 = rng.exponential(14, 400), rng.exponential(10, 400)
        fits = [st.kaplan_meier(np.minimum(t, horizon), (t < horizon).astype(int), horizon) for t in (t1, t2)]
        effect = st.rmst_effect(fits[0], fits[1])
        covered += effect.ci_low <= truth <= effect.ci_high
    assert covered / 200 >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / 200)


def test_assignment_is_a_pure_function_of_seed_experiment_and_user() -> None:
    ids = [f"user-{i}" for i in range(20_000)]
    arms = assign(ids, 7, "exp", [0.3, 0.7])
    assert abs((arms == 0).mean() - 0.3) < 0.015
    shuffled = list(reversed(ids))
    assert np.array_equal(assign(shuffled, 7, "exp", [0.3, 0.7])[::-1], arms)  # order does not matter
    assert not np.array_equal(assign(ids, 7, "exp2", [0.3, 0.7]), arms)
    assert not np.array_equal(assign(ids, 8, "exp", [0.3, 0.7]), arms)


def test_bootstrap_interval_agrees_with_welch_on_normal_data() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(0.5, 1, 400), rng.normal(0.0, 1, 400)
    boot = st.bootstrap(a, b, resamples=2000, seed=0)
    welch = st.welch(a, b)
    assert boot.difference == pytest.approx(welch.difference)
    assert boot.ci_low == pytest.approx(welch.ci_low, abs=0.02)
    assert boot.ci_high == pytest.approx(welch.ci_high, abs=0.02)
    assert boot.p_value < 0.001


@pytest.mark.parametrize(("n_treatment", "ratio"), [(1506, 4.1037), (109, 3.419), (2269, 1.9522), (201, 0.5774)])
def test_minimum_detectable_effect_where_statsmodels_solver_falls_back(n_treatment: int, ratio: float) -> None:
    # statsmodels' solve_power returns a one-element array here (and a negative root for 2269):
    # float() of it fails on numpy 2, which crashed 4-arm experiments.
    n_control = round(n_treatment * ratio)
    mde = st.minimum_detectable_effect(2.0, n_treatment, n_control, alpha=0.05, power=0.8)
    assert isinstance(mde, float) and mde > 0
    assert st.power_of(mde, 2.0, n_treatment, n_control, alpha=0.05) == pytest.approx(0.8, abs=1e-6)
    normal = 2.0 * (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * np.sqrt(1 / n_treatment + 1 / n_control)
    assert mde == pytest.approx(normal, rel=0.02)  # the large-sample formula, for a hand check


def test_secondary_table_shows_the_test_without_cuped_beside_the_tested_one() -> None:
    import polars as pl

    from persotool.stages.simulate.report import secondary_table

    results = pl.DataFrame(
        [
            {"arm": "b", "metric": "visits", "effect": 0.694, "raw_effect": 0.594, "raw_ci_low": -0.3,
             "raw_ci_high": 1.5, "raw_p_value": 0.69, "logrank_p": None},
            {"arm": "b", "metric": "rmst_days", "effect": 0.1, "raw_effect": None, "raw_ci_low": None,
             "raw_ci_high": None, "raw_p_value": None, "logrank_p": 0.0037},
        ]
    )  # fmt: skip
    table = secondary_table(results).to_dicts()
    assert table[0]["test"] == "Welch t without CUPED" and table[0]["effect"] == 0.594
    assert (table[0]["ci_low"], table[0]["ci_high"], table[0]["p (uncorrected)"]) == (-0.3, 1.5, 0.69)
    assert table[1]["test"] == "log-rank" and table[1]["p (uncorrected)"] == 0.0037 and table[1]["effect"] is None


@pytest.mark.parametrize("method", ["holm", "bonferroni", "bh"])
def test_family_adjustment_matches_statsmodels(method: str) -> None:
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(4)
    for size in (1, 2, 5, 17):
        p = rng.uniform(0, 0.2, size)
        p[rng.random(size) < 0.2] = np.nan  # not part of the family
        ours = st.adjust(p, method)
        finite = np.isfinite(p)
        assert np.isnan(ours[~finite]).all()
        if finite.any():
            theirs = multipletests(p[finite], method={"bh": "fdr_bh"}.get(method, method))[1]
            assert np.allclose(ours[finite], theirs)
    assert np.array_equal(st.adjust(np.array([0.01, 0.04]), "none"), [0.01, 0.04])
    # Holm by hand: 0.01 x 3, then max(0.03, 0.02 x 2), then max(0.04, 0.04 x 1)
    assert np.allclose(st.adjust(np.array([0.04, 0.01, 0.02]), "holm"), [0.04, 0.03, 0.04])
    # Benjamini-Hochberg by hand: 0.04 x 3/3, 0.02 x 3/2 = 0.03, 0.01 x 3/1 = 0.03 (capped by the next)
    assert np.allclose(st.adjust(np.array([0.04, 0.01, 0.02]), "bh"), [0.04, 0.03, 0.03])
