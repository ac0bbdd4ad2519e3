"""Paired per-user significance tests of models against a baseline.

Every model is evaluated on the same users, so each metric gives one paired difference per user.
Two tests per (model, metric): the paired t-test (scipy `ttest_rel`, with its 95% confidence
interval of the mean difference) and the Wilcoxon signed-rank test (scipy `wilcoxon`; users whose
difference is zero are dropped, the usual `wilcox` zero method). Holm's step-down correction
(statsmodels `multipletests`) runs over the whole family of (model, metric) comparisons, once per
test, so the family-wise error rate of the table is controlled at `alpha`.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl

TEST_SCHEMA = {
    "model": pl.String,
    "metric": pl.String,
    "users": pl.Int64,
    "baseline_mean": pl.Float64,
    "model_mean": pl.Float64,
    "difference": pl.Float64,
    "relative": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "t_p": pl.Float64,
    "t_p_holm": pl.Float64,
    "wilcoxon_p": pl.Float64,
    "wilcoxon_p_holm": pl.Float64,
    "significant": pl.Boolean,
}


def paired_test(model: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """Paired t-test and Wilcoxon signed-rank test of `model - baseline` (pairs with a NaN dropped)."""
    from scipy import stats

    keep = np.isfinite(model) & np.isfinite(baseline)
    model, baseline = model[keep], baseline[keep]
    diff = model - baseline
    out = {
        "users": len(diff),
        "baseline_mean": float(baseline.mean()) if len(diff) else float("nan"),
        "model_mean": float(model.mean()) if len(diff) else float("nan"),
        "difference": float(diff.mean()) if len(diff) else float("nan"),
    }
    out["relative"] = out["difference"] / out["baseline_mean"] if out["baseline_mean"] else float("nan")
    if len(diff) < 2 or not np.any(diff):
        # identical rankings: no evidence of a difference at all
        same = len(diff) >= 2
        return out | {
            "ci_low": 0.0 if same else float("nan"),
            "ci_high": 0.0 if same else float("nan"),
            "t_p": 1.0 if same else float("nan"),
            "wilcoxon_p": 1.0 if same else float("nan"),
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t = stats.ttest_rel(model, baseline)
        ci = t.confidence_interval(0.95)
        w = stats.wilcoxon(diff, zero_method="wilcox")
    t_p = float(t.pvalue) if np.isfinite(t.pvalue) else (0.0 if diff.std() == 0 else float("nan"))
    return out | {"ci_low": float(ci.low), "ci_high": float(ci.high), "t_p": t_p, "wilcoxon_p": float(w.pvalue)}


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels); NaNs stay NaN and are not part of the family."""
    from statsmodels.stats.multitest import multipletests

    adjusted = np.full(len(pvalues), np.nan)
    finite = np.isfinite(pvalues)
    if finite.any():
        adjusted[finite] = multipletests(pvalues[finite], method="holm")[1]
    return adjusted


def compare(per_user: dict[str, pl.DataFrame], baseline: str, metrics: list[str], *, alpha: float = 0.05):
    """One row per (model, metric) for every model but the baseline; tables are joined on user_idx
    so models are compared on exactly the same users."""
    base = per_user[baseline]
    rows = []
    for name, table in per_user.items():
        if name == baseline:
            continue
        joined = base.select("user_idx", *metrics).join(
            table.select("user_idx", *metrics), on="user_idx", how="inner", suffix="__model"
        )
        for metric in metrics:
            result = paired_test(joined[f"{metric}__model"].to_numpy(), joined[metric].to_numpy())
            rows.append({"model": name, "metric": metric, **result})
    if not rows:
        return pl.DataFrame(schema=TEST_SCHEMA)
    table = pl.DataFrame(rows)
    table = table.with_columns(
        t_p_holm=pl.Series(holm(table["t_p"].to_numpy())),
        wilcoxon_p_holm=pl.Series(holm(table["wilcoxon_p"].to_numpy())),
    )
    table = table.with_columns(significant=(pl.col("t_p_holm") < alpha) & (pl.col("wilcoxon_p_holm") < alpha))
    return table.select(list(TEST_SCHEMA)).cast(TEST_SCHEMA)
