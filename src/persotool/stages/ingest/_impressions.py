"""Ingest, impression logs: one row per shown item, with its reward, position and (when the log has
it) the logging policy's propensity, for off-policy evaluation.

Unlike an interaction log, every row is kept in log order, identical rows included (two identical
impressions are two impressions), and there need be no user id. Items get dense codes in the
order of their raw ids sorted ascending (numeric ids numerically), the order of an `action_dist`
array's item axis; positions become 0-based ranks of the raw positions. Context columns (names or
glob patterns) are kept as features: numeric where every present value is a number, text
otherwise. Slates are identified by the slate column, or else by identical timestamp and context;
the manifest says which, or that none could be.

The output directory holds `impressions.parquet`, `items.parquet`, `rejects.parquet` and the
manifest (`counts.layout = "impressions"`)."""

from __future__ import annotations

import fnmatch
import time
from pathlib import Path
from typing import Any

import polars as pl

from persotool.errors import DataError
from persotool.kernels import storage as artifacts
from persotool.stages.ingest._encode import _sorted_ids
from persotool.stages.ingest.config import IngestConfig
from persotool.stages.ingest.parsing import id_expr, parse_time
from persotool.stages.ingest.sources import discover, identify

REASONS = {
    "item_missing": "item id is missing",
    "user_missing": "user id is missing",
    "timestamp_missing": "timestamp is missing",
    "timestamp_unparseable": "timestamp cannot be parsed",
    "timestamp_out_of_range": "timestamp is outside 1900-01-01..2200-01-01",
    "reward_invalid": "reward is not a finite number",
    "position_invalid": "position is not a whole number",
    "propensity_invalid": "propensity is not a probability in (0, 1]",
}


def _read(path: Path, spec: IngestConfig) -> pl.DataFrame:
    """Every column of one file, as text (parsing is ours, so a bad cell rejects a row, not the file)."""
    source = identify(path, spec.source.format)
    try:
        if source.format in ("parquet", "jsonl"):
            if source.format == "parquet":
                frame = pl.read_parquet(path)
            else:
                frame = pl.read_ndjson(path, infer_schema_length=None)
            frame = _explode_slates(frame, spec, path)
            return frame.with_columns(pl.all().exclude("__slate_row", "__slate_index").cast(pl.String))
        delimiter = spec.source.delimiter or ("\t" if path.suffix in (".tsv", ".tab") else ",")
        if len(delimiter) != 1:
            raise DataError(f"impression logs take a one-character delimiter, not {delimiter!r}", where=str(path))
        return pl.read_csv(
            path,
            separator=delimiter,
            has_header=spec.source.header,
            new_columns=spec.source.columns,
            infer_schema=False,
            quote_char=spec.source.quote,
        )
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read it as {source.format} ({str(exc).splitlines()[0]})", where=str(path)) from None


def _explode_slates(frame: pl.DataFrame, spec: IngestConfig, path: Path) -> pl.DataFrame:
    """A row whose item column is a list is one slate: one impression per list entry, the reward,
    propensity and position columns exploded alongside when they are lists too; the entry's index
    is its position unless a position column says otherwise, and the row is its slate."""
    cols = spec.columns
    if cols.item not in frame.columns or not isinstance(frame.schema[cols.item], pl.List):
        return frame
    listed = [
        c
        for c in (cols.item, cols.reward, cols.propensity, cols.position)
        if c and isinstance(frame.schema.get(c), pl.List)
    ]
    for role, column in (("reward", cols.reward), ("propensity", cols.propensity)):
        if column and column in frame.columns and column not in listed:
            raise DataError(
                f"the items of a slate are a list in {cols.item!r}, but the {role} column {column!r} is not: give one "
                f"{role} per shown item, in a list of the same length",
                where=str(path),
            )
    lengths = frame.select([pl.col(c).list.len().alias(c) for c in listed])
    unequal = lengths.select(pl.any_horizontal([pl.col(c) != pl.col(listed[0]) for c in listed[1:]] or [pl.lit(False)]))
    bad = unequal.to_series().arg_true()
    if len(bad):
        raise DataError(
            f"row {int(bad[0]) + 1}: the list columns {', '.join(repr(c) for c in listed)} have different lengths "
            "(a slate's items, rewards and propensities must line up)",
            where=str(path),
        )
    frame = frame.with_columns(__slate_row=pl.int_range(0, len(frame), dtype=pl.Int64)).explode(listed)
    return frame.with_columns(__slate_index=pl.int_range(0, pl.len(), dtype=pl.Int64).over("__slate_row"))


