"""Leakage-aware train/validation/test splits of a dataset.

Strategies: a global temporal cutoff (a date, or a fraction of the time range), the last N
interactions of each user, a random fraction of each user's interactions, or a global random
fraction. k-core filtering comes first; the validation set is cut from the training part the same
way as the test set. The manifest reports leakage (test interactions older than the same user's
last training interaction) and cold-start users and items.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from persotool.errors import ConfigError, DataError
from persotool.kernels import storage as artifacts
from persotool.stages.ingest.result import Dataset
from persotool.stages.split.config import SplitConfig
from persotool.stages.split.result import Split

TRAIN_COLUMNS = ["user_idx", "item_idx", "timestamp", "weight", "value"]


def _cutoff(text: str, tmin: datetime, tmax: datetime, what: str) -> datetime:
    try:
        fraction = float(text)
    except ValueError:
        fraction = None
    if fraction is not None:
        if not 0 < fraction < 1:
            raise ConfigError(f"{what} {text!r}: a fraction of the time range must be between 0 and 1")
        return tmin + (tmax - tmin) * fraction
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{what} {text!r}: expected an ISO date-time (2016-01-01) or a fraction (0.8)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tmin.tzinfo)
    return moment


def k_core(frame: pl.DataFrame, min_user: int, min_item: int) -> tuple[pl.DataFrame, int]:
    """Drop users and items with too few interactions, repeatedly, until none is left to drop."""
    rounds = 0
    while min_user or min_item:
        rounds += 1
        before = len(frame)
        if min_user:
            frame = frame.filter(pl.len().over("user_idx") >= min_user)
        if min_item:
            frame = frame.filter(pl.len().over("item_idx") >= min_item)
        if len(frame) == before or rounds >= 100:
            break
    return frame, rounds


def _random_keys(frame: pl.DataFrame, seed: int, salt: int) -> pl.Series:
    rng = np.random.default_rng(np.random.SeedSequence([seed, salt]))
    return pl.Series(rng.random(len(frame)))


def _cut(frame: pl.DataFrame, cfg: SplitConfig, *, stage: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split `frame` into (kept, held_out) with the configured strategy; `stage` is test or valid."""
    test = stage == "test"
    if cfg.strategy == "temporal":
        tmin, tmax = frame["timestamp"].min(), frame["timestamp"].max()
        moment = _cutoff(cfg.cutoff if test else cfg.valid_cutoff, tmin, tmax, "`cutoff`" if test else "`valid_cutoff`")
        held = pl.col("timestamp") >= moment
    elif cfg.strategy == "leave-last":
        # newest first within each user; ties broken by item for determinism
        order = pl.struct(pl.col("timestamp"), pl.col("item_idx")).rank("ordinal", descending=True).over("user_idx")
        count = pl.len().over("user_idx")
        held = (order <= cfg.leave_last) & (count > cfg.leave_last)
    elif cfg.strategy == "user-random":
        fraction = cfg.test_fraction if test else cfg.valid_fraction
        keys = _random_keys(frame, cfg.seed, 1 if test else 2)
        frame = frame.with_columns(__key=keys)
        rank = pl.col("__key").rank("ordinal").over("user_idx")
        share = (pl.len().over("user_idx") * fraction).round().cast(pl.Int64)
        held = (rank <= share) & (pl.len().over("user_idx") >= 2)
    else:
        fraction = cfg.test_fraction if test else cfg.valid_fraction
        held = _random_keys(frame, cfg.seed, 3 if test else 4) < fraction
    marked = frame.with_columns(__held=held)
    kept = marked.filter(~pl.col("__held")).drop("__held", "__key", strict=False)
    out = marked.filter(pl.col("__held")).drop("__held", "__key", strict=False)
    return kept, out


def _held_out_table(held: pl.DataFrame, train: pl.DataFrame, cfg: SplitConfig) -> tuple[pl.DataFrame, dict[str, int]]:
    """Distinct (user, item) pairs of a held-out part with a `relevant` flag; repeats of training
    pairs removed unless `keep_repeats`."""
    if cfg.relevance_threshold is not None:
        relevant = pl.col("value").ge(cfg.relevance_threshold).fill_null(False)
    else:
        relevant = pl.col("weight") > 0
    pairs = (
        held.with_columns(__relevant=relevant)
        .group_by("user_idx", "item_idx")
        .agg(
            timestamp=pl.col("timestamp").min(),
            value=pl.col("value").max(),
            weight=pl.col("weight").sum(),
            relevant=pl.col("__relevant").any(),
        )
        .sort("user_idx", "timestamp", "item_idx")
    )
    repeats = pairs.join(train.select("user_idx", "item_idx").unique(), on=["user_idx", "item_idx"], how="semi")
    counts = {"repeats": len(repeats)}
    if not cfg.keep_repeats:
        pairs = pairs.join(repeats.select("user_idx", "item_idx"), on=["user_idx", "item_idx"], how="anti")
    users = pairs["user_idx"].unique()
    cold = users.filter(~users.is_in(train["user_idx"].unique().implode()))
    counts["users_without_history"] = len(cold)
    if cfg.test_users == "seen" and len(cold):
        pairs = pairs.filter(~pl.col("user_idx").is_in(cold.implode()))
    counts["pairs"] = len(pairs)
    counts["relevant_pairs"] = int(pairs["relevant"].sum())
    return pairs, counts


