"""Raw interaction logs -> a canonical, versioned dataset directory.

The output directory holds `interactions.parquet` (dense int32 codes, UTC timestamps, sessions),
`users.parquet`, `items.parquet`, `rejects.parquet` and `manifest.json`. It is built in a temporary
directory and renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from persotool.config import AttributeSpec, IngestSpec
from persotool.data import artifacts
from persotool.data.parsing import UTC_DTYPE, by_distinct, clean_id, consent_exprs, id_expr, parse_time, value_exprs
from persotool.data.sources import (
    SUBSTITUTE,
    PreparedText,
    Source,
    discover,
    identify,
    prepare_text,
    read_lines,
)
from persotool.errors import ConfigError, DataError

ROLES = ("user", "item", "time", "event", "value", "consent")
REASON_TEXT = {
    "user_missing": "user id is missing",
    "item_missing": "item id is missing",
    "timestamp_missing": "timestamp is missing",
    "timestamp_unparseable": "timestamp cannot be parsed",
    "timestamp_out_of_range": "timestamp is outside 1900-01-01..2200-01-01",
    "value_unparseable": "value is not a finite number",
    "event_missing": "event is missing",
    "event_unknown": "event is not in the event-weight map",
    "consent_invalid": "consent is not a yes/no value",
}
INTERACTION_SCHEMA = {
    "user_idx": pl.Int32,
    "item_idx": pl.Int32,
    "user_id": pl.String,
    "item_id": pl.String,
    "timestamp": UTC_DTYPE,
    "event": pl.String,
    "value": pl.Float64,
    "weight": pl.Float64,
    "session_id": pl.Int64,
}
REJECT_SCHEMA = {"source": pl.String, "line": pl.Int64, "reason": pl.String, "detail": pl.String, "raw": pl.String}


@dataclass
class _Loaded:
    source: Source
    frame: pl.DataFrame  # role columns as read, plus __line
    prepared: PreparedText | None
    blank_lines: int


def _mapped_columns(spec: IngestSpec) -> dict[str, str]:
    mapping = spec.columns.model_dump()
    return {role: mapping[role] for role in ROLES if mapping.get(role)}


def _missing_column_error(source: Source, column: str, available: list[str], delimiter: str | None) -> DataError:
    shown = ", ".join(repr(c) for c in available[:12])
    hint = ""
    if delimiter is not None and len(available) == 1:
        from persotool.data.sources import sniff_delimiter

        guess = sniff_delimiter(available[0])
        if guess != delimiter:
            hint = f"; the delimiter looks like {guess!r}, not {delimiter!r} (use --delimiter)"
    return DataError(f"column {column!r} not found; the file has {shown}{hint}", where=str(source.path))


def _load_source(source: Source, spec: IngestSpec, workdir: Path) -> _Loaded:
    mapping = _mapped_columns(spec)
    where = str(source.path)
    if source.format == "parquet":
        source.sha256 = artifacts.file_sha256(source.path)
        try:
            names = list(pl.read_parquet_schema(source.path))
        except Exception as exc:  # polars raises several types for corrupt files
            raise DataError(f"is not a readable Parquet file ({_first_line(exc)})", where=where) from None
        for column in mapping.values():
            if column not in names:
                raise _missing_column_error(source, column, names, None)
        try:
            raw = pl.read_parquet(source.path, columns=sorted(set(mapping.values())))
        except Exception as exc:
            raise DataError(f"is not a readable Parquet file ({_first_line(exc)})", where=where) from None
        frame = raw.select(pl.col(col).alias(role) for role, col in mapping.items())
        frame = frame.with_row_index("__line", offset=1).with_columns(pl.col("__line").cast(pl.Int64))
        return _Loaded(source, frame, None, 0)

    src = spec.source
    prepared = prepare_text(
        source, workdir, delimiter=src.delimiter, header=src.header, columns=src.columns, quote=src.quote
    )
    if source.format == "jsonl":
        frame = _read_jsonl(source, prepared, mapping)
        return _Loaded(source, frame, prepared, len(prepared.blank_lines))

    names = prepared.header if src.header else list(src.columns or [])
    index_of: dict[str, int] = {}
    for column in mapping.values():
        if column not in names:
            raise _missing_column_error(source, column, names, prepared.original_delimiter)
        index_of[column] = names.index(column)
    wanted = sorted(set(index_of.values()))
    try:
        raw = pl.read_csv(
            prepared.path,
            has_header=src.header,
            separator=prepared.delimiter,
            quote_char=src.quote,
            infer_schema=False,
            columns=wanted,
            new_columns=[f"c{i}" for i in wanted],
            truncate_ragged_lines=False,
            raise_if_empty=True,
            row_index_name="__row",
        )
    except pl.exceptions.NoDataError:
        raise DataError("has no data rows", where=where) from None
    except pl.exceptions.PolarsError as exc:
        raise DataError(
            f"cannot be read as CSV ({_first_line(exc)}); check --delimiter and quoting", where=where
        ) from None
    header_lines = 1 if src.header else 0
    frame = raw.select(
        (pl.col("__row").cast(pl.Int64) + 1 + header_lines).alias("__line"),
        *(pl.col(f"c{index_of[col]}").alias(role) for role, col in mapping.items()),
    )
    # Blank lines come back as all-null rows: count them, do not reject them.
    if prepared.blank_lines:
        frame = frame.filter(~pl.col("__line").is_in(prepared.blank_lines))
    return _Loaded(source, frame, prepared, len(prepared.blank_lines))


def _read_jsonl(source: Source, prepared: PreparedText, mapping: dict[str, str]) -> pl.DataFrame:
    import json

    where = str(source.path)
    columns = sorted(set(mapping.values()))
    try:
        raw = pl.read_ndjson(prepared.path, schema=dict.fromkeys(columns, pl.String))
    except pl.exceptions.PolarsError as exc:
        # Find the offending line ourselves: polars does not say which one it was.
        with open(prepared.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(
                        f"is not valid JSON ({err.msg} at column {err.colno}); expected one JSON object per line",
                        where=f"{where}:{number}",
                    ) from None
                if not isinstance(obj, dict):
                    raise DataError(
                        "is not a JSON object; expected one object per line", where=f"{where}:{number}"
                    ) from None
        raise DataError(f"cannot be read as JSON Lines ({_first_line(exc)})", where=where) from None
    present = set()
    with open(prepared.path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                present = set(json.loads(line))
                break
    for column in columns:
        if column not in present and raw.get_column(column).null_count() == len(raw):
            raise _missing_column_error(source, column, sorted(present), None)
    blanks = np.array(prepared.blank_lines, dtype=np.int64)
    all_lines = np.arange(1, prepared.lines + 1, dtype=np.int64)
    data_lines = np.setdiff1d(all_lines, blanks) if len(blanks) else all_lines
    if len(data_lines) != len(raw):
        data_lines = np.arange(1, len(raw) + 1)
    frame = raw.select(pl.col(col).alias(role) for role, col in mapping.items())
    return frame.with_columns(pl.Series("__line", data_lines[: len(raw)]))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _parse(loaded: _Loaded, spec: IngestSpec, file_no: int) -> tuple[pl.DataFrame, str]:
    """Parse one file's role columns in one parallel pass; returns rows with `reason` (null when
    valid), the raw time and value text (for reject details), and the resolved time format."""
    frame = loaded.frame
    try:
        ts, time_reason, fmt = parse_time(frame["time"], spec.columns.time_format, spec.columns.timezone)
    except ConfigError as exc:
        raise ConfigError(exc.message, where=str(loaded.source.path)) from None
    frame = frame.with_columns(timestamp=ts, __time_reason=time_reason)
    user, item = id_expr(pl.col("user")), id_expr(pl.col("item"))
    exprs: dict[str, pl.Expr] = {
        "__file": pl.lit(file_no, dtype=pl.Int32),
        "__line": pl.col("__line"),
        "user_id": user,
        "item_id": item,
        "timestamp": pl.col("timestamp"),
    }
    reasons = [
        pl.when(user.is_null()).then(pl.lit("user_missing")),
        pl.when(item.is_null()).then(pl.lit("item_missing")),
        pl.col("__time_reason"),
    ]
    if "value" in frame.columns:
        exprs["value"], value_reason = value_exprs(pl.col("value"))
        reasons.append(value_reason)
    else:
        exprs["value"] = pl.lit(None, dtype=pl.Float64)
    if "event" in frame.columns:
        known = list(spec.events) if spec.events is not None else None

        def events(values: pl.Series) -> pl.DataFrame:
            event = id_expr(pl.col("e"))
            reason = pl.lit(None, dtype=pl.String)
            if known is not None:
                reason = (
                    pl.when(event.is_null())
                    .then(pl.lit("event_missing"))
                    .when(~event.is_in(known))
                    .then(pl.lit("event_unknown"))
                )
            return pl.DataFrame({"e": values}).select(__event=event, __event_reason=reason)

        frame = frame.with_columns(by_distinct(frame["event"], events))
        exprs["event"] = pl.col("__event")
        reasons.append(pl.col("__event_reason"))
    else:
        exprs["event"] = pl.lit("interaction")
    if "consent" in frame.columns:

        def consent(values: pl.Series) -> pl.DataFrame:
            flag, reason = consent_exprs(pl.col("c"))
            return pl.DataFrame({"c": values}).select(__consent=flag, __consent_reason=reason)

        frame = frame.with_columns(by_distinct(frame["consent"], consent))
        exprs["consent"] = pl.col("__consent")
        reasons.append(pl.col("__consent_reason"))
    exprs["reason"] = pl.coalesce(reasons)
    for role in ("time", "value"):
        if role in frame.columns:
            exprs[f"__raw_{role}"] = pl.col(role).cast(pl.String)
    return frame.lazy().select(**exprs).collect(), fmt


def sort_unique(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Sort by `keys` and drop exact duplicates over them.

    When the dense ranks of all keys fit in 63 bits together (they usually do: users, time points,
    items, event types, rating levels), they are packed into one integer, which sorts several times
    faster than a multi-column sort; otherwise it falls back to that.
    """
    packed = None
    bits_used = 0
    for key in reversed(keys):
        column = frame[key]
        if column.null_count() == len(column):
            continue
        rank = column.rank("dense").cast(pl.UInt64)  # 1-based; nulls stay null
        rank = rank.fill_null(0) if column.null_count() else rank - 1
        bits = max(int(rank.max()).bit_length(), 1)
        if bits_used + bits > 63:
            packed = None
            break
        packed = rank if packed is None else packed + rank * (1 << bits_used)
        bits_used += bits
    else:
        if packed is None:
            return frame.head(1)
        order = packed.arg_sort()
        ordered = packed.gather(order)
        keep = (ordered != ordered.shift(1)).fill_null(True)
        return frame.gather(order).filter(keep)
    ordered = frame.sort(keys, nulls_last=True)
    duplicate = pl.all_horizontal(pl.col(k).eq_missing(pl.col(k).shift(1)) for k in keys).fill_null(False)
    return ordered.filter(~duplicate)


