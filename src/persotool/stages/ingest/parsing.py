"""Column parsers for ingest: each returns the parsed column plus, per row, why it failed (or null).

Parsing is vectorised: the format is chosen on a sample, the whole column is parsed once, and only
the rows that failed are tried against the other accepted forms.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import polars as pl

from persotool.errors import ConfigError

TIME_MIN = datetime(1900, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(2200, 1, 1, tzinfo=UTC)
EPOCH_US_PER = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}
ISO_FORMATS = (
    ("%Y-%m-%dT%H:%M:%S%.f%#z", True),
    ("%Y-%m-%dT%H:%M:%S%.f", False),
    ("%Y-%m-%dT%H:%M", False),
    ("%Y-%m-%d", False),
)
NUMBER = re.compile(r"^\s*-?\d+(\.\d*)?\s*$")
TRUE_WORDS = {"true", "t", "1", "yes", "y", "opt-in", "opt_in", "opted-in", "opted_in", "granted"}
FALSE_WORDS = {
    "false",
    "f",
    "0",
    "no",
    "n",
    "opt-out",
    "opt_out",
    "opted-out",
    "opted_out",
    "denied",
    "withdrawn",
    "revoked",
}
UTC_DTYPE = pl.Datetime("us", "UTC")


def clean_id(series: pl.Series) -> pl.Series:
    """Ids as stripped strings; empty becomes null."""
    return pl.select(id_expr(pl.lit(series))).to_series()


def id_expr(column: pl.Expr) -> pl.Expr:
    """Ids as stripped strings; empty becomes null."""
    text = column.cast(pl.String).str.strip_chars()
    return pl.when(text != "").then(text)


def detect_epoch_unit(values: pl.Series) -> str:
    """Epoch unit from magnitude: seconds up to 1e11 (year 5138), then ms, us, ns."""
    magnitude = values.cast(pl.Float64, strict=False).abs().median()
    if magnitude is None or magnitude < 1e11:
        return "s"
    if magnitude < 1e14:
        return "ms"
    if magnitude < 1e17:
        return "us"
    return "ns"


def resolve_time_format(raw: pl.Series, time_format: str) -> str:
    """Turn `auto` into a concrete format (`s`/`ms`/`us`/`ns`/`iso`) from a sample of the column."""
    if time_format != "auto":
        return time_format
    if raw.dtype.is_temporal():
        return "native"
    if raw.dtype.is_numeric():
        return detect_epoch_unit(raw)
    sample = [v for v in raw.drop_nulls().head(1000).to_list() if v.strip()]
    numeric = [v for v in sample if NUMBER.match(v)]
    if sample and len(numeric) * 2 > len(sample):
        return detect_epoch_unit(pl.Series(numeric))
    return "iso"


def _to_utc(parsed: pl.Series, aware: bool, timezone: str) -> pl.Series:
    if aware:
        return parsed.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    try:
        return (
            parsed.dt.cast_time_unit("us")
            .dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
            .dt.convert_time_zone("UTC")
        )
    except pl.exceptions.PolarsError:
        raise ConfigError(f"unknown time zone {timezone!r} (use an IANA name such as Europe/Paris)") from None


def _parse_strings(raw: pl.Series, formats: list[tuple[str, bool]], timezone: str, *, iso: bool) -> pl.Series:
    if iso:
        layout = _fixed_layout(raw.drop_nulls().head(200).to_list())
        if layout is not None:
            length, fraction, zulu, separator = layout
            fast = _to_utc(_parse_fixed(raw, length, fraction, separator), False, "UTC" if zulu else timezone)
            failed = fast.is_null() & raw.is_not_null()
            if not failed.any():
                return fast
            idx = failed.arg_true()
            retry = _parse_strings_general(raw.gather(idx), formats, timezone, iso=iso)
            return fast.scatter(idx, retry)
    return _parse_strings_general(raw, formats, timezone, iso=iso)


ZONE_NAME = r"\s+([A-Za-z][A-Za-z0-9_/+\-]*)$"  # a trailing zone name: UTC, GMT, Europe/Paris
UTC_NAMES = {"UTC", "GMT", "Z", "UT", "ZULU", "ETC/UTC"}


def _parse_strings_general(raw: pl.Series, formats: list[tuple[str, bool]], timezone: str, *, iso: bool) -> pl.Series:
    text = raw.str.strip_chars()
    if iso:
        zone = text.str.extract(ZONE_NAME, 1)
        if zone.null_count() < len(zone):
            return _parse_named_zones(text, zone, formats, timezone)
        # "... 00:00:00 +01:00": the offset joins the time
        text = text.str.replace(r"\s+([+-]\d{2}:?\d{2})$", "$1")
        text = text.str.replace(" ", "T", literal=True).str.replace(r"Z$", "+00:00")
    sample = text.drop_nulls().head(200)
    scores = [sample.str.to_datetime(f, strict=False, time_unit="us").null_count() for f, _ in formats]
    order = sorted(range(len(formats)), key=lambda i: scores[i])
    best_fmt, best_aware = formats[order[0]]
    out = _to_utc(text.str.to_datetime(best_fmt, strict=False, time_unit="us"), best_aware, timezone)
    for i in order[1:]:
        missing = out.is_null() & text.is_not_null()
        if not missing.any():
            break
        idx = missing.arg_true()
        fmt, aware = formats[i]
        retry = _to_utc(text.gather(idx).str.to_datetime(fmt, strict=False, time_unit="us"), aware, timezone)
        ok = retry.is_not_null()
        if ok.any():
            out = out.scatter(idx.filter(ok), retry.filter(ok))
    return out


def _parse_named_zones(text: pl.Series, zone: pl.Series, formats, timezone: str) -> pl.Series:
    """Times written with a zone name after them (`2019-12-01 00:00:00 UTC`, a common export
    layout): each distinct zone's times are read in that zone; times without one in `timezone`; a
    zone name the time-zone database does not know leaves its times unparsed (rejected)."""
    base = text.str.replace(ZONE_NAME, "")
    naive = [(fmt, aware) for fmt, aware in formats if not aware]
    out = pl.Series(text.name, [None] * len(text), dtype=pl.Datetime("us", "UTC"))
    groups = [(None, zone.is_null())] + [(name, zone == name) for name in zone.drop_nulls().unique().to_list()]
    for name, rows in groups:
        idx = rows.fill_null(False).arg_true()
        if not len(idx):
            continue
        where = "UTC" if name is not None and name.upper() in UTC_NAMES else (name or timezone)
        try:
            parsed = _parse_strings_general(base.gather(idx), naive if name else formats, where, iso=True)
        except ConfigError:  # not a zone the database knows: these times cannot be placed
            continue
        out = out.scatter(idx, parsed)
    return out


FIXED_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z?$")


def _fixed_layout(sample: list[str]) -> tuple[int, int, bool, str] | None:
    """(length, fraction digits, ends in Z, date-time separator) when every sampled value has one
    fixed ISO layout."""
    if not sample or not all(FIXED_ISO.match(v) for v in sample):
        return None
    lengths = {len(v) for v in sample}
    zulu = {v.endswith("Z") for v in sample}
    separators = {v[10] for v in sample}
    if len(lengths) != 1 or len(zulu) != 1 or len(separators) != 1:
        return None
    length, has_z = lengths.pop(), zulu.pop()
    return length, max(length - 20 - has_z, 0), has_z, separators.pop()


def _parse_fixed(raw: pl.Series, length: int, fraction: int, separator: str = "T") -> pl.Series:
    """Parse fixed-position ISO date-times: the whole seconds with polars' fast fixed-format parser
    and the fraction with an integer cast (several times faster than a parser for the whole text);
    anything off the layout or off the calendar comes back null."""
    c = pl.col("t")
    seconds = c.str.slice(0, 19).str.to_datetime(f"%Y-%m-%d{separator}%H:%M:%S", strict=False, time_unit="us")
    if fraction:
        used = min(fraction, 6)
        digits = c.str.slice(20, used).cast(pl.Int64, strict=False)
        micro = pl.when(digits >= 0).then(digits * 10 ** (6 - used))  # no sign
        seconds = seconds + pl.duration(microseconds=micro)
    ok = c.str.len_bytes() == length
    return pl.DataFrame({"t": raw}).select(pl.when(ok).then(seconds)).to_series()


# Where an epoch value reads as a date in 1971..2099 in exactly one unit: the windows of the four
# units do not overlap (each spans a factor of 130, the units differ by 1000), so a value inside
# one of them has an unambiguous unit.
PLAUSIBLE_EPOCH = (datetime(1971, 1, 1, tzinfo=UTC).timestamp(), datetime(2100, 1, 1, tzinfo=UTC).timestamp())
EPOCH_UNITS = ("s", "ms", "us", "ns")
EPOCH_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
MIXED_EPOCH = "epoch (mixed units)"


def epoch_units(numbers: pl.Series) -> pl.Series:
    """Per value, the epoch unit that puts it in 1971..2099 (null when none does)."""
    lo, hi = PLAUSIBLE_EPOCH
    x = pl.col("x").abs()
    unit = pl.lit(None, dtype=pl.String)
    for name in reversed(EPOCH_UNITS):
        scale = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[name]
        unit = pl.when(x.is_between(lo * scale, hi * scale, closed="left")).then(pl.lit(name)).otherwise(unit)
    return pl.DataFrame({"x": numbers.cast(pl.Float64)}).select(unit).to_series()


def _mixed_epochs(raw: pl.Series) -> pl.Series | None:
    """Microseconds of an epoch column whose values mix units (seconds next to milliseconds, say),
    each converted by its own magnitude; None when the column has a single unit. Raises DataError
    when units mix and some values fit none, since no unit can then be trusted."""
    from persotool.errors import DataError

    numbers = raw if raw.dtype.is_numeric() else raw.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    units = epoch_units(numbers)
    counts = units.value_counts()
    if counts.filter(pl.col(units.name).is_not_null()).height < 2:
        return None
    by_unit = dict(zip(counts[units.name].to_list(), counts["count"].to_list(), strict=True))
    unfit = int(((units.is_null()) & numbers.is_not_null()).sum())
    if unfit:
        parts = [f"{by_unit[u]:,} in {EPOCH_UNIT_NAMES[u]}" for u in EPOCH_UNITS if u in by_unit]
        example = numbers.filter(units.is_null() & numbers.is_not_null())[0]
        raise DataError(
            f"epoch timestamps mix units ({', '.join(parts)}) and {unfit:,} fit no unit between 1971 and 2100 "
            f"(e.g. {example:.0f}); convert the column to one unit or set `time_format`"
        )
    factor = units.replace_strict(
        {u: float(EPOCH_US_PER[u]) for u in EPOCH_UNITS}, default=None, return_dtype=pl.Float64
    )
    return (numbers * factor).round(0).cast(pl.Int64)


def parse_time(raw: pl.Series, time_format: str, timezone: str = "UTC") -> tuple[pl.Series, pl.Series, str]:
    """Parse a timestamp column to UTC microseconds.

    Returns (timestamps, reasons, resolved format). A reason is `timestamp_missing`,
    `timestamp_unparseable` or `timestamp_out_of_range` (outside 1900-01-01 .. 2200-01-01), else null.
    With `auto`, an epoch column whose values mix units is read value by value (format
    `MIXED_EPOCH`) when every value fits one unit, and refused otherwise.
    """
    if raw.dtype.is_nested() or raw.dtype in (pl.Binary, pl.Object):
        from persotool.errors import DataError

        raise DataError(f"the time column holds {raw.dtype} values; expected epoch numbers, dates or text")
    fmt = resolve_time_format(raw, time_format)
    if time_format == "auto" and fmt in EPOCH_US_PER:
        micros = _mixed_epochs(raw)
        if micros is not None:
            ts, reason = _parse_epoch_integers(micros, 1)
            if raw.dtype == pl.String:  # text that is not a number was not a missing value
                text = raw.str.strip_chars()
                unparseable = micros.is_null() & text.is_not_null() & (text != "")
                reason = pl.select(pl.when(unparseable).then(pl.lit("timestamp_unparseable")).otherwise(reason))
                reason = reason.to_series()
            return ts, reason, MIXED_EPOCH
    if fmt in EPOCH_US_PER and EPOCH_US_PER[fmt] >= 1:
        fast = _parse_epoch_integers(raw, EPOCH_US_PER[fmt])
        if fast is not None:
            return (*fast, fmt)
    missing = raw.is_null()  # blank text counts too: found among the failures below
    lo = int(TIME_MIN.timestamp() * 1e6)
    hi = int(TIME_MAX.timestamp() * 1e6)
    out_of_range = pl.repeat(False, len(raw), eager=True, dtype=pl.Boolean)
    if fmt == "native" or raw.dtype.is_temporal():
        if isinstance(raw.dtype, pl.Datetime):
            ts = _to_utc(raw, raw.dtype.time_zone is not None, timezone)
        else:
            ts = _to_utc(raw.cast(pl.Datetime("us")), False, timezone)
    elif fmt in EPOCH_US_PER:
        numbers = raw if raw.dtype.is_numeric() else raw.cast(pl.String).str.strip_chars()
        as_int = numbers.cast(pl.Int64, strict=False)
        as_float = numbers.cast(pl.Float64, strict=False)
        factor = EPOCH_US_PER[fmt]
        micros_f = as_float * factor
        out_of_range = (micros_f < lo) | (micros_f >= hi) | micros_f.is_nan()
        out_of_range = out_of_range.fill_null(False)
        whole = as_int * int(factor) if factor >= 1 else as_int // round(1 / factor)
        micros = pl.select(
            pl.when(as_int.is_not_null() & ~out_of_range)
            .then(whole)
            .when(~out_of_range)
            .then(micros_f.cast(pl.Int64, strict=False))
        ).to_series()
        ts = micros.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        ts = ts.set(out_of_range | as_float.is_null(), None) if len(ts) else ts
    elif raw.dtype != pl.String:
        raise ConfigError(f"time format {fmt!r} needs text timestamps, found {raw.dtype}")
    elif fmt == "iso":
        ts = _parse_strings(raw, list(ISO_FORMATS), timezone, iso=True)
    else:
        aware = "%z" in fmt or "%#z" in fmt or "%:z" in fmt
        ts = _parse_strings(raw, [(fmt, aware)], timezone, iso=False)
    ts = ts.cast(UTC_DTYPE)
    if fmt not in EPOCH_US_PER:
        micros = ts.dt.epoch("us")
        out_of_range = ((micros < lo) | (micros >= hi)).fill_null(False)
        ts = ts.set(out_of_range, None) if out_of_range.any() else ts
    if raw.dtype == pl.String:
        failed = (ts.is_null() & ~missing & ~out_of_range).arg_true()
        if len(failed):
            blank = failed.filter(raw.gather(failed).str.strip_chars() == "")
            missing = missing.scatter(blank, True) if len(blank) else missing
    reasons = pl.select(
        pl.when(missing)
        .then(pl.lit("timestamp_missing"))
        .when(out_of_range)
        .then(pl.lit("timestamp_out_of_range"))
        .when(ts.is_null())
        .then(pl.lit("timestamp_unparseable"))
        .otherwise(pl.lit(None, dtype=pl.String))
    ).to_series()
    return ts, reasons, fmt


def _parse_epoch_integers(raw: pl.Series, factor: int) -> tuple[pl.Series, pl.Series] | None:
    """The common case of epoch timestamps in whole seconds, ms or us: every present value is a
    plain integer. One integer cast and a range check in the integer domain, fused in one query;
    None when any value needs the general parser (spaces, decimals, signs it cannot read)."""
    as_int = raw if raw.dtype == pl.Int64 else raw.cast(pl.Int64, strict=False)
    if as_int.null_count() != raw.null_count():
        return None
    lo = -(-int(TIME_MIN.timestamp() * 1e6) // factor)  # smallest value >= TIME_MIN
    hi = -(-int(TIME_MAX.timestamp() * 1e6) // factor)  # smallest value >= TIME_MAX
    x = pl.col("x")
    inside = x.is_between(lo, hi, closed="left")
    out = pl.DataFrame({"x": as_int}).select(
        ts=pl.when(inside).then(x * factor).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        reason=pl.when(x.is_null())
        .then(pl.lit("timestamp_missing"))
        .when(~inside)
        .then(pl.lit("timestamp_out_of_range")),
    )
    return out["ts"], out["reason"]


def value_exprs(column: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(value, reason): a present but non-numeric or non-finite value fails as `value_unparseable`."""
    text = column.cast(pl.String).str.strip_chars()
    number = text.cast(pl.Float64, strict=False)
    bad = (text != "") & (number.is_null() | ~number.is_finite())
    return pl.when(~bad).then(number), pl.when(bad).then(pl.lit("value_unparseable"))


def parse_value(raw: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Numeric value (e.g. a rating); a present but non-numeric or non-finite value is a failure."""
    value, reason = value_exprs(pl.col("v"))
    out = pl.DataFrame({"v": raw}).select(value=value, reason=reason)
    return out["value"], out["reason"]


def consent_exprs(column: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(flag, reason): true/1/yes/opt-in... or false/0/no/opt-out...; anything else `consent_invalid`."""
    mapping = dict.fromkeys(TRUE_WORDS, True) | dict.fromkeys(FALSE_WORDS, False)
    flag = (
        column.cast(pl.String)
        .str.strip_chars()
        .str.to_lowercase()
        .replace_strict(mapping, default=None, return_dtype=pl.Boolean)
    )
    return flag, pl.when(flag.is_null()).then(pl.lit("consent_invalid"))


def parse_consent(raw: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Consent flags as booleans, with a reason where the value is not a recognised yes/no."""
    flag, reason = consent_exprs(pl.col("c"))
    out = pl.DataFrame({"c": raw}).select(flag=flag, reason=reason)
    return out["flag"], out["reason"]
