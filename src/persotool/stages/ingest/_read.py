"""Ingest, reading: each source identified, its bytes checked (in the background for plain CSV), its
mapped columns read (coded roles as Categorical), and its timestamps parsed."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from persotool.errors import ConfigError, DataError
from persotool.kernels import storage as artifacts
from persotool.stages.ingest.config import IngestConfig
from persotool.stages.ingest.parsing import parse_time
from persotool.stages.ingest.sources import EmptySource, PreparedText, Source, read_lines
from persotool.stages.ingest.text import inspect_head, prepare_text, verify_bytes

ROLES = ("user", "item", "time", "event", "value", "consent")
# Roles read as Categorical: their cleaning and parsing runs once per distinct value, and rows carry
# only integer codes through filtering, deduplication and sorting.

CODED_ROLES = ("user", "item", "event", "value", "consent")


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
        from persotool.stages.ingest.text import sniff_delimiter

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
    time_column = f"c{index_of[mapping['time']]}" if "time" in mapping else None
    overrides = {
        f"c{index_of[col]}": coded[role]
        for role, col in mapping.items()
        if role in CODED_ROLES and f"c{index_of[col]}" != time_column
    }
    # Whole-number epoch times read straight as integers; the text read below handles the rest.
    epoch = time_column is not None and spec.columns.time_format in ("s", "ms", "us")
    attempts = [{time_column: pl.Int64}, {}] if epoch else [{}]
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
            raise EmptySource("has no data rows", where=where) from None
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
    from persotool.stages.ingest.sources import unclosed_quote

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
    if "time" not in frame.columns:  # a log without times: every row at one placeholder moment
        frame = frame.with_columns(time=pl.lit(None, dtype=pl.String))
        ts = pl.Series("timestamp", [0] * len(frame), dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
        time_reason, fmt = pl.Series("reason", [None] * len(frame), dtype=pl.String), "none"
    else:
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