def _leakage(held_rows: pl.DataFrame, train: pl.DataFrame, pairs: pl.DataFrame) -> dict[str, int]:
    last_train = train.group_by("user_idx").agg(last=pl.col("timestamp").max())
    joined = held_rows.join(last_train, on="user_idx", how="left")
    earlier = int(joined.select((pl.col("timestamp") < pl.col("last")).fill_null(False).sum()).item())
    train_users = train["user_idx"].unique()
    train_items = train["item_idx"].unique()
    return {
        "interactions_before_users_last_train": earlier,
        "cold_start_users": int((~pairs["user_idx"].unique().is_in(train_users.implode())).sum()),
        "cold_start_items": int((~pairs["item_idx"].unique().is_in(train_items.implode())).sum()),
        "pairs_with_cold_user": int((~pairs["user_idx"].is_in(train_users.implode())).sum()),
        "pairs_with_cold_item": int((~pairs["item_idx"].is_in(train_items.implode())).sum()),
    }


def run(dataset: Path, cfg: SplitConfig, out: Path, *, force: bool = False) -> Split:
    """Split a dataset directory into `out` (train/valid/test Parquet + manifest)."""
    started = time.perf_counter()
    artifacts.check_output(out, force=force, inputs=[dataset])
    dataset = Path(dataset)
    source = artifacts.read_artifact(dataset, "dataset")
    Dataset(dataset).require_interactions("split")
    if cfg.strategy in ("temporal", "leave-last") and source.get("time_min") is None:
        raise DataError(
            f"has no timestamps (it was ingested without a time column); strategy {cfg.strategy} needs event "
            "times: use --strategy random or user-random",
            where=str(dataset),
        )
    frame = pl.read_parquet(dataset / "interactions.parquet", columns=TRAIN_COLUMNS)
    rows_in = len(frame)
    frame, rounds = k_core(frame, cfg.min_user_interactions, cfg.min_item_interactions)
    if frame.is_empty():
        raise DataError(
            f"k-core filtering (users >= {cfg.min_user_interactions}, items >= {cfg.min_item_interactions}) "
            "left no interactions; lower min_user_interactions / min_item_interactions",
            where=str(dataset),
        )
    train, test_rows = _cut(frame, cfg, stage="test")
    valid_rows = None
    if cfg.valid:
        train, valid_rows = _cut(train, cfg, stage="valid")
    if train.is_empty() or test_rows.is_empty():
        part = "training" if train.is_empty() else "test"
        raise DataError(
            f"the {part} part is empty with strategy {cfg.strategy}; check `cutoff` or fractions", where=str(dataset)
        )
    test, test_counts = _held_out_table(test_rows, train, cfg)
    if cfg.test_users == "seen" and test.is_empty():
        raise DataError(
            f"no test user has training history with strategy {cfg.strategy} (`test_users` seen left none); "
            "move the cutoff later or use `strategy` leave-last",
            where=str(dataset),
        )
    leakage = {"test": _leakage(test_rows, train, test)}
    counts: dict[str, Any] = {
        "interactions_in": rows_in,
        "after_k_core": len(frame),
        "k_core_rounds": rounds,
        "train_interactions": len(train),
        "train_users": train["user_idx"].n_unique(),
        "train_items": train["item_idx"].n_unique(),
        "test_interactions": len(test_rows),
        "test_pairs": test_counts["pairs"],
        "test_relevant_pairs": test_counts["relevant_pairs"],
        "test_users": test["user_idx"].n_unique(),
        "test_repeats": test_counts["repeats"],
        "test_users_without_history": test_counts["users_without_history"],
    }
    valid = None
    if valid_rows is not None:
        valid, valid_counts = _held_out_table(valid_rows, train, cfg)
        leakage["valid"] = _leakage(valid_rows, train, valid)
        counts |= {
            "valid_interactions": len(valid_rows),
            "valid_pairs": valid_counts["pairs"],
            "valid_relevant_pairs": valid_counts["relevant_pairs"],
            "valid_users": valid["user_idx"].n_unique(),
        }
    parts = {"train": train.sort("user_idx", "timestamp"), "test": test, "valid": valid}
    _write(out, dataset, source, parts, cfg, counts, leakage, started, force=force)
    return Split(out)


def _write(out: Path, dataset: Path, source: dict, parts: dict, cfg: SplitConfig, counts, leakage, started, *, force):
    """The split directory: its parts as Parquet and a manifest whose digest covers the dataset's
    digest, the resolved config and the parts."""
    with artifacts.atomic_directory(out, force=force, inputs=[dataset]) as tmp:
        for name, table in parts.items():
            if table is not None:
                table.write_parquet(tmp / f"{name}.parquet")
        files = {p.name: artifacts.file_sha256(p) for p in sorted(tmp.glob("*.parquet"))}
        config = cfg.model_dump(mode="json")
        manifest = artifacts.new_manifest(
            Split.kind,
            Split.schema_version,
            name=Path(out).name,
            split_digest=artifacts.lineage_digest(files, parents={"dataset": source["dataset_digest"]}, config=config),
            dataset={
                "path": str(Path(dataset).resolve()),
                "digest": source["dataset_digest"],
                "name": source.get("name"),
            },
            n_users=source["counts"]["n_users"],
            n_items=source["counts"]["n_items"],
            config=config,
            config_hash=artifacts.config_hash(config),
            counts=counts,
            leakage=leakage,
            files=files,
            seconds=round(time.perf_counter() - started, 3),
        )
        artifacts.write_json_atomic(tmp / artifacts.MANIFEST, manifest)