def _pseudonymizer(spec: IngestSpec):
    key = os.environ.get(spec.pseudonym_key_env)
    if not key:
        raise ConfigError(
            f"--pseudonymize needs a secret key in the environment variable {spec.pseudonym_key_env} "
            "(it is never written anywhere)"
        )
    key_bytes = key.encode()

    def apply(ids: list[str]) -> list[str]:
        return [hmac.new(key_bytes, i.encode(), hashlib.sha256).hexdigest()[:32] for i in ids]

    return apply


def _vocabulary(ids: pl.Series, pseudonymize=None) -> tuple[pl.Series, pl.Series]:
    """Sorted unique raw ids (numerically when all are integers) and their public ids, same order."""
    unique = ids.unique()
    as_int = unique.cast(pl.Int64, strict=False)
    unique = unique.gather(as_int.arg_sort()) if as_int.null_count() == 0 else unique.sort()
    if pseudonymize is None:
        return unique, unique
    public = pl.Series(pseudonymize(unique.to_list()), dtype=pl.String)
    order = public.arg_sort()
    return unique.gather(order), public.gather(order)


def _codes(ids: pl.Series, vocab: pl.Series) -> pl.Series:
    return ids.cast(pl.Enum(vocab.to_list())).to_physical().cast(pl.Int32)


