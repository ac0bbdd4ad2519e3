"""Summaries of a dataset directory: counts, sparsity, activity distributions, time range, rejects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from persotool.kernels import render
from persotool.kernels.render import View
from persotool.kernels.storage import read_artifact


def _distribution(series: pl.Series) -> dict[str, float]:
    return {
        "min": float(series.min()),
        "p25": float(series.quantile(0.25)),
        "median": float(series.median()),
        "mean": float(series.mean()),
        "p90": float(series.quantile(0.9)),
        "p99": float(series.quantile(0.99)),
        "max": float(series.max()),
    }


def describe(path: Path) -> dict[str, Any]:
    manifest = read_artifact(path, "dataset")
    interactions = pl.scan_parquet(path / "interactions.parquet")
    users = pl.read_parquet(path / "users.parquet")
    items = pl.read_parquet(path / "items.parquet")
    rejects = pl.read_parquet(path / "rejects.parquet", columns=["reason"])
    counts = manifest["counts"]
    events = interactions.group_by("event").agg(pl.len()).sort("len", descending=True).collect()
    session_len = interactions.group_by("session_id").agg(pl.len()).collect()["len"]
    top = items.sort("n_interactions", descending=True)
    share_top1 = float(top["n_interactions"].head(max(1, len(top) // 100)).sum() / top["n_interactions"].sum())
    n_users, n_items, n_rows = counts["n_users"], counts["n_items"], counts["rows_kept"]
    return {
        "path": str(path),
        "name": manifest.get("name"),
        "dataset_digest": manifest["dataset_digest"],
        "persotool_version": manifest["persotool_version"],
        "interactions": n_rows,
        "users": n_users,
        "items": n_items,
        "sessions": counts["n_sessions"],
        "density": n_rows / (n_users * n_items),
        "sparsity": 1 - n_rows / (n_users * n_items),
        "time_min": manifest["time_min"],
        "time_max": manifest["time_max"],
        "events": dict(zip(events["event"].to_list(), events["len"].to_list(), strict=True)),
        "interactions_per_user": _distribution(users["n_interactions"]),
        "interactions_per_item": _distribution(items["n_interactions"]),
        "events_per_session": _distribution(session_len),
        "top_1pct_items_share": share_top1,
        "items_with_features": int((items["features"].list.len() > 0).sum()) if "features" in items.columns else 0,
        "users_with_features": int((users["features"].list.len() > 0).sum()) if "features" in users.columns else 0,
        "rows_read": counts["rows_read"],
        "rows_rejected": counts["rows_rejected"],
        "rejected_by_reason": dict(rejects.group_by("reason").agg(pl.len()).sort("reason").iter_rows()),
        "duplicates_removed": counts["duplicates_removed"],
        "opted_out_users": counts["opted_out_users"],
    }


class DatasetInfo(View):
    """`describe` as a result a command or a notebook shows."""

    def __init__(self, path: Path) -> None:
        self.info = describe(Path(path))

    def to_dict(self) -> dict[str, Any]:
        return self.info

    def blocks(self) -> list[render.Block]:
        info = self.info
        pairs = [
            ("interactions", f"{info['interactions']:,}"),
            ("users", f"{info['users']:,}"),
            ("items", f"{info['items']:,}"),
            ("sessions", f"{info['sessions']:,}"),
            ("sparsity", f"{info['sparsity']:.4%}"),
            ("time range", f"{info['time_min']} .. {info['time_max']}" if info["time_min"] else "no timestamps"),
            ("top 1% items' share", f"{info['top_1pct_items_share']:.1%}"),
            ("items with features", f"{info['items_with_features']:,}"),
            ("rows read / rejected", f"{info['rows_read']:,} / {info['rows_rejected']:,}"),
            ("duplicates removed", f"{info['duplicates_removed']:,}"),
            ("opted-out users removed", f"{info['opted_out_users']:,}"),
        ]
        pairs += [(f"  rejected: {reason}", f"{count:,}") for reason, count in info["rejected_by_reason"].items()]
        stats = ("min", "p25", "median", "mean", "p90", "p99", "max")
        rows = [
            [label, *(f"{info[key][k]:,.1f}" for k in stats)]
            for label, key in [
                ("user", "interactions_per_user"),
                ("item", "interactions_per_item"),
                ("session", "events_per_session"),
            ]
        ]
        shown: list[render.Block] = [
            render.key_values(f"Dataset {info['name']} ({info['dataset_digest']})", pairs),
            render.Table("Activity", ["per", *stats], rows),
        ]
        if info["events"]:
            shown.append("Events: " + ", ".join(f"{k} {v:,}" for k, v in info["events"].items()))
        return shown
