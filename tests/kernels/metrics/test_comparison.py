"""Paired tests against a baseline: hand-computed Holm, the t interval by hand, and the error rate
under a seeded null."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from persotool.kernels.metrics.comparison import compare, holm, paired_test


def test_holm_matches_hand_computation() -> None:
    # sorted 0.01, 0.03, 0.04 -> 0.03, 0.06, max(0.06, 0.04) = 0.06 (step-down keeps monotone)
    adjusted = holm(np.array([0.01, 0.04, 0.03, np.nan]))
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(adjusted[3])


def test_paired_interval_by_hand() -> None:
    rng = np.random.default_rng(3)
    base = rng.random(50)
    model = base + 0.05 + rng.normal(0, 0.1, 50)
    result = paired_test(model, base)
    diff = model - base
    half = stats.t.ppf(0.975, 49) * diff.std(ddof=1) / np.sqrt(50)
    assert result["difference"] == pytest.approx(diff.mean())
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((diff.mean() - half, diff.mean() + half))
    t = diff.mean() / (diff.std(ddof=1) / np.sqrt(50))
    assert result["t_p"] == pytest.approx(2 * stats.t.sf(abs(t), 49))
    assert result["users"] == 50


def test_identical_rankings_are_not_different() -> None:
    values = np.array([0.0, 0.5, 1.0, 0.25])
    result = paired_test(values, values.copy())
    assert result["t_p"] == 1.0 and result["wilcoxon_p"] == 1.0 and result["ci_low"] == result["ci_high"] == 0.0


def test_nan_pairs_are_dropped() -> None:
    result = paired_test(np.array([1.0, np.nan, 0.5, 0.2]), np.array([0.5, 0.1, np.nan, 0.1]))
    assert result["users"] == 2 and result["difference"] == pytest.approx(0.3)


def test_false_positive_rate_under_the_null() -> None:
    # exchangeable per-user metrics (binary hits, as hit_rate gives): about 5% rejections, not more
    rng = np.random.default_rng(11)
    rejections_t = rejections_w = 0
    replicates = 400
    for _ in range(replicates):
        a = (rng.random(300) < 0.3).astype(float)
        b = (rng.random(300) < 0.3).astype(float)
        result = paired_test(a, b)
        rejections_t += result["t_p"] < 0.05
        rejections_w += result["wilcoxon_p"] < 0.05
    tolerance = 3 * np.sqrt(0.05 * 0.95 / replicates)
    assert abs(rejections_t / replicates - 0.05) < tolerance
    assert abs(rejections_w / replicates - 0.05) < tolerance


def test_compare_pairs_users_not_rows_and_corrects_over_the_family() -> None:
    rng = np.random.default_rng(5)
    users = np.arange(200)
    base = rng.random(200) * 0.2
    better = base + 0.1
    noise = base + rng.normal(0, 0.05, 200)
    order = rng.permutation(200)  # a model's table in another row order must not matter
    per_user = {
        "base": pl.DataFrame({"user_idx": users, "ndcg@10": base, "recall@10": base}),
        "better": pl.DataFrame({"user_idx": users[order], "ndcg@10": better[order], "recall@10": better[order]}),
        "noise": pl.DataFrame({"user_idx": users, "ndcg@10": noise, "recall@10": base}),
    }
    table = compare(per_user, "base", ["ndcg@10", "recall@10"])
    assert table.height == 4
    row = table.filter(model="better", metric="ndcg@10").row(0, named=True)
    assert row["difference"] == pytest.approx(0.1) and row["significant"]
    raw = table["t_p"].to_numpy()
    assert table["t_p_holm"].to_numpy() == pytest.approx(holm(raw), nan_ok=True)
    assert (table["t_p_holm"].to_numpy() >= raw).all()
    same = table.filter(model="noise", metric="recall@10").row(0, named=True)
    assert same["t_p"] == 1.0 and not same["significant"]