def _reject_details(rejects: pl.DataFrame, fmt_by_file: dict[int, str]) -> pl.Series:
    time_fmt = pl.col("__file").replace_strict(fmt_by_file, default="auto", return_dtype=pl.String)
    has_raw_time = "__raw_time" in rejects.columns
    has_raw_value = "__raw_value" in rejects.columns
    detail = pl.col("reason").replace_strict(REASON_TEXT, default=pl.col("reason"), return_dtype=pl.String)
    exprs = detail
    if has_raw_time:
        exprs = (
            pl.when(pl.col("reason").is_in(["timestamp_unparseable", "timestamp_out_of_range"]))
            .then(
                pl.format(
                    "timestamp {} cannot be read as {} (expected {})",
                    pl.format("'{}'", pl.col("__raw_time").str.slice(0, 60)),
                    time_fmt,
                    pl.lit("a real date-time between 1900 and 2200"),
                )
            )
            .otherwise(exprs)
        )
    if has_raw_value:
        exprs = (
            pl.when(pl.col("reason") == "value_unparseable")
            .then(
                pl.format("value {} is not a finite number", pl.format("'{}'", pl.col("__raw_value").str.slice(0, 60)))
            )
            .otherwise(exprs)
        )
    return rejects.select(exprs.alias("detail")).to_series()


