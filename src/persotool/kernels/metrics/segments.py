"""Per-segment metric means with bootstrap 95% confidence intervals."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import polars as pl

from persotool.errors import ConfigError

ACTIVITY_BUCKETS = ((1, 5), (6, 20), (21, 100), (101, 500), (501, None))
BOOTSTRAP = 1000
MIN_SEGMENT_USERS = 20  # below it a bootstrap interval of a mean says nothing (one user: zero width)
# the pooled small segments: a name no real category is likely to have (MovieLens has an occupation "other")
OTHER = "(small segments pooled)"
QUANTILE_BINS = 4
SEGMENT_SCHEMA = {
    "segment": pl.String,
    "metric": pl.String,
    "users": pl.Int64,
    "mean": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "note": pl.String,
}


def bootstrap_ci(
    values: np.ndarray, *, resamples: int = BOOTSTRAP, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling users with replacement)."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // len(values))
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        idx = rng.integers(0, len(values), size=(stop - start, len(values)))
        means[start:stop] = values[idx].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def activity_labels(train_counts: pl.DataFrame) -> pl.DataFrame:
    """user_idx -> activity bucket from the number of training interactions."""
    expr = pl.lit("0 (cold)")
    for low, high in ACTIVITY_BUCKETS:
        label = f"{low}+" if high is None else f"{low}-{high}"
        cond = pl.col("n") >= low if high is None else pl.col("n").is_between(low, high)
        expr = pl.when(cond).then(pl.lit(label)).otherwise(expr)
    return train_counts.select("user_idx", segment=expr)


def segment_table(
    per_user: pl.DataFrame,
    labels: pl.DataFrame,
    metrics: list[str],
    *,
    seed: int = 0,
    min_users: int = MIN_SEGMENT_USERS,
) -> pl.DataFrame:
    """One row per (segment, metric): users, mean, ci_low, ci_high, note. Segments of fewer than
    `min_users` users are pooled into one `other` segment (the note names how many); a segment
    still smaller than that gets its mean but no interval (null), and a note saying why."""
    if min_users < 1:
        raise ConfigError(f"the minimum segment size must be at least 1, got {min_users}")
    joined = per_user.join(labels, on="user_idx", how="left").with_columns(pl.col("segment").fill_null("0 (cold)"))
    sizes = joined.group_by("segment").len()
    small = sizes.filter(pl.col("len") < min_users)["segment"]
    notes: dict[str, str] = {}
    if len(small) > 1:
        joined = joined.with_columns(
            segment=pl.when(pl.col("segment").is_in(small.implode())).then(pl.lit(OTHER)).otherwise(pl.col("segment"))
        )
        notes[OTHER] = f"{len(small)} segments of fewer than {min_users} users each, pooled"
    rows = []

    def order(label: str) -> tuple[float, str]:
        if label == OTHER:
            return (float("inf"), "\uffff")  # the pooled small segments come last
        if label.startswith("<"):  # below the first explicit edge
            return (float("-inf"), label)
        head = label.split(" to ")[0].split("+")[0].split(" ")[0]
        if "-" in head[1:]:  # an activity bucket such as 6-20
            head = head[: head.index("-", 1)]
        try:
            return (float(head), label)
        except ValueError:
            return (float("inf"), label)

    for segment in sorted(joined["segment"].unique().to_list(), key=order):
        part = joined.filter(pl.col("segment") == segment)
        for metric in metrics:
            values = part[metric].to_numpy().astype(np.float64)
            note = notes.get(segment)
            if len(part) < min_users:
                low = high = None
                note = f"{len(part)} users, fewer than {min_users}: no interval" + (f"; {note}" if note else "")
            else:
                low, high = bootstrap_ci(values, seed=seed)
            rows.append(
                {
                    "segment": segment,
                    "metric": metric,
                    "users": len(part),
                    "mean": float(np.nanmean(values)) if len(values) else float("nan"),
                    "ci_low": low,
                    "ci_high": high,
                    "note": note,
                }
            )
    return pl.DataFrame(rows, schema=SEGMENT_SCHEMA)


def labels_for(
    by: str, train: pl.DataFrame, dataset: Path, *, bins: int = QUANTILE_BINS, edges: list[float] | None = None
) -> pl.DataFrame:
    """Segment labels: `activity` (training interactions) or any column of the dataset's users table;
    a numeric column is cut into `bins` quantile bins, or at explicit `edges`."""
    if by == "activity":
        return activity_labels(train.group_by("user_idx").agg(n=pl.len()))
    users = pl.read_parquet(Path(dataset) / "users.parquet")
    if by not in users.columns or by in ("user_idx", "features"):
        options = [c for c in users.columns if c not in ("user_idx", "user_id", "features")]
        raise ConfigError(f"cannot segment by {by!r}: use activity or a users column ({', '.join(options)})")
    column = numeric(users[by])
    if column is not None:
        return users.select("user_idx").with_columns(segment=pl.Series(binned(column, bins, edges), dtype=pl.String))
    if edges:
        raise ConfigError(f"segment edges need a numeric column; {by!r} holds {users[by].dtype}")
    return users.select("user_idx", segment=pl.col(by).cast(pl.String).fill_null("(missing)"))


def numeric(column: pl.Series) -> pl.Series | None:
    """The column as numbers when it holds numbers (attribute files are read as text: an age column
    arrives as strings), else None."""
    if column.dtype.is_numeric():
        return column.cast(pl.Float64)
    if column.dtype != pl.String:
        return None
    text = column.str.strip_chars()
    present = text.fill_null("") != ""
    values = text.cast(pl.Float64, strict=False)
    if not present.any() or values.filter(present).null_count():
        return None
    return values


def binned(values: pl.Series, bins: int, edges: list[float] | None) -> list[str]:
    """A numeric column as ranges: quantile bins (ties merged) or explicit edges, whose open ends
    get a bin each (`<18`, `65+`); missing values are `(missing)`."""
    x = values.to_numpy()
    finite = x[np.isfinite(x)]
    if edges:
        cuts = np.unique(np.asarray(edges, dtype=np.float64))
        inner = [f"{lo:g} to <{hi:g}" for lo, hi in itertools.pairwise(cuts)]
        names = [f"<{cuts[0]:g}", *inner, f"{cuts[-1]:g}+"]
        index = np.searchsorted(cuts, x, side="right")
    else:
        if not len(finite):
            return ["(missing)"] * len(x)
        cuts = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)))
        if len(cuts) == 1:
            names, index = [f"{cuts[0]:g}"], np.zeros(len(x), dtype=np.int64)
        else:
            names = [f"{lo:g} to <{hi:g}" for lo, hi in itertools.pairwise(cuts[:-1])]
            names.append(f"{cuts[-2]:g} to {cuts[-1]:g}")  # the last bin holds the maximum
            index = np.clip(np.searchsorted(cuts, x, side="right") - 1, 0, len(names) - 1)
    return [names[i] if np.isfinite(v) else "(missing)" for i, v in zip(index, x, strict=True)]


def accuracy_gap(
    per_user: pl.DataFrame,
    labels: pl.DataFrame,
    metric: str,
    *,
    min_users: int = MIN_SEGMENT_USERS,
    resamples: int = 1000,
    seed: int = 0,
) -> dict | None:
    """The accuracy gap between user groups: the best segment's mean `metric` minus the worst's
    (the two chosen on the point estimates, among segments of at least `min_users` users), with a
    95% percentile interval from resampling users within each segment. None with fewer than two
    such segments."""
    joined = per_user.join(labels, on="user_idx", how="left").with_columns(pl.col("segment").fill_null("0 (cold)"))
    parts = {}
    for (segment,), part in joined.group_by("segment"):
        values = part[metric].drop_nans().drop_nulls().to_numpy().astype(np.float64)
        if len(values) >= min_users:
            parts[segment] = values
    if len(parts) < 2:
        return None
    means = {s: float(v.mean()) for s, v in parts.items()}
    best, worst = max(means, key=means.get), min(means, key=means.get)
    rng = np.random.default_rng(seed)

    def resampled(values: np.ndarray) -> np.ndarray:
        return values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)

    gaps = resampled(parts[best]) - resampled(parts[worst])
    low, high = np.quantile(gaps, [0.025, 0.975])
    return {
        "metric": metric,
        "best": best,
        "best_mean": means[best],
        "worst": worst,
        "worst_mean": means[worst],
        "gap": means[best] - means[worst],
        "ci_low": float(low),
        "ci_high": float(high),
        "segments": len(parts),
    }
