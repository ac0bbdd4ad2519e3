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
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from persotool.config import AttributeSpec, IngestConfig
from persotool.data import artifacts
from persotool.data.parsing import UTC_DTYPE, clean_id, consent_exprs, id_expr, parse_time, value_exprs
from persotool.data.sources import (
    SUBSTITUTE,
    PreparedText,
    Source,
    discover,
    identify,
    inspect_head,
    prepare_text,
    read_lines,
    verify_bytes,
)
from persotool.errors import ConfigError, DataError

ROLES = ("user", "item", "time", "event", "value", "consent")
# Roles read as Categorical: their cleaning and parsing runs once per distinct value, and rows carry
# only integer codes through filtering, deduplication and sorting.
CODED_ROLES = ("user", "item", "event", "value", "consent")
REASON_TEXT = {  # in the order rows are checked; a row is rejected for the first that applies
    "field_nested": "a mapped field holds a JSON object or list, not a single value",
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
REASONS = list(REASON_TEXT)
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
MIN_KEY_BYTES = 16  # an HMAC key shorter than this can be found by trying keys
REJECT_SCHEMA = {"source": pl.String, "line": pl.Int64, "reason": pl.String, "detail": pl.String, "raw": pl.String}


class _Phases:
    """Wall-clock seconds per phase of a run, recorded in the manifest and as MLflow metrics."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + now - self._last, 3)
        self._last = now


@dataclass
class _Loaded:
    source: Source
    frame: pl.DataFrame | None  # role columns as read (dropped once parsed, except Parquet's: rejects quote it)
    prepared: PreparedText | None
    blank_lines: int
    first_line: int = 1  # the line of the first row
    lines: np.ndarray | None = None  # the line of each row, when rows are not consecutive lines
    verified: Future | None = None  # the byte check still running beside the work (see `_confirm`)

    def line_numbers(self, rows: np.ndarray) -> np.ndarray:
        """Line numbers of the rows at these positions."""
        return self.lines[rows] if self.lines is not None else rows.astype(np.int64) + self.first_line


def _mapped_columns(spec: IngestConfig) -> dict[str, str]:
    mapping = spec.columns.model_dump()
    return {role: mapping[role] for role in ROLES if mapping.get(role)}


def _missing_column_error(source: Source, column: str, available: list[str], delimiter: str | None) -> DataError:
    shown = ", ".join(repr(c) for c in available[:12])
    hint = ""
    if delimiter is not None and len(available) == 1:
        from persotool.data.sources import sniff_delimiter

        guess = sniff_delimiter(available[0])
        if guess != delimiter:
            hint = f"; the delimiter looks like {guess!r}, not {delimiter!r} (set `delimiter`)"
    return DataError(f"column {column!r} not found; the file has {shown}{hint}", where=str(source.path))


def _coded_types() -> dict[str, pl.DataType]:
    """One Categorical type per coded role, each with categories of its own: codes are dense per
    column, and the categories are exactly the column's distinct values."""
    return {role: pl.Categorical(pl.Categories.random()) for role in CODED_ROLES}


class _Recheck(Exception):
    """Files whose bytes failed the fast check after their rows were read: ingest again with
    these files taking the careful pass, which finds and reports the line (or cleans it up)."""

    def __init__(self, paths: set[Path]) -> None:
        super().__init__(", ".join(map(str, sorted(paths))))
        self.paths = paths


def _confirm(loaded: list[_Loaded]) -> None:
    """Wait for the byte checks still running; raise `_Recheck` if any failed. Called before
    anything is written (and, through `_byte_checks_first`, before any error is raised)."""
    failed = {item.source.path for item in loaded if item.verified is not None and not item.verified.result()}
    if failed:
        raise _Recheck(failed)


@contextmanager
def _byte_checks_first(loaded: list[_Loaded]):
    """An error raised about the rows waits for the byte checks of the files read so far: a file
    that fails its check is read again carefully, and what that finds is reported instead."""
    try:
        yield
    except (DataError, ConfigError):
        _confirm(loaded)
        raise


def _load_source(
    source: Source, spec: IngestConfig, workdir: Path, coded: dict[str, pl.DataType], careful: bool = False
) -> _Loaded:
    mapping = _mapped_columns(spec)
    where = str(source.path)
    if source.format == "parquet":
        source.sha256 = artifacts.file_sha256(source.path)
        try:
            names = list(pl.read_parquet_schema(source.path))
        except Exception as exc:  # polars raises several types for corrupt files
            raise DataError(f"is not a readable Parquet file ({_first_line(exc)})", where=where) from None
        schema = pl.read_parquet_schema(source.path)
        for column in mapping.values():
            if column not in names:
                raise _missing_column_error(source, column, names, None)
            dtype = schema[column]
            if dtype.is_nested() or dtype in (pl.Binary, pl.Object):
                raise DataError(
                    f"column {column!r} holds {dtype} values; expected single values (text, numbers or dates)",
                    where=where,
                )
        try:
            raw = pl.read_parquet(source.path, columns=sorted(set(mapping.values())))
        except Exception as exc:
            raise DataError(f"is not a readable Parquet file ({_first_line(exc)})", where=where) from None
        frame = raw.select(pl.col(col).alias(role) for role, col in mapping.items())
        return _Loaded(source, frame, None, 0)

    src = spec.source
    options = {"delimiter": src.delimiter, "header": src.header, "columns": src.columns, "quote": src.quote}
    tried = careful
    if source.format == "csv" and not careful:
        head = inspect_head(source, **options)
        if head is not None:
            # Parse while another thread checks the bytes at low priority. The work goes on with
            # the rows; the check must pass before anything is written (`_confirm`).
            pool = ThreadPoolExecutor(max_workers=1)
            verified = pool.submit(verify_bytes, source, head, header=src.header, quote=src.quote, background=True)
            pool.shutdown(wait=False)
            try:
                loaded = _read_csv(source, head, spec, mapping, coded)
            except DataError:
                loaded = None
            if loaded is not None:
                loaded.verified = verified
                return loaded
            verified.result()
            tried = True  # unreadable as it is: go straight to the aligned pass that finds the line
    prepared = prepare_text(source, workdir, **options, try_fast=not tried)
    if source.format == "jsonl":
        return _read_jsonl(source, prepared, mapping)
    return _read_csv(source, prepared, spec, mapping, coded)


def _read_csv(
    source: Source, prepared: PreparedText, spec: IngestConfig, mapping: dict[str, str], coded: dict[str, pl.DataType]
) -> _Loaded:
    """The mapped columns of a checked CSV file: ids, events, values and consent as Categorical,
    whole-number epoch timestamps as integers (text when some are not)."""
    src = spec.source
    where = str(source.path)
    names = prepared.header if src.header else list(src.columns or [])
    index_of: dict[str, int] = {}
    for column in mapping.values():
        if column not in names:
            raise _missing_column_error(source, column, names, prepared.original_delimiter)
        if names.count(column) > 1:
            places = ", ".join(str(i + 1) for i, name in enumerate(names) if name == column)
            raise DataError(
                f"column {column!r} appears {names.count(column)} times in the header (fields {places}); "
                "rename one in the file, or read it with `no_header` and `columns`",
                where=str(source.path),
            )
        index_of[column] = names.index(column)
    wanted = sorted(set(index_of.values()))
    time_column = f"c{index_of[mapping['time']]}"
    overrides = {
        f"c{index_of[col]}": coded[role]
        for role, col in mapping.items()
        if role in CODED_ROLES and f"c{index_of[col]}" != time_column
    }
    # Whole-number epoch times read straight as integers; the text read below handles the rest.
    attempts = [{time_column: pl.Int64}, {}] if spec.columns.time_format in ("s", "ms", "us") else [{}]
    for attempt, time_type in enumerate(attempts):
        try:
            raw = pl.read_csv(
                prepared.path,
                has_header=src.header,
                separator=prepared.delimiter,
                quote_char=src.quote,
                infer_schema=False,
                columns=wanted,
                # Names for every field (the unmapped ones too), so that extra, duplicate or empty
                # header names never matter; only the mapped fields are parsed.
                new_columns=[f"c{i}" for i in range(len(names))],
                truncate_ragged_lines=False,
                raise_if_empty=True,
                schema_overrides=overrides | time_type,
            )
            break
        except pl.exceptions.NoDataError:
            raise DataError("has no data rows", where=where) from None
        except pl.exceptions.PolarsError as exc:
            if attempt + 1 < len(attempts):
                continue
            raise _csv_error(prepared, src.quote, exc, where) from None
    first_line = 2 if src.header else 1
    frame = raw.select(pl.col(f"c{index_of[col]}").alias(role) for role, col in mapping.items())
    del raw
    lines = None
    if prepared.blank_lines:
        # Blank lines come back as all-null rows: count them, do not reject them.
        data = np.ones(len(frame), dtype=bool)
        data[np.asarray(prepared.blank_lines, dtype=np.int64) - first_line] = False
        frame = frame.filter(pl.Series(data))
        lines = np.flatnonzero(data) + first_line
    return _Loaded(source, frame, prepared, len(prepared.blank_lines), first_line, lines)


def _read_jsonl(source: Source, prepared: PreparedText, mapping: dict[str, str]) -> _Loaded:
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
    data_lines = data_lines[: len(raw)]
    frame = raw.select(pl.col(col).alias(role) for role, col in mapping.items())
    nested = _nested_rows(prepared.path, frame, mapping, data_lines)
    if nested is not None:
        frame = frame.with_columns(__nested=nested)
    return _Loaded(source, frame, prepared, len(prepared.blank_lines), 1, data_lines)


def _nested_rows(path: Path, frame: pl.DataFrame, mapping: dict[str, str], lines: np.ndarray) -> pl.Series | None:
    """Rows whose mapped fields hold a JSON object or list (read as JSON text with a String schema),
    or None when there are none. Cells that merely look like JSON are checked against their line."""
    import json

    looks = pl.any_horizontal(
        pl.col(role).str.strip_chars_start().str.contains(r"^[\[{]").fill_null(False) for role in mapping
    )
    candidates = frame.select(looks).to_series().arg_true().to_numpy()
    if not len(candidates):
        return None
    texts = read_lines(path, lines[candidates].tolist(), limit=1 << 30)
    nested = np.zeros(len(frame), dtype=bool)
    for row in candidates.tolist():
        obj = json.loads(texts[int(lines[row])])
        nested[row] = any(isinstance(obj.get(column), dict | list) for column in mapping.values())
    return pl.Series(nested) if nested.any() else None


def _csv_error(prepared: PreparedText, quote: str | None, exc: BaseException, where: str) -> DataError:
    """Why polars could not read a checked CSV file, with the line when a quote never closes."""
    from persotool.data.sources import unclosed_quote

    if quote and prepared.has_quotes:
        line = unclosed_quote(prepared.path, quote)
        if line is not None:
            return DataError(
                f"a quoted field opens here ({quote}) and is never closed; close the quote, or read "
                "the file with quoting off (quote = '' in the schema)",
                where=f"{where}:{line}",
            )
    return DataError(f"cannot be read as CSV ({_first_line(exc)}); check the delimiter and quoting", where=where)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _with_time(loaded: _Loaded, spec: IngestConfig, types: dict[str, pl.DataType]) -> tuple[pl.DataFrame, str]:
    """One file's rows with parsed UTC timestamps; coded roles become Categorical whatever the format."""
    frame = loaded.frame
    try:
        ts, time_reason, fmt = parse_time(frame["time"], spec.columns.time_format, spec.columns.timezone)
    except (ConfigError, DataError) as exc:
        raise type(exc)(exc.message, where=str(loaded.source.path)) from None
    coded = {
        role: pl.col(role) if frame.schema[role] == types[role] else pl.col(role).cast(pl.String).cast(types[role])
        for role in CODED_ROLES
        if role in frame.columns
    }
    extra = {"__nested": pl.col("__nested")} if "__nested" in frame.columns else {}
    out = frame.select(**coded, timestamp=ts, __time_reason=time_reason, __raw_time=pl.col("time"), **extra)
    if loaded.prepared is not None:
        loaded.frame = None  # text sources quote rejected lines from the file itself
    return out, fmt


def _reason_codes(reasons: pl.Series) -> np.ndarray:
    """Reason names -> uint8 codes (0 = no reason, i + 1 = REASONS[i])."""
    if reasons.null_count() == len(reasons):
        return np.zeros(len(reasons), dtype=np.uint8)
    mapping = {name: code for code, name in enumerate(REASONS, start=1)}
    return reasons.replace_strict(mapping, default=0, return_dtype=pl.UInt8).to_numpy()


def _categories(column: pl.Series) -> pl.Series:
    """The distinct values of a column read with `_coded_types`, as text, in code order."""
    return column.dtype.categories.to_series().cast(pl.String)


def _per_distinct(
    column: pl.Series, compute, spread: tuple[str, ...] | None = None
) -> tuple[dict[str, np.ndarray | None], dict[str, np.ndarray]]:
    """Run `compute` (values as text -> DataFrame of the same height) once per distinct value of
    a Categorical column read with `_coded_types`, then spread result columns to every row with a
    block-wise table lookup by category code. Nulls get what `compute` gives for a null.

    Returns (rows, tables). Rows holds the per-row arrays of the columns named in `spread` (all, by
    default), sentinel-coded: -1 for missing integers and booleans (booleans as int8), NaN for
    missing floats, and uint8 codes for `*reason` columns, or None for a `*reason` column no row
    has. Tables holds every result column by category code, with the null's entry last."""
    categories = _categories(column)
    k = len(categories)  # the code a null row gets
    nulls = column.null_count()
    table = pl.concat([compute(categories), compute(pl.Series([None], dtype=pl.String))])
    rows = None
    out: dict[str, np.ndarray | None] = {}
    tables: dict[str, np.ndarray] = {}
    for name, result in zip(table.columns, table.iter_columns(), strict=True):
        if name.endswith("reason"):
            lookup = tables[name] = _reason_codes(result)
            if not lookup[:k].any() and not (nulls and lookup[k]):
                out[name] = None  # no row has a reason: skip the full-length spread
                continue
        elif result.dtype == pl.Boolean:
            lookup = result.cast(pl.Int8).fill_null(-1).to_numpy()
        elif result.dtype.is_float():
            lookup = result.fill_null(float("nan")).to_numpy()
        else:
            lookup = result.fill_null(-1).to_numpy()
        tables[name] = lookup
        if spread is not None and name not in spread:
            continue
        if rows is None:
            physical = column.to_physical()
            rows = (physical.fill_null(k) if nulls else physical).to_numpy()
        values = np.empty(len(rows), dtype=lookup.dtype)
        for start, stop in _blocks(len(rows)):
            values[start:stop] = lookup[rows[start:stop]]
        out[name] = values
    return out, tables


def _sorted_ids(ids: pl.Series) -> pl.Series:
    """Distinct ids in a stable order: numerically when all are integers, else as text."""
    as_int = ids.cast(pl.Int64, strict=False)
    return ids.gather(as_int.arg_sort()) if as_int.null_count() == 0 else ids.sort()


@dataclass
class _Coded:
    """Every row as primitive arrays: provisional user/item codes (-1 missing), event code, value
    code (its dense rank among the distinct values, 0 when absent), consent (-1/0/1) and the uint8
    code of the first reason to reject it."""

    user: np.ndarray
    item: np.ndarray
    event: np.ndarray
    value: np.ndarray
    values: np.ndarray  # value code -> value (NaN for code 0)
    consent: np.ndarray | None
    reason: np.ndarray
    users: pl.Series  # cleaned user ids, indexed by provisional code
    items: pl.Series
    events: pl.Series  # cleaned event names, indexed by event code


def _encode(frame: pl.DataFrame, spec: IngestConfig) -> _Coded:
    """Clean ids and parse values, events and consent once per distinct value; give every row
    integer codes and the first reason (if any) it must be rejected for."""
    n = len(frame)

    def ids(values: pl.Series) -> pl.DataFrame:
        return pl.DataFrame({"v": values}).select(id=id_expr(pl.col("v")))

    vocab: dict[str, pl.Series] = {}
    coded: dict[str, np.ndarray] = {}
    checks: list[np.ndarray | None] = []  # uint8 reason codes per row, in REASONS order
    if "__nested" in frame.columns:
        nested = frame["__nested"].fill_null(False).to_numpy()
        checks.append(np.where(nested, REASONS.index("field_nested") + 1, 0).astype(np.uint8))
    for role in ("user", "item"):
        cleaned = ids(_categories(frame[role]))["id"]
        ordered = _sorted_ids(cleaned.unique().drop_nulls())
        index = pl.DataFrame({"id": ordered, "code": pl.int_range(len(ordered), eager=True, dtype=pl.Int32)})

        def to_code(values: pl.Series, index: pl.DataFrame = index) -> pl.DataFrame:
            return ids(values).join(index, on="id", how="left", maintain_order="left").select("code")

        coded[role] = _per_distinct(frame[role], to_code)[0]["code"]
        vocab[role] = ordered
        # a row lacks an id when the cell is empty or cleans to nothing
        if frame[role].null_count() or cleaned.null_count():
            missing = REASONS.index(f"{role}_missing") + 1
            checks.append(np.where(coded[role] < 0, missing, 0).astype(np.uint8))
    if frame["__time_reason"].null_count() < n:
        checks.append(_reason_codes(frame["__time_reason"]))
    value = np.zeros(n, dtype=np.int32)
    value_table = np.full(1, np.nan)
    if "value" in frame.columns:

        def values(raw: pl.Series) -> pl.DataFrame:
            parsed, reason = value_exprs(pl.col("v"))
            return pl.DataFrame({"v": raw}).select(
                value=parsed, reason=reason, code=parsed.rank("dense").fill_null(0).cast(pl.Int32)
            )

        parsed, tables = _per_distinct(frame["value"], values, spread=("code", "reason"))
        value = parsed["code"]
        value_table = np.full(int(tables["code"].max(initial=0)) + 1, np.nan)
        value_table[tables["code"]] = tables["value"]
        checks.append(parsed["reason"])
    events = pl.Series(["interaction"], dtype=pl.String)
    event = np.zeros(n, dtype=np.int32)
    if "event" in frame.columns:
        names = ids(_categories(frame["event"]))["id"].unique().drop_nulls().sort()
        events = names if len(names) else events
        known = list(spec.events) if spec.events is not None else None

        def event_codes(raw: pl.Series) -> pl.DataFrame:
            name = id_expr(pl.col("e"))
            reason = pl.when(name.is_null()).then(pl.lit("event_missing"))
            if known is not None:
                reason = reason.when(~name.is_in(known)).then(pl.lit("event_unknown"))
            code = name.replace_strict(events.to_list(), list(range(len(events))), default=None, return_dtype=pl.Int32)
            return pl.DataFrame({"e": raw}).select(code=code, reason=reason)

        parsed, _ = _per_distinct(frame["event"], event_codes)
        event = parsed["code"]
        checks.append(parsed["reason"])
    consent = None
    if "consent" in frame.columns:

        def flags(raw: pl.Series) -> pl.DataFrame:
            flag, reason = consent_exprs(pl.col("c"))
            return pl.DataFrame({"c": raw}).select(flag=flag, reason=reason)

        parsed, _ = _per_distinct(frame["consent"], flags)
        consent = parsed["flag"]
        checks.append(parsed["reason"])
    # Reasons in REASONS order: the first check that fails names the row's reason.
    checks = [c for c in checks if c is not None]
    reason = checks[-1] if checks else np.zeros(n, dtype=np.uint8)
    for check in reversed(checks[:-1]):
        reason = np.where(check != 0, check, reason)
    return _Coded(
        coded["user"], coded["item"], event, value, value_table, consent, reason, vocab["user"], vocab["item"], events
    )


BLOCK = 1 << 16  # rows per block in the block-wise passes below: temporaries stay small and cache-warm


def _blocks(n: int, size: int | None = None):
    size = size or BLOCK
    for start in range(0, n, size):
        yield start, min(start + size, n)


def time_ranks(stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense 0-based ranks of int64 timestamps, written over `stamps` (returned as a uint64 view of
    the same memory), and the sorted distinct values they index (`distinct[rank]` gives the
    timestamps back). A log written in time order, the usual case, costs one running count of
    changes; any other order takes a dense rank."""
    n = len(stamps)
    rank = stamps.view(np.uint64)
    if n and bool((stamps[1:] >= stamps[:-1]).all()):
        change = np.empty(n, dtype=bool)
        change[:1] = True
        np.not_equal(stamps[1:], stamps[:-1], out=change[1:])
        distinct = stamps[change]
        carry = np.uint64(0)
        for start, stop in _blocks(n):
            block = rank[start:stop]
            block[...] = change[start:stop]
            np.cumsum(block, out=block)
            block += carry
            carry = block[-1]
        rank -= np.uint64(1)
        return rank, distinct
    ordered = np.sort(stamps)
    keep = np.empty(n, dtype=bool)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    distinct = ordered[keep]
    del ordered, keep
    rank[...] = pl.Series(stamps).rank("dense").to_numpy()
    rank -= np.uint64(1)
    return rank, distinct


def sort_unique(columns: list[np.ndarray], sizes: list[int] | None = None, packed: np.ndarray | None = None) -> int:
    """Sort the rows of `columns` (non-negative integer codes, most significant first) and drop
    exact duplicates, in place: afterwards the first m entries of every column (m is returned) hold
    the distinct rows in order. `sizes[k]`, when given, bounds column k's codes.

    When the codes of all columns fit in 64 bits together (they usually do: user, time rank, item,
    event type, rating level), each row is packed into one integer in `packed` (a uint64 buffer
    as long as the columns, allocated when not given; it may be one of the uint64 columns): one
    vectorised sort of the packed integers, duplicates become neighbours, and the columns are
    decoded back with shifts and masks, block by block. A column with a single code takes no bits.
    Wider keys fall back to a multi-column sort.
    """
    n = len(columns[0]) if columns else 0
    if sizes is None:
        sizes = [int(c.max()) + 1 if len(c) else 1 for c in columns]
    bits = [max(size - 1, 0).bit_length() for size in sizes]
    if sum(bits) > 64:
        frame = pl.DataFrame({f"k{j}": c for j, c in enumerate(columns)})
        frame = frame.unique().sort(frame.columns)
        for j, column in enumerate(columns):
            column[: len(frame)] = frame.get_column(f"k{j}").to_numpy()
        return len(frame)
    if packed is None:
        packed = np.empty(n, dtype=np.uint64)
    layout = []
    shift = 64
    for width in bits:
        shift -= width
        layout.append((np.uint64(shift), width, np.uint64((1 << width) - 1)))
    used = [(column, offset, mask) for column, (offset, width, mask) in zip(columns, layout, strict=True) if width]
    part = np.empty(min(n, BLOCK), dtype=np.uint64)
    acc = np.empty(min(n, BLOCK), dtype=np.uint64)
    for start, stop in _blocks(n):
        row, bits = acc[: stop - start], part[: stop - start]
        row[...] = 0
        for column, offset, _ in used:
            np.left_shift(column[start:stop], offset, out=bits, dtype=np.uint64, casting="unsafe")
            row |= bits
        packed[start:stop] = row  # after reading every column: `packed` may alias one of them
    packed.sort()
    keep = np.empty(n, dtype=bool)
    keep[:1] = True
    np.not_equal(packed[1:], packed[:-1], out=keep[1:])
    every = bool(keep.all())
    m = 0
    for start, stop in _blocks(n):
        k = stop - start if every else int(np.count_nonzero(keep[start:stop]))
        rows, bits = acc[:k], part[:k]  # a copy of the block: writing the outputs may overwrite `packed`
        if every:
            rows[...] = packed[start:stop]
        else:
            np.compress(keep[start:stop], packed[start:stop], out=rows)
        for column, (offset, width, mask) in zip(columns, layout, strict=True):
            if not width:
                column[m : m + k] = 0  # its only code
                continue
            np.right_shift(rows, offset, out=bits)
            np.bitwise_and(bits, mask, out=column[m : m + k], casting="unsafe")
        m += k
    return m


def _present(codes: np.ndarray, size: int) -> np.ndarray:
    """The distinct values of `codes` (integers in 0..size-1), sorted."""
    seen = np.zeros(size, dtype=bool)
    seen[codes] = True  # no full-length index copy, unlike bincount
    return np.flatnonzero(seen)


def _pseudonymizer(spec: IngestConfig):
    key = os.environ.get(spec.pseudonym_key_env)
    if not key:
        raise ConfigError(
            f"`pseudonymize` needs a secret key in the environment variable {spec.pseudonym_key_env} "
            "(it is never written anywhere)"
        )
    key_bytes = key.encode()
    if len(key_bytes) < MIN_KEY_BYTES:
        raise ConfigError(
            f"the pseudonym key in {spec.pseudonym_key_env} is {len(key_bytes)} bytes; use at least {MIN_KEY_BYTES} "
            "random bytes (e.g. python -c 'import secrets; print(secrets.token_hex(32))'), or ids can be guessed back"
        )

    def apply(ids: list[str]) -> list[str]:
        return [hmac.new(key_bytes, i.encode(), hashlib.sha256).hexdigest()[:32] for i in ids]

    return apply


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


def _mapped_text(line: str, fmt: str, delimiter: str, quote: str | None, positions: list[int], names: list[str]) -> str:
    """The mapped fields of one raw line, in its own format: unmapped fields (often personal:
    names, e-mails, addresses) stay out of the outputs."""
    import csv
    import json

    if fmt == "jsonl":
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            return ""
        return json.dumps({name: obj.get(name) for name in names}) if isinstance(obj, dict) else ""
    if len(delimiter) == 1:
        reader = csv.reader(
            [line], delimiter=delimiter, quotechar=quote or '"', quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE
        )
        fields = next(reader, [])
    else:
        fields = line.split(delimiter)
    return delimiter.join(fields[i] if i < len(fields) else "" for i in positions)


def _attach_raw(rejects: pl.DataFrame, loaded: list[_Loaded], spec: IngestConfig, pseudonymize) -> pl.Series:
    """The text of each rejected line: its mapped fields (the whole line with keep_raw_rejects),
    or, when pseudonymizing, its mapped fields with the user id replaced, so that raw identifiers
    never reach an output."""
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
        if item.prepared is None:  # Parquet: show the mapped fields as JSON (line n is row n - 1)
            sub = item.frame[lines[mask] - 1]
            as_json = sub.select(pl.struct(pl.all()).struct.json_encode()).to_series().to_list()
            for j, text in zip(mask, as_json, strict=True):
                texts[j] = text
            continue
        found = read_lines(item.prepared.path, lines[mask].tolist())
        original = item.prepared.original_delimiter
        names = list(dict.fromkeys(_mapped_columns(spec).values()))
        header = item.prepared.header or spec.source.columns or []
        positions = [header.index(name) for name in names if name in header]
        for j in mask:
            text = found.get(int(lines[j]), "")
            text = text.replace(SUBSTITUTE.decode(), original) if len(original) > 1 else text
            if not spec.keep_raw_rejects:
                text = _mapped_text(text, item.source.format, original, spec.source.quote, positions, names)
            texts[j] = text
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
        listed = values.str.split(spec_attr.separator) if spec_attr.separator else pl.concat_list(values)
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


def ingest(spec: IngestConfig, sources: list[str], out: Path, *, force: bool = False) -> dict[str, Any]:
    """Ingest raw logs into `out`; return the manifest (also written as `out/manifest.json`)."""
    careful: set[Path] = set()
    while True:
        try:
            return _ingest(spec, sources, out, force=force, careful=careful)
        except _Recheck as again:
            careful |= again.paths  # grows every time: the loop ends


def _ingest(spec: IngestConfig, sources: list[str], out: Path, *, force: bool, careful: set[Path]) -> dict[str, Any]:
    started = time.perf_counter()
    phases = _Phases()
    paths = discover(sources)
    pseudonymize = _pseudonymizer(spec) if spec.pseudonymize else None
    loaded: list[_Loaded] = []
    inputs = [*paths, *(Path(s) for s in sources if Path(s).is_dir())]
    inputs += [Path(table.path) for table in (spec.items, spec.users) if table is not None]
    with artifacts.atomic_directory(out, force=force, inputs=inputs) as tmp, _byte_checks_first(loaded):
        work = tmp / ".work"
        work.mkdir()
        files = [identify(p, spec.source.format) for p in paths]
        types = _coded_types()
        for source in files:
            loaded.append(_load_source(source, spec, work, types, source.path in careful))
        phases.mark("read")
        parts, fmt_by_file = [], {}
        for number, item in enumerate(loaded):
            part, fmt_by_file[number] = _with_time(item, spec, types)
            parts.append(part)
        offsets = np.cumsum([0] + [len(part) for part in parts])  # each file's first row in `raw`
        raw = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]
        del parts
        phases.mark("parse_time")
        coded = _encode(raw, spec)
        phases.mark("encode")
        rows_read = len(raw)
        blank_lines = sum(item.blank_lines for item in loaded)
        counts: dict[str, Any] = {"rows_read": rows_read, "blank_lines": blank_lines}

        # Consent: a user who opted out anywhere is removed everywhere, rejects included.
        gone = np.zeros(rows_read, dtype=bool)
        opted_out_users = 0
        if coded.consent is not None:
            refused = np.unique(coded.user[(coded.consent == 0) & (coded.user >= 0)])
            opted_out_users = len(refused)
            if opted_out_users:
                refused_mask = np.zeros(len(coded.users), dtype=bool)
                refused_mask[refused] = True
                gone = (coded.user >= 0) & refused_mask[np.maximum(coded.user, 0)]
        opted_out_rows = int(gone.sum())
        counts |= {"opted_out_users": opted_out_users, "opted_out_rows": opted_out_rows}

        rejected = (coded.reason != 0) & ~gone
        reject_rows = np.flatnonzero(rejected)
        rejects = pl.DataFrame(schema={"__file": pl.Int32, "__line": pl.Int64, "reason": pl.String})
        if len(reject_rows):
            picked = raw[reject_rows]
            file_of = np.searchsorted(offsets, reject_rows, side="right") - 1
            line_of = np.empty(len(reject_rows), dtype=np.int64)
            for number, item in enumerate(loaded):
                mine = file_of == number
                line_of[mine] = item.line_numbers(reject_rows[mine] - offsets[number])
            rejects = picked.select(
                __file=pl.Series(file_of, dtype=pl.Int32),
                __line=pl.Series(line_of),
                __raw_time=pl.col("__raw_time").cast(pl.String),
                reason=pl.Series([REASONS[c - 1] for c in coded.reason[reject_rows].tolist()], dtype=pl.String),
                user_id=pl.col("user").cast(pl.String).str.strip_chars(),
                item_id=pl.col("item").cast(pl.String).str.strip_chars(),
                **({"__raw_value": pl.col("value").cast(pl.String)} if "value" in picked.columns else {}),
            )
        kept = ~rejected & ~gone
        every = bool(kept.all())  # the common case: nothing to drop, no copies

        def keep(values: np.ndarray) -> np.ndarray:
            return values if every else values[kept]

        stamps = raw["timestamp"].to_physical()  # microseconds; null only in rejected rows
        stamps = (stamps if every else stamps.filter(pl.Series(kept))).to_numpy()
        user, item, event, value = keep(coded.user), keep(coded.item), keep(coded.event), keep(coded.value)
        del raw
        by_reason = dict(sorted(Counter(rejects["reason"].to_list()).items()))
        counts |= {"rows_rejected": len(rejects), "rejected_by_reason": by_reason}
        considered = rows_read - opted_out_rows
        if len(rejects) and (len(user) == 0 or len(rejects) > spec.max_reject_rate * considered):
            first = rejects.sort(["__file", "__line"]).head(1)
            detail = _reject_details(first, fmt_by_file)[0]
            share = len(rejects) / max(considered, 1)
            raise DataError(
                f"{detail}; {len(rejects)} of {considered} rows rejected ({share:.0%}), more than "
                f"`max_reject_rate` {spec.max_reject_rate:g} allows: {_summary(by_reason)}",
                where=f"{files[first['__file'][0]].path}:{first['__line'][0]}",
            )
        if len(user) == 0:
            raise DataError("no rows left after removing opted-out users", where=str(files[0].path))

        phases.mark("reject")
        # Final dense codes: only users and items that kept at least one row.
        user_codes = _present(user, len(coded.users))
        user_vocab = user_public = coded.users.gather(user_codes)
        if pseudonymize is not None:
            public = pl.Series(pseudonymize(user_vocab.to_list()), dtype=pl.String)
            order = public.arg_sort()
            user_codes, user_vocab, user_public = (
                user_codes[order.to_numpy()],
                user_vocab.gather(order),
                public.gather(order),
            )
        item_codes = _present(item, len(coded.items))
        item_vocab = item_public = coded.items.gather(item_codes)
        events = coded.events

        def recode(column: np.ndarray, codes: np.ndarray, size: int) -> np.ndarray:
            if len(codes) == size and (codes == np.arange(size)).all():
                return column.astype(np.int32, copy=False)  # every provisional code kept, in order: already final
            lookup = np.full(size, -1, dtype=np.int32)
            lookup[codes] = np.arange(len(codes), dtype=np.int32)
            return lookup[column]

        user = recode(user, user_codes, len(coded.users))
        item = recode(item, item_codes, len(coded.items))
        phases.mark("recode")
        if not stamps.flags.writeable:
            stamps = stamps.copy()
        rank, time_values = time_ranks(stamps)  # the ranks overwrite `stamps`
        del stamps
        n = len(user)
        packed = np.empty(n, dtype=np.uint64)
        columns = [user, rank, item, event, value]
        m = sort_unique(
            columns, [len(user_codes), len(time_values), len(item_codes), len(events), len(coded.values)], packed
        )
        user, rank, item, event, value = (column[:m] for column in columns)
        del columns
        stamps = rank.view(np.int64)  # the ranks become timestamps in place
        for start, stop in _blocks(m):
            stamps[start:stop] = time_values[stamps[start:stop]]
        del rank, time_values
        counts["duplicates_removed"] = n - m
        phases.mark("sort_dedupe")

        # Rows are sorted by user then time: each user's rows are one run.
        starts = np.flatnonzero(np.concatenate(([True], user[1:] != user[:-1])))
        ends = np.append(starts[1:], m) - 1
        # Distinct (user, item) pairs per item, packed in the sort's buffer.
        pairs = packed[:m].view(np.int64)
        n_items = len(item_codes)
        for start, stop in _blocks(m):
            np.multiply(user[start:stop], n_items, out=pairs[start:stop], dtype=np.int64)
            pairs[start:stop] += item[start:stop]
        pairs.sort()
        first = np.empty(m, dtype=bool)  # the first row of each distinct pair
        first[:1] = True
        np.not_equal(pairs[1:], pairs[:-1], out=first[1:])
        item_users = np.zeros(n_items, dtype=np.int64)
        for start, stop in _blocks(m, max(BLOCK, 8 * n_items)):  # blocks long enough to outweigh a count
            item_users += np.bincount(pairs[start:stop][first[start:stop]] % n_items, minlength=n_items)
        del first
        # A session ends at a new user or after an inactivity gap (the buffer is free again).
        session = pairs
        del pairs
        session[:1] = 1
        np.not_equal(user[1:], user[:-1], out=session[1:], casting="unsafe")
        gap = np.int64(spec.session_gap_minutes * 60 * 1_000_000)
        for start, stop in _blocks(m - 1):
            session[start + 1 : stop + 1] |= (stamps[start + 1 : stop + 1] - stamps[start:stop]) > gap
        np.cumsum(session, out=session)
        session -= 1

        event_weights = spec.events or {}
        weights = pl.Series([float(event_weights.get(e, 1.0)) for e in events.to_list()], dtype=pl.Float64)
        value_of = pl.Series(coded.values).fill_nan(None)  # by value code; code 0 is no value
        weight = pl.lit(weights).gather(pl.col("event"))
        below = np.zeros(len(coded.values), dtype=bool)
        if spec.relevance_threshold is not None:
            below = coded.values < spec.relevance_threshold  # False for a missing value (NaN)
            weight = pl.when(pl.lit(pl.Series(below)).gather(pl.col("value"))).then(0.0).otherwise(weight)
        counts["below_threshold"] = int(np.bincount(value, minlength=len(below))[below].sum()) if below.any() else 0
        _confirm(loaded)  # before anything is written
        phases.mark("sessions")
        # Streamed: the id, event and weight columns are looked up and written a morsel at a time.
        pl.LazyFrame(
            {
                "user_idx": user,
                "item_idx": item,
                "timestamp": stamps,
                "event": event,
                "value": value,
                "session": session,
            }
        ).select(
            user_idx=pl.col("user_idx"),
            item_idx=pl.col("item_idx"),
            user_id=pl.lit(user_public).gather(pl.col("user_idx")),
            item_id=pl.lit(item_public).gather(pl.col("item_idx")),
            timestamp=pl.col("timestamp").cast(UTC_DTYPE),
            event=pl.lit(events).gather(pl.col("event")),
            value=pl.lit(value_of).gather(pl.col("value")),
            weight=weight,
            session_id=pl.col("session"),
        ).cast(INTERACTION_SCHEMA).sink_parquet(tmp / "interactions.parquet", compression="zstd", compression_level=1)
        phases.mark("write")

        users = pl.DataFrame(
            {
                "user_idx": user[starts],
                "user_id": user_public,
                "n_interactions": ends - starts + 1,
                "n_sessions": session[ends] - session[starts] + 1,
                "first_seen": pl.Series(stamps[starts]).cast(UTC_DTYPE),
                "last_seen": pl.Series(stamps[ends]).cast(UTC_DTYPE),
            },
            schema_overrides={"n_interactions": pl.UInt32, "n_sessions": pl.UInt32},
        )
        items = pl.DataFrame(
            {
                "item_idx": np.arange(n_items, dtype=np.int32),
                "item_id": item_public,
                "n_interactions": np.bincount(item, minlength=n_items),
                "n_users": item_users,
            },
            schema_overrides={"n_interactions": pl.UInt32, "n_users": pl.UInt32},
        )
        time_range = (int(stamps.min()), int(stamps.max()))
        n_sessions = int(session[-1]) + 1
        del user, item, event, value, stamps, session, packed
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

        phases.mark("users_items")
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
        tmin, tmax = pl.Series(time_range).cast(UTC_DTYPE).to_list()
        n_users = len(user_vocab)
        counts |= {
            "rows_kept": m,
            "n_users": n_users,
            "n_items": n_items,
            "n_sessions": n_sessions,
            "density": m / (n_users * n_items),
        }
        phases.mark("rejects")
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
            phase_seconds=phases.seconds,
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