def _attach_raw(rejects: pl.DataFrame, loaded: list[_Loaded], spec: IngestSpec, pseudonymize) -> pl.Series:
    """The original text of each rejected line, or, when pseudonymizing, its mapped fields with the
    user id replaced, so that raw identifiers never reach an output."""
    if pseudonymize is not None:
        users = rejects["user_id"]
        mapped = pl.Series(
            [
                None if u is None else p
                for u, p in zip(users.to_list(), pseudonymize([u or "" for u in users.to_list()]), strict=True)
            ],
            dtype=pl.String,
        )
        parts = [mapped.fill_null(""), rejects["item_id"].fill_null("")]
        if "__raw_time" in rejects.columns:
            parts.append(rejects["__raw_time"].fill_null(""))
        return pl.DataFrame(parts).select(pl.concat_str(pl.all(), separator=",")).to_series()
    texts = [""] * len(rejects)
    files = rejects["__file"].to_numpy()
    lines = rejects["__line"].to_numpy()
    for file_no, item in enumerate(loaded):
        mask = np.flatnonzero(files == file_no)
        if not len(mask):
            continue
        if item.prepared is None:  # Parquet: show the mapped fields as JSON
            sub = item.frame.filter(pl.col("__line").is_in(lines[mask].tolist()))
            as_json = dict(
                zip(
                    sub["__line"].to_list(),
                    sub.drop("__line").select(pl.struct(pl.all()).struct.json_encode()).to_series().to_list(),
                    strict=True,
                )
            )
            for j in mask:
                texts[j] = as_json.get(int(lines[j]), "")
            continue
        found = read_lines(item.prepared.path, lines[mask].tolist())
        original = item.prepared.original_delimiter
        for j in mask:
            text = found.get(int(lines[j]), "")
            texts[j] = text.replace(SUBSTITUTE.decode(), original) if len(original) > 1 else text
    return pl.Series(texts, dtype=pl.String)


