"""Ingest, encoding: ids cleaned and values, events and consent parsed once per distinct value;
every row gets integer codes and the first reason, if any, to reject it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from persotool.stages.ingest._columns import _blocks
from persotool.stages.ingest.config import IngestConfig
from persotool.stages.ingest.parsing import consent_exprs, id_expr, value_exprs

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


def _ids(values: pl.Series) -> pl.DataFrame:
    return pl.DataFrame({"v": values}).select(id=id_expr(pl.col("v")))


def _encode(frame: pl.DataFrame, spec: IngestConfig) -> _Coded:
    """Clean ids and parse values, events and consent once per distinct value; give every row
    integer codes and the first reason (if any) it must be rejected for."""
    n = len(frame)
    vocab: dict[str, pl.Series] = {}
    coded: dict[str, np.ndarray] = {}
    checks: list[np.ndarray | None] = []  # uint8 reason codes per row, in REASONS order
    if "__nested" in frame.columns:
        nested = frame["__nested"].fill_null(False).to_numpy()
        checks.append(np.where(nested, REASONS.index("field_nested") + 1, 0).astype(np.uint8))
    for role in ("user", "item"):
        coded[role], vocab[role], missing = _encode_ids(frame[role], role)
        checks.append(missing)
    if frame["__time_reason"].null_count() < n:
        checks.append(_reason_codes(frame["__time_reason"]))
    value, value_table = np.zeros(n, dtype=np.int32), np.full(1, np.nan)
    if "value" in frame.columns:
        value, value_table, reasons = _encode_values(frame["value"])
        checks.append(reasons)
    events, event = pl.Series(["interaction"], dtype=pl.String), np.zeros(n, dtype=np.int32)
    if "event" in frame.columns:
        events, event, reasons = _encode_events(frame["event"], spec, events)
        checks.append(reasons)
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


def _encode_ids(column: pl.Series, role: str) -> tuple[np.ndarray, pl.Series, np.ndarray | None]:
    """(codes, the sorted vocabulary, the rows' missing-id reasons or None): a row lacks an id when
    the cell is empty or cleans to nothing."""
    cleaned = _ids(_categories(column))["id"]
    ordered = _sorted_ids(cleaned.unique().drop_nulls())
    index = pl.DataFrame({"id": ordered, "code": pl.int_range(len(ordered), eager=True, dtype=pl.Int32)})

    def to_code(values: pl.Series) -> pl.DataFrame:
        return _ids(values).join(index, on="id", how="left", maintain_order="left").select("code")

    codes = _per_distinct(column, to_code)[0]["code"]
    missing = None
    if column.null_count() or cleaned.null_count():
        missing = np.where(codes < 0, REASONS.index(f"{role}_missing") + 1, 0).astype(np.uint8)
    return codes, ordered, missing


def _encode_values(column: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value codes, the value of each code, reasons): each distinct value parsed once."""

    def values(raw: pl.Series) -> pl.DataFrame:
        parsed, reason = value_exprs(pl.col("v"))
        return pl.DataFrame({"v": raw}).select(
            value=parsed, reason=reason, code=parsed.rank("dense").fill_null(0).cast(pl.Int32)
        )

    parsed, tables = _per_distinct(column, values, spread=("code", "reason"))
    table = np.full(int(tables["code"].max(initial=0)) + 1, np.nan)
    table[tables["code"]] = tables["value"]
    return parsed["code"], table, parsed["reason"]


def _encode_events(column: pl.Series, spec: IngestConfig, default: pl.Series):
    """(event names, codes, reasons): an event missing, or not among the configured weights."""
    names = _ids(_categories(column))["id"].unique().drop_nulls().sort()
    events = names if len(names) else default
    known = list(spec.events) if spec.events is not None else None

    def event_codes(raw: pl.Series) -> pl.DataFrame:
        name = id_expr(pl.col("e"))
        reason = pl.when(name.is_null()).then(pl.lit("event_missing"))
        if known is not None:
            reason = reason.when(~name.is_in(known)).then(pl.lit("event_unknown"))
        code = name.replace_strict(events.to_list(), list(range(len(events))), default=None, return_dtype=pl.Int32)
        return pl.DataFrame({"e": raw}).select(code=code, reason=reason)

    parsed, _ = _per_distinct(column, event_codes)
    return events, parsed["code"], parsed["reason"]
