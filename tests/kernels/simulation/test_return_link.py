"""The link from a visit's quality to returning (`return_link`), against logs drawn with a planted
link: the logistic coefficient is recovered, and with no planted link "no link found" is said at
about the 5% error rate its 95% interval promises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from persotool.kernels.simulation import return_link


def _log(seed: int, slope: float, users: int = 300, span: int = 400) -> pl.DataFrame:
    """Each user's active days over `span` days: a day's rating is their own mean plus noise; whether
    they return within 30 days follows logistic(0.8 + slope x (rating - mean of their earlier days))."""
    rng = np.random.default_rng(seed)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    rows = []
    for user in range(users):
        mean, day, ratings = rng.normal(3.5, 0.4), 0, []
        while day < span:
            rating = float(np.clip(mean + rng.normal(0, 0.8), 0.5, 5))
            rows.append((user, start + timedelta(days=day, hours=12), rating))
            quality = rating - np.mean(ratings) if ratings else 0.0
            ratings.append(rating)
            back = rng.random() < 1 / (1 + np.exp(-(0.8 + slope * quality)))
            day += int(rng.integers(1, 31)) if back else int(rng.integers(31, 90))
    return pl.DataFrame(rows, schema=["user_idx", "timestamp", "value"], orient="row")


def test_a_planted_link_is_recovered():
    fit = return_link.fit(_log(1, slope=0.6, users=600))
    assert fit["link"] == "better visits, more returns"
    assert fit["ci"][0] <= 0.6 <= fit["ci"][1]
    assert fit["coefficient"] == pytest.approx(0.6, abs=3 * fit["standard_error"])


def test_without_a_link_no_link_is_found_at_the_promised_rate():
    found = sum(return_link.fit(_log(seed, slope=0.0))["link"] != "no link found" for seed in range(100))
    assert found <= 12  # 5% expected; 12 of 100 is beyond 3 binomial sd


def test_too_few_days_or_no_ratings_say_so():
    small = return_link.fit(_log(2, slope=1.0, users=5))
    assert small["link"] == "no link found" and "usable active days" in small["note"]
    unrated = _log(3, slope=1.0).with_columns(pl.lit(None, dtype=pl.Float64).alias("value"))
    assert return_link.fit(unrated)["link"] == "no link found"