def _attributes(
    spec_attr: AttributeSpec, vocab_raw: pl.Series, vocab_public: pl.Series, kind: str, workdir: Path, pseudonymize
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Read a user/item attribute table, keep rows for known ids, build `features` tokens."""
    source = identify(Path(spec_attr.path))
    where = str(source.path)
    if source.format == "parquet":
        table = pl.read_parquet(source.path)
        source.sha256 = artifacts.file_sha256(source.path)
        table = table.with_columns(pl.all().cast(pl.String))
    else:
        prepared = prepare_text(
            source,
            workdir,
            delimiter=spec_attr.delimiter,
            header=spec_attr.header,
            columns=spec_attr.columns,
            quote='"',
        )
        if source.format == "jsonl":
            table = pl.read_ndjson(prepared.path).with_columns(pl.all().cast(pl.String))
        else:
            try:
                table = pl.read_csv(
                    prepared.path,
                    separator=prepared.delimiter,
                    infer_schema=False,
                    has_header=spec_attr.header,
                    new_columns=spec_attr.columns,
                )
            except pl.exceptions.PolarsError as exc:
                raise DataError(f"cannot be read as CSV ({_first_line(exc)})", where=where) from None
    for column in [spec_attr.key, *spec_attr.features]:
        if column not in table.columns:
            raise _missing_column_error(source, column, table.columns, None)
    table = table.with_columns(clean_id(table[spec_attr.key]).alias("__key")).filter(pl.col("__key").is_not_null())
    rows = len(table)
    table = table.unique("__key", keep="first", maintain_order=True)
    duplicates = rows - len(table)
    index = pl.DataFrame(
        {
            "__key": vocab_raw,
            f"{kind}_idx": pl.int_range(len(vocab_raw), eager=True, dtype=pl.Int32),
            f"{kind}_id": vocab_public,
        }
    )
    joined = index.join(table, on="__key", how="left")
    unknown = rows - duplicates - int(joined[spec_attr.key].is_not_null().sum())
    token_lists = []
    for column in spec_attr.features:
        values = pl.col(column)
        listed = values.str.split(spec_attr.separator) if spec_attr.separator else values.cast(pl.List(pl.String))
        token_lists.append(
            listed.list.eval(
                pl.concat_str(pl.lit(f"{column}="), pl.element().str.strip_chars()).filter(
                    pl.element().str.strip_chars() != ""
                )
            ).fill_null([])
        )
    features = pl.concat_list(token_lists) if token_lists else pl.lit([], dtype=pl.List(pl.String))
    drop = ["__key", spec_attr.key] if spec_attr.key != f"{kind}_id" else ["__key"]
    if pseudonymize is not None and kind == "user":
        drop = ["__key", spec_attr.key]  # the raw key column must not survive
    out = joined.with_columns(features=features).drop(drop)
    counts = {
        f"{kind}_attribute_rows": rows,
        f"{kind}_attribute_duplicates": duplicates,
        f"{kind}_attribute_unknown_ids": max(unknown, 0),
        f"{kind}s_without_attributes": int(joined[spec_attr.key].is_null().sum())
        if spec_attr.key in joined.columns
        else 0,
    }
    return out, counts


def ingest(spec: IngestSpec, sources: list[str], out: Path, *, force: bool = False) -> dict[str, Any]:
    """Ingest raw logs into `out`; return the manifest (also written as `out/manifest.json`)."""
    started = time.perf_counter()
    paths = discover(sources)
    pseudonymize = _pseudonymizer(spec) if spec.pseudonymize else None
    with artifacts.atomic_directory(out, force=force) as tmp:
        work = tmp / ".work"
        work.mkdir()
        files = [identify(p, spec.source.format) for p in paths]
        loaded = [_load_source(s, spec, work) for s in files]
        parsed_parts, fmt_by_file = [], {}
        for number, item in enumerate(loaded):
            part, fmt = _parse(item, spec, number)
            parsed_parts.append(part)
            fmt_by_file[number] = fmt
        frame = pl.concat(parsed_parts, how="diagonal_relaxed")
        del parsed_parts
        rows_read = len(frame)
        blank_lines = sum(item.blank_lines for item in loaded)
        counts: dict[str, Any] = {"rows_read": rows_read, "blank_lines": blank_lines}

        # Consent: a user who opted out anywhere is removed everywhere, rejects included.
        opted_out_users = opted_out_rows = 0
        if "consent" in frame.columns:
            out_users = frame.filter(pl.col("consent").eq(False) & pl.col("user_id").is_not_null())["user_id"].unique()
            opted_out_users = len(out_users)
            gone = pl.col("user_id").is_in(out_users.implode()).fill_null(False)
            opted_out_rows = int(frame.select(gone.sum()).item())
            frame = frame.filter(~gone)
        counts |= {"opted_out_users": opted_out_users, "opted_out_rows": opted_out_rows}

        rejects = frame.filter(pl.col("reason").is_not_null())
        frame = frame.select(pl.exclude("^__raw_.*$", "reason", "__line", "__file")).filter(frame["reason"].is_null())
        by_reason = dict(sorted(Counter(rejects["reason"].to_list()).items()))
        counts |= {"rows_rejected": len(rejects), "rejected_by_reason": by_reason}
        considered = rows_read - opted_out_rows
        if len(rejects) and (len(frame) == 0 or len(rejects) > spec.max_reject_rate * considered):
            first = rejects.sort(["__file", "__line"]).row(0, named=True)
            detail = _reject_details(rejects.sort(["__file", "__line"]).head(1), fmt_by_file)[0]
            share = len(rejects) / max(considered, 1)
            raise DataError(
                f"{detail}; {len(rejects)} of {considered} rows rejected ({share:.0%}), more than "
                f"--max-reject-rate {spec.max_reject_rate:g} allows: {_summary(by_reason)}",
                where=f"{files[first['__file']].path}:{first['__line']}",
            )
        if len(frame) == 0:
            raise DataError("no rows left after removing opted-out users", where=str(files[0].path))

        user_vocab, user_public = _vocabulary(frame["user_id"], pseudonymize)
        item_vocab, item_public = _vocabulary(frame["item_id"])
        events = frame["event"].unique().drop_nulls().sort()
        # Sort numeric codes only; the id and event strings are gathered back from the vocabularies
        # afterwards, which is much cheaper than moving strings through a sort.
        frame = frame.select(
            user_idx=_codes(frame["user_id"], user_vocab),
            item_idx=_codes(frame["item_id"], item_vocab),
            timestamp=pl.col("timestamp"),
            event_code=pl.col("event").cast(pl.Enum(events.to_list())).to_physical(),
            value=pl.col("value"),
        )
        before = len(frame)
        frame = sort_unique(frame, ["user_idx", "timestamp", "item_idx", "event_code", "value"])
        counts["duplicates_removed"] = before - len(frame)

        event_weights = spec.events or {}
        code_weights = pl.Series([float(event_weights.get(e, 1.0)) for e in events.to_list()], dtype=pl.Float64)
        weight = pl.lit(code_weights).gather(pl.col("event_code"))
        below = pl.lit(False)
        if spec.relevance_threshold is not None:
            below = pl.col("value").lt(spec.relevance_threshold).fill_null(False)
            weight = pl.when(below).then(0.0).otherwise(weight)
        gap_us = int(spec.session_gap_minutes * 60 * 1_000_000)
        new_session = (pl.col("user_idx") != pl.col("user_idx").shift(1)).fill_null(True) | (
            pl.col("timestamp").dt.epoch("us").diff().fill_null(0) > gap_us
        )
        frame = frame.with_columns(
            user_id=pl.lit(user_public).gather(pl.col("user_idx")),
            item_id=pl.lit(item_public).gather(pl.col("item_idx")),
            event=pl.lit(events).gather(pl.col("event_code")),
            weight=weight,
            session_id=new_session.cast(pl.Int64).cum_sum() - 1,
            __below=below,
        )
        counts["below_threshold"] = int(frame["__below"].sum())
        interactions = frame.select(pl.col(name).cast(dtype) for name, dtype in INTERACTION_SCHEMA.items())
        del frame
        interactions.write_parquet(tmp / "interactions.parquet", statistics=True)

        users = (
            interactions.group_by("user_idx")
            .agg(
                n_interactions=pl.len(),
                n_sessions=pl.col("session_id").n_unique(),
                first_seen=pl.col("timestamp").min(),
                last_seen=pl.col("timestamp").max(),
            )
            .sort("user_idx")
            .with_columns(user_id=user_public)
        )
        items = (
            interactions.group_by("item_idx")
            .agg(
                n_interactions=pl.len(),
                n_users=pl.col("user_idx").n_unique(),
            )
            .sort("item_idx")
            .with_columns(item_id=item_public)
        )
        attribute_sources = []
        if spec.users is not None:
            table, extra = _attributes(spec.users, user_vocab, user_public, "user", work, pseudonymize)
            users = users.join(table.drop("user_id"), on="user_idx", how="left")
            counts |= extra
            attribute_sources.append(("users", spec.users.path))
        if spec.items is not None:
            table, extra = _attributes(spec.items, item_vocab, item_public, "item", work, None)
            items = items.join(table.drop("item_id"), on="item_idx", how="left")
            counts |= extra
            attribute_sources.append(("items", spec.items.path))
        users = users.select("user_idx", "user_id", pl.exclude("user_idx", "user_id"))
        items = items.select("item_idx", "item_id", pl.exclude("item_idx", "item_id"))
        users.write_parquet(tmp / "users.parquet")
        items.write_parquet(tmp / "items.parquet")

        rejects = rejects.sort(["__file", "__line"])
        reject_table = pl.DataFrame(
            {
                "source": pl.Series([str(files[i].path) for i in rejects["__file"].to_list()], dtype=pl.String),
                "line": rejects["__line"].cast(pl.Int64),
                "reason": rejects["reason"],
                "detail": _reject_details(rejects, fmt_by_file) if len(rejects) else pl.Series([], dtype=pl.String),
                "raw": _attach_raw(rejects, loaded, spec, pseudonymize)
                if len(rejects)
                else pl.Series([], dtype=pl.String),
            },
            schema=REJECT_SCHEMA,
        )
        reject_table.write_parquet(tmp / "rejects.parquet")

        import shutil

        shutil.rmtree(work)
        tmin, tmax = interactions["timestamp"].min(), interactions["timestamp"].max()
        n_users, n_items = len(user_vocab), len(item_vocab)
        counts |= {
            "rows_kept": len(interactions),
            "n_users": n_users,
            "n_items": n_items,
            "n_sessions": int(interactions["session_id"].max()) + 1,
            "density": len(interactions) / (n_users * n_items),
        }
        file_digests = {
            name: artifacts.file_sha256(tmp / name)
            for name in ("interactions.parquet", "users.parquet", "items.parquet", "rejects.parquet")
        }
        config = spec.model_dump(mode="json")
        manifest = artifacts.new_manifest(
            "dataset",
            name=Path(out).name,
            dataset_digest=artifacts.directory_digest(file_digests),
            config=config,
            config_hash=artifacts.config_hash(config),
            time_format_detected={str(files[k].path): v for k, v in fmt_by_file.items()},
            sources=[
                {
                    "path": str(s.path),
                    "format": s.format,
                    "compression": s.compression,
                    "bytes": s.size,
                    "sha256": s.sha256,
                }
                for s in files
            ]
            + [
                {"path": str(p), "role": role, "sha256": artifacts.file_sha256(Path(p))}
                for role, p in attribute_sources
            ],
            counts=counts,
            time_min=tmin.isoformat() if tmin else None,
            time_max=tmax.isoformat() if tmax else None,
            files=file_digests,
            seconds=round(time.perf_counter() - started, 3),
        )
        artifacts.write_json_atomic(tmp / artifacts.MANIFEST, manifest)
    return manifest


def _summary(by_reason: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(by_reason.items(), key=lambda kv: -kv[1]))


def summary(manifest: dict[str, Any], out: Path) -> dict[str, Any]:
    """The flat summary `ingest --json` prints."""
    counts = manifest["counts"]
    keys = (
        "rows_read",
        "rows_kept",
        "rows_rejected",
        "rejected_by_reason",
        "duplicates_removed",
        "opted_out_users",
        "opted_out_rows",
        "below_threshold",
        "blank_lines",
        "n_users",
        "n_items",
        "n_sessions",
    )
    return {
        **{k: counts[k] for k in keys},
        "time_min": manifest["time_min"],
        "time_max": manifest["time_max"],
        "dataset_digest": manifest["dataset_digest"],
        "seconds": manifest["seconds"],
        "output": str(out),
    }