def _context_columns(patterns: list[str], available: list[str], where: str) -> list[str]:
    chosen: list[str] = []
    for pattern in patterns:
        hits = [c for c in available if fnmatch.fnmatchcase(c, pattern)]
        if not hits:
            shown = ", ".join(repr(c) for c in available[:12])
            raise DataError(f"context column {pattern!r} matches no column; the file has {shown}", where=where)
        chosen += [c for c in hits if c not in chosen]
    return chosen


def _numeric(column: pl.Series) -> pl.Series:
    """A context column as Float64 when every present value is a finite number, else as text."""
    text = column.str.strip_chars()
    number = text.cast(pl.Float64, strict=False)
    present = text.is_not_null() & (text != "")
    if bool((present & (number.is_null() | ~number.is_finite())).any()):
        return column
    return number


def ingest_impressions(spec: IngestConfig, sources: list[str], out: Path, *, force: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    cols = spec.columns
    paths, hidden = discover(sources, spec.source.format)
    inputs = [*paths, *(Path(s) for s in sources if Path(s).is_dir())]
    artifacts.check_output(out, force=force, inputs=inputs)
    frames = []
    for number, path in enumerate(paths):
        frame = _read(path, spec)
        mapped = [c for c in (cols.user, cols.item, cols.time, cols.reward, cols.position, cols.propensity, cols.slate)]
        for column in (c for c in mapped if c):
            if column not in frame.columns:
                shown = ", ".join(repr(c) for c in frame.columns[:12])
                raise DataError(f"column {column!r} not found; the file has {shown}", where=str(path))
        if "__slate_row" in frame.columns:  # a slate per row: rows are slates, entries positions
            frame = frame.with_columns(
                __line=pl.col("__slate_row") + 1,
                __slate=pl.format("{}:{}", pl.lit(number), pl.col("__slate_row")),
                __position=pl.col("__slate_index").cast(pl.String),
            ).drop("__slate_row", "__slate_index")
            frames.append(frame.with_columns(__file=pl.lit(number)))
            continue
        frames.append(frame.with_columns(__file=pl.lit(number), __line=pl.int_range(2, len(frame) + 2)))
    if not any(len(f) for f in frames):
        raise DataError("has no data rows", where=str(paths[0]))
    raw = pl.concat(frames, how="diagonal_relaxed")
    if "__slate" in raw.columns:  # slates as lists: their rows are the slates, list indices the positions
        cols = cols.model_copy(update={"slate": cols.slate or "__slate", "position": cols.position or "__position"})
    parse_spec = spec.model_copy(update={"columns": cols})
    context = _context_columns(cols.context, frames[0].columns, str(paths[0]))
    parsed, reason = _parse(raw, parse_spec)
    kept = reason.is_null()
    rejects = _rejects(raw, reason, paths)
    n_rejected = len(rejects)
    if n_rejected > spec.max_reject_rate * len(raw):
        worst = rejects.group_by("reason").len().sort("len", descending=True)["reason"][0]
        first = rejects.filter(pl.col("reason") == worst).row(0, named=True)
        raise DataError(
            f"{n_rejected:,} of {len(raw):,} rows ({n_rejected / len(raw):.1%}) are rejected, more than "
            f"max_reject_rate {spec.max_reject_rate:.0%}; the most common reason: {REASONS[worst]} (first at "
            f"{first['source']} line {first['line']})"
        )
    rows = parsed.filter(kept)
    features = raw.filter(kept).select([_numeric(raw.filter(kept)[c]).alias(c) for c in context]) if context else None
    if rows.is_empty():
        raise DataError("every row was rejected", where=str(paths[0]))
    table, items, positions, slates, slate_rule = _encode(rows, features, context, cols)
    counts: dict[str, Any] = {
        "layout": "impressions",
        "rows_read": len(raw),
        "rows_kept": len(table),
        "rows_rejected": n_rejected,
        "rejected_by_reason": dict(sorted(rejects.group_by("reason").len().iter_rows())),
        "duplicates_removed": 0,
        "opted_out_users": 0,
        "opted_out_rows": 0,
        "below_threshold": 0,
        "blank_lines": 0,
        "n_users": int(table["user_id"].n_unique()) if cols.user else 0,
        "n_items": len(items),
        "n_sessions": 0,
        "n_positions": len(positions),
        "n_slates": slates,
        "slates_from": slate_rule,
        "reward_mean": float(table["reward"].mean()),
        "binary_reward": bool(table["reward"].is_in([0.0, 1.0]).all()),
        "has_propensity": cols.propensity is not None,
        "context_columns": len(context),
        "files_read": len(paths),
        "files_empty": 0,
        "files_hidden_skipped": len(hidden),
    }
    with artifacts.atomic_directory(out, force=force, inputs=inputs) as tmp:
        table.write_parquet(tmp / "impressions.parquet")
        items.write_parquet(tmp / "items.parquet")
        rejects.write_parquet(tmp / "rejects.parquet")
        files = {
            name: artifacts.file_sha256(tmp / name)
            for name in ("impressions.parquet", "items.parquet", "rejects.parquet")
        }
        config = spec.model_dump(mode="json")
        stamps = table["timestamp"] if cols.time else None
        manifest = artifacts.new_manifest(
            "dataset",
            1,
            name=Path(out).name,
            dataset_digest=artifacts.directory_digest(files),
            config=config,
            config_hash=artifacts.config_hash(config),
            sources=[{"path": str(p), "bytes": p.stat().st_size, "sha256": artifacts.file_sha256(p)} for p in paths],
            counts=counts,
            time_min=stamps.min().isoformat() if stamps is not None else None,
            time_max=stamps.max().isoformat() if stamps is not None else None,
            files=files,
            positions={str(raw_position): code for code, raw_position in enumerate(positions)},
            context=context,
            item_order="raw item ids sorted ascending (numeric ids numerically): item_idx is the action_dist item axis",
            seconds=round(time.perf_counter() - started, 3),
        )
        artifacts.write_json_atomic(tmp / artifacts.MANIFEST, manifest)
    return manifest


def _parse(raw: pl.DataFrame, spec: IngestConfig) -> tuple[pl.DataFrame, pl.Series]:
    """The mapped columns parsed, and each row's first reason to be rejected (null: kept)."""
    cols = spec.columns
    out = {"row": pl.int_range(0, len(raw), dtype=pl.Int64, eager=True)}
    checks: list[tuple[str, pl.Series]] = []
    item = raw.select(id_expr(pl.col(cols.item))).to_series()
    out["item_id"] = item
    checks.append(("item_missing", item.is_null()))
    if cols.user:
        user = raw.select(id_expr(pl.col(cols.user))).to_series()
        out["user_id"] = user
        checks.append(("user_missing", user.is_null()))
    if cols.time:
        ts, why, _ = parse_time(raw[cols.time], cols.time_format, cols.timezone)
        out["timestamp"] = ts
        for name in ("timestamp_missing", "timestamp_unparseable", "timestamp_out_of_range"):
            checks.append((name, (why == name).fill_null(False)))
    reward = raw[cols.reward].str.strip_chars().cast(pl.Float64, strict=False)
    out["reward"] = reward
    checks.append(("reward_invalid", (reward.is_null() | ~reward.is_finite()).fill_null(True)))
    if cols.position:
        number = raw[cols.position].str.strip_chars().cast(pl.Float64, strict=False)
        whole = number.is_not_null() & number.is_finite() & (number == number.floor())
        out["position_raw"] = number.cast(pl.Int64, strict=False)
        checks.append(("position_invalid", ~whole.fill_null(False)))
    if cols.propensity:
        p = raw[cols.propensity].str.strip_chars().cast(pl.Float64, strict=False)
        out["propensity"] = p
        checks.append(("propensity_invalid", ~(p.is_not_null() & (p > 0) & (p <= 1)).fill_null(False)))
    if cols.slate:
        out["slate_raw"] = raw.select(id_expr(pl.col(cols.slate))).to_series()
    reason = pl.Series("reason", [None] * len(raw), dtype=pl.String)
    for name, bad in reversed(checks):  # the first check that fails names the row's reason
        reason = pl.select(pl.when(pl.lit(bad)).then(pl.lit(name)).otherwise(pl.lit(reason))).to_series()
    return pl.DataFrame(out), reason.alias("reason")


def _rejects(raw: pl.DataFrame, reason: pl.Series, paths: list[Path]) -> pl.DataFrame:
    bad = reason.is_not_null()
    names = pl.Series([str(p) for p in paths], dtype=pl.String)
    picked = raw.filter(bad)
    return pl.DataFrame(
        {
            "source": names.gather(picked["__file"]) if len(picked) else pl.Series([], dtype=pl.String),
            "line": picked["__line"].cast(pl.Int64),
            "reason": reason.filter(bad),
            "detail": reason.filter(bad).replace_strict(REASONS, return_dtype=pl.String),
            "raw": pl.Series([None] * len(picked), dtype=pl.String),
        }
    )


def _encode(rows: pl.DataFrame, features, context: list[str], cols):
    ids = _sorted_ids(rows["item_id"].unique())
    code = pl.DataFrame({"item_id": ids, "item_idx": pl.int_range(0, len(ids), dtype=pl.Int32, eager=True)})
    table = rows.join(code, on="item_id", how="left", maintain_order="left")
    if cols.position:
        positions = sorted(table["position_raw"].unique().to_list())
        lookup = pl.DataFrame({"position_raw": positions, "position": list(range(len(positions)))})
        table = table.join(lookup.cast({"position": pl.Int16}), on="position_raw", how="left", maintain_order="left")
    else:
        positions = [0]
        table = table.with_columns(position=pl.lit(0, dtype=pl.Int16))
    if features is not None:
        table = table.hstack(features)
    slates, rule = 0, "none: slate estimators are skipped"
    if cols.slate:
        table = table.with_columns(slate=pl.col("slate_raw").rank("dense").cast(pl.Int64) - 1).drop("slate_raw")
        slates = int(table["slate"].n_unique())
        rule = "one slate per row (list columns)" if cols.slate == "__slate" else f"the slate column {cols.slate!r}"
    elif cols.time and context:
        keys = ["timestamp", *context]
        table = table.with_columns(slate=pl.struct(keys).rank("dense").cast(pl.Int64) - 1)
        slates, rule = int(table["slate"].n_unique()), "identical timestamp and context"
    order = ["row", "item_idx", "item_id", "position"]
    order += [
        c for c in ("position_raw", "reward", "propensity", "slate", "timestamp", "user_id") if c in table.columns
    ]
    table = table.select(order + context)
    items = (
        table.group_by("item_idx", "item_id")
        .agg(impressions=pl.len(), reward_sum=pl.col("reward").sum())
        .sort("item_idx")
        .cast({"impressions": pl.Int64})
    )
    return table, items, positions, slates, rule
