"""A one-picture overview of a dataset (activity per user, events per day), for MLflow and people."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def plot_overview(dataset: Path, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    interactions = pl.scan_parquet(dataset / "interactions.parquet")
    per_user = pl.read_parquet(dataset / "users.parquet", columns=["n_interactions"])["n_interactions"]
    counted = (
        interactions.drop_nulls("timestamp").group_by(pl.col("timestamp").dt.date().alias("day")).agg(pl.len())
    ).collect()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    left.hist(per_user.to_numpy(), bins=50, log=True, color="#3b6ea5")
    left.set(title="Interactions per user", xlabel="interactions", ylabel="users (log)")
    if len(counted):
        # every calendar day, zero where nothing happened, so the line does not bridge gaps
        days = pl.DataFrame({"day": pl.date_range(counted["day"].min(), counted["day"].max(), "1d", eager=True)})
        per_day = days.join(counted, on="day", how="left").with_columns(pl.col("len").fill_null(0)).sort("day")
        right.plot(per_day["day"].to_list(), per_day["len"].to_numpy(), lw=0.8, color="#a53b3b")
    else:
        right.text(0.5, 0.5, "this log has no timestamps", ha="center", va="center", transform=right.transAxes)
    right.set(title="Interactions per day", xlabel="day", ylabel="interactions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
