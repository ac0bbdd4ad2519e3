"""Exposure fairness over item groups: who gets shown. For each group of items (popularity tiers
by default, or any item attribute), its share of the top-k exposure against its share of the
catalogue (ratio 1: exposed in proportion to its size), and the Gini of exposure among its own
items; intervals by a Poisson bootstrap over users (each user's list is one unit)."""

from __future__ import annotations

import numpy as np

TIERS = 4  # popularity tiers: quartiles of the items by training interactions


def popularity_tiers(popularity: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each item's tier, 0 (least popular quarter of the catalogue) to 3 (most popular quarter),
    by the rank of its training interactions (ties in item order), and the tiers' names."""
    n = len(popularity)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(popularity, kind="stable")] = np.arange(n)
    tiers = np.minimum(rank * TIERS // max(n, 1), TIERS - 1)
    names = ["popularity Q1 least", "popularity Q2", "popularity Q3", "popularity Q4 most"]
    return tiers, names


def _gini(counts: np.ndarray) -> float:
    total = counts.sum()
    if total == 0 or len(counts) < 2:
        return 0.0
    x = np.sort(counts)
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1).dot(x) / (n * total))


def exposure_table(
    recs: np.ndarray, groups: np.ndarray, names: list[str], k: int, *, resamples: int = 1000, seed: int = 0
) -> list[dict]:
    """Per item group: items, catalogue share, exposure share (with a 95% interval), their ratio
    (with its interval) and the Gini of exposure within the group. `recs` (users, >= k) holds item
    indices, -1 for none; `groups` (items,) each item's group index into `names`."""
    top = recs[:, :k]
    shown = top >= 0
    g = len(names)
    per_user = np.zeros((len(top), g))  # exposures of each group in each user's list
    rows, cols = np.nonzero(shown)
    np.add.at(per_user, (rows, groups[top[rows, cols]]), 1)
    totals = per_user.sum(axis=1)
    share = per_user.sum(axis=0) / max(totals.sum(), 1)
    weights = np.random.default_rng(seed).poisson(1.0, size=(resamples, len(top)))
    boot = (weights @ per_user) / np.maximum(weights @ totals, 1)[:, None]
    low, high = np.quantile(boot, [0.025, 0.975], axis=0)
    item_counts = np.bincount(top[shown], minlength=len(groups))
    out = []
    for j, name in enumerate(names):
        members = groups == j
        catalogue = float(members.mean())
        out.append(
            {
                "group": name,
                "items": int(members.sum()),
                "catalogue_share": catalogue,
                "exposure_share": float(share[j]),
                "ci_low": float(low[j]),
                "ci_high": float(high[j]),
                "ratio": float(share[j] / catalogue) if catalogue else float("nan"),
                "ratio_ci_low": float(low[j] / catalogue) if catalogue else float("nan"),
                "ratio_ci_high": float(high[j] / catalogue) if catalogue else float("nan"),
                "gini_within": _gini(item_counts[members]),
            }
        )
    return out
