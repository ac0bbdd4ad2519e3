"""Segments of the simulated users, for segment effects (`[analysis] segments`): every simulated
user carries the segment of the logged user they were drawn from.

- activity: the logged user's interactions;
- tenure: days from their first logged event to the log's last;
- taste_breadth: the entropy (bits) of the popularity tiers (quartiles of item interactions) of
  what they consumed: 0 for a user who only takes hits or only niche items, 2 for an even spread;
- any column of the dataset's users.parquet.

Numeric ones are cut into `segment_bins` quantile bins over the logged users (or at
`segment_edges`), the way `evaluate --segment-by` cuts them; text columns keep their values; users
without one are `(missing)`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from persotool.errors import ConfigError
from persotool.kernels.metrics.segments import binned, numeric
from persotool.kernels.simulation.spec import AnalysisSpec
from persotool.kernels.simulation.world import SimulatedWorld
from persotool.stages.ingest.result import Dataset

DERIVED = ("activity", "tenure", "taste_breadth")


def labels(dataset: Path, world: SimulatedWorld, spec: AnalysisSpec) -> dict[str, np.ndarray]:
    """{segment dimension: (simulated users,) labels}."""
    if not spec.segments:
        return {}
    ds = Dataset(dataset)
    log = ds.interactions.select("user_idx", "item_idx", "timestamp")
    users = ds.users
    out = {}
    for by in spec.segments:
        if by in DERIVED:
            values = _derived(by, log)
        else:
            allowed = [c for c in users.columns if c not in ("user_idx", "user_id", "features")]
            if by not in allowed:
                raise ConfigError(
                    f"analysis.segments: cannot segment by {by!r}; use {', '.join(DERIVED)} or a users column "
                    f"({', '.join(allowed) or 'the dataset has none'})"
                )
            column = numeric(users[by])
            values = users.select("user_idx", value=column if column is not None else pl.col(by).cast(pl.String))
        column, edges = values["value"], spec.segment_edges.get(by)
        if edges and not column.dtype.is_numeric():
            raise ConfigError(f"analysis.segment_edges: {by!r} is not numeric; edges cut numbers")
        text = (
            binned(column.cast(pl.Float64), spec.segment_bins, edges)
            if column.dtype.is_numeric()
            else column.fill_null("(missing)").to_list()
        )
        lookup = np.full(int(ds.counts["n_users"]), "(missing)", dtype=object)
        lookup[values["user_idx"].to_numpy()] = np.asarray(text, dtype=object)
        out[by] = lookup[world.source_user]
    return out


def _derived(by: str, log: pl.DataFrame) -> pl.DataFrame:
    if by == "activity":
        return log.group_by("user_idx").agg(value=pl.len().cast(pl.Float64))
    if by == "tenure":
        if log["timestamp"].null_count() == len(log):
            raise ConfigError("analysis.segments: tenure needs event times, and this dataset has none")
        end = log["timestamp"].max()
        first = log.group_by("user_idx").agg(first=pl.col("timestamp").min())
        days = (pl.lit(end) - pl.col("first")).dt.total_seconds() / 86_400
        return first.select("user_idx", value=days.cast(pl.Float64))
    counts = log.group_by("item_idx").agg(n=pl.len())
    tiers = counts.with_columns(tier=(pl.col("n").rank("ordinal") * 4 / (len(counts) + 1)).floor().cast(pl.Int8))
    share = (
        log.join(tiers.select("item_idx", "tier"), on="item_idx")
        .group_by("user_idx", "tier")
        .agg(n=pl.len())
        .with_columns(p=pl.col("n") / pl.col("n").sum().over("user_idx"))
    )
    return share.group_by("user_idx").agg(value=-(pl.col("p") * pl.col("p").log(2)).sum().cast(pl.Float64))
