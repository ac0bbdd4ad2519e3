"""Does what a user gets on a visit change whether they come back? Measured on a log's own active
days, before the simulator assumes it.

A rating log has no impressions, so a visit's quality is what the log has: the mean rating of the
day's interactions relative to the user's own mean rating over their earlier active days (a day
better than usual for this user is positive). The outcome is returning: another active day within
`horizon` days. A logistic regression of returning on quality, controlling for the user's habit
(log days since the previous active day, log active days so far), gives the link: the change in
log-odds of returning per rating point above the user's own mean, with its standard error and 95%
interval. Days whose horizon runs past the end of the window are left out (their outcome is not
yet known), as are first active days (no own mean to compare with).

"no link found" when the interval holds zero (or the log has no ratings to measure quality by);
the simulator then keeps its documented default link (`behaviour.churn_satisfaction`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

MIN_DAYS = 200  # fewer usable active days: too few to measure a link


def days(frame: pl.DataFrame, until=None, horizon: int = 30) -> pl.DataFrame:
    """One row per user and active day before `until` (a datetime; None: the whole log) whose
    `horizon` ends inside it: quality, habit and whether the user returned within `horizon` days."""
    if until is not None:
        frame = frame.filter(pl.col("timestamp") < until)
    end = frame["timestamp"].max()
    daily = (
        frame.filter(pl.col("value").is_not_null() & pl.col("value").is_finite())
        .with_columns(pl.col("timestamp").dt.date().alias("day"))
        .group_by("user_idx", "day")
        .agg(pl.col("value").mean().alias("rating"), pl.len().alias("n"))
        .sort("user_idx", "day")
    )
    if daily.is_empty() or end is None:
        return daily
    by_user = pl.col("user_idx")
    daily = daily.with_columns(
        (pl.col("rating") * pl.col("n")).cum_sum().over(by_user).alias("_sum"),
        pl.col("n").cum_sum().over(by_user).alias("_count"),
        pl.int_range(pl.len()).over(by_user).alias("index"),
        pl.col("day").shift(1).over(by_user).alias("previous"),
        pl.col("day").shift(-1).over(by_user).alias("next"),
    )
    earlier_mean = (pl.col("_sum") - pl.col("rating") * pl.col("n")) / (pl.col("_count") - pl.col("n"))
    last_day = end.date()
    return (
        daily.with_columns(
            (pl.col("rating") - earlier_mean).alias("quality"),
            ((pl.col("day") - pl.col("previous")).dt.total_days()).alias("gap"),
            ((pl.col("next") - pl.col("day")).dt.total_days() <= horizon).fill_null(False).alias("returned"),
        )
        .filter((pl.col("index") > 0) & ((pl.lit(last_day) - pl.col("day")).dt.total_days() >= horizon))
        .select("user_idx", "day", "quality", "gap", "index", "returned")
    )


def fit(frame: pl.DataFrame, until=None, *, horizon: int = 30) -> dict[str, Any]:
    """The link between a visit's quality and returning within `horizon` days (see the module)."""
    import statsmodels.api as sm

    table = days(frame, until, horizon)
    found: dict[str, Any] = {"horizon_days": horizon, "days": len(table)}
    if "quality" not in table.columns or len(table) < MIN_DAYS:
        return found | {"link": "no link found", "note": f"{len(table)} usable active days with ratings (< {MIN_DAYS})"}
    quality = table["quality"].to_numpy().astype(np.float64)
    if not np.isfinite(quality).all() or quality.std() == 0:
        return found | {"link": "no link found", "note": "the ratings do not vary within users"}
    x = np.column_stack(
        [
            np.ones(len(table)),
            quality,
            np.log1p(table["gap"].to_numpy().astype(np.float64)),
            np.log(table["index"].to_numpy().astype(np.float64) + 1),
        ]
    )
    y = table["returned"].to_numpy().astype(np.float64)
    if y.min() == y.max():
        return found | {"link": "no link found", "note": "every usable day has the same outcome"}
    model = sm.Logit(y, x).fit(disp=0, maxiter=100)
    coef, se = float(model.params[1]), float(model.bse[1])
    low, high = coef - 1.96 * se, coef + 1.96 * se
    link = (
        "no link found"
        if low <= 0 <= high
        else ("better visits, more returns" if coef > 0 else "better visits, fewer returns")
    )
    return found | {
        "link": link,
        "coefficient": coef,
        "standard_error": se,
        "ci": [low, high],
        "p_value": float(model.pvalues[1]),
        "return_share": float(y.mean()),
        "quality_sd": float(quality.std()),
    }
