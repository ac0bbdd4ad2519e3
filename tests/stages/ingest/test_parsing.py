"""Timestamp, value and consent parsing on hand-checked cases."""

from __future__ import annotations

import polars as pl
import pytest

from persotool.stages.ingest.parsing import parse_consent, parse_time, parse_value


@pytest.mark.parametrize(
    ("raw", "fmt", "resolved", "iso"),
    [
        ("1260759144", "auto", "s", "2009-12-14T02:52:24+00:00"),
        ("1260759144123", "auto", "ms", "2009-12-14T02:52:24.123000+00:00"),
        ("1260759144123456", "auto", "us", "2009-12-14T02:52:24.123456+00:00"),
        ("1260759144123456789", "auto", "ns", "2009-12-14T02:52:24.123456+00:00"),
        ("2020-01-01T10:00:00+02:00", "auto", "iso", "2020-01-01T08:00:00+00:00"),
        ("2020-01-01 10:00:00.250", "iso", "iso", "2020-01-01T10:00:00.250000+00:00"),
        ("2020-01-01", "iso", "iso", "2020-01-01T00:00:00+00:00"),
        ("14/12/2009 02:52", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M", "2009-12-14T02:52:00+00:00"),
    ],
)
def test_time_formats(raw: str, fmt: str, resolved: str, iso: str | None) -> None:
    ts, reasons, got_fmt = parse_time(pl.Series([raw]), fmt)
    assert got_fmt == resolved
    if iso is None:
        assert reasons[0] == "timestamp_unparseable"
    else:
        assert ts[0].isoformat() == iso and reasons[0] is None


def test_time_failures_are_named() -> None:
    ts, reasons, _ = parse_time(pl.Series(["1", "", "x", "-99999999999", "1.5", " \t "]), "s")
    assert reasons.to_list() == [
        None,
        "timestamp_missing",
        "timestamp_unparseable",
        "timestamp_out_of_range",
        None,
        "timestamp_missing",  # blank text is missing, not unparseable
    ]
    assert ts[4].isoformat() == "1970-01-01T00:00:01.500000+00:00"


def test_native_datetimes_are_converted_to_utc() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    raw = pl.Series([datetime(2024, 6, 1, 12, tzinfo=ZoneInfo("Asia/Tokyo"))])
    ts, _reasons, fmt = parse_time(raw, "auto")
    assert fmt == "native" and ts[0].isoformat() == "2024-06-01T03:00:00+00:00"


def test_values_and_consent() -> None:
    values, reasons = parse_value(pl.Series([" 4.5", "", "NaN", "1e999", "five"]))
    assert values.to_list()[:2] == [4.5, None]
    assert reasons.to_list() == [None, None, "value_unparseable", "value_unparseable", "value_unparseable"]
    flags, why = parse_consent(pl.Series(["Yes", "opt-out", "0", "maybe"]))
    assert flags.to_list() == [True, False, False, None]
    assert why.to_list() == [None, None, None, "consent_invalid"]


@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_epoch_integer_fast_path_agrees_with_the_general_parser(unit: str) -> None:
    values = ["1700000000", None, "99999999999999999", "-1", "0", "-2208988800", "7258118400", "-2208988801"]
    scale = {"s": 1, "ms": 1_000, "us": 1_000_000}[unit]
    values = [v if v is None or len(v) > 16 else str(int(v) * scale) for v in values]
    fast_ts, fast_reason, _ = parse_time(pl.Series(values), unit)
    # a padded value sends the whole column down the general path
    slow_ts, slow_reason, _ = parse_time(pl.Series([*values, " 5 "]), unit)
    assert fast_ts.to_list() == slow_ts.head(len(values)).to_list()
    assert fast_reason.to_list() == slow_reason.head(len(values)).to_list()
    assert fast_reason.to_list() == [
        None,
        "timestamp_missing",
        "timestamp_out_of_range",
        None,
        None,
        None,  # 1900-01-01 is the first valid instant
        "timestamp_out_of_range",  # 2200-01-01 is the first invalid one
        "timestamp_out_of_range",
    ]


@pytest.mark.parametrize("separator", ["T", " "])
def test_fixed_layout_iso_fast_path_agrees_with_the_general_parser(separator: str) -> None:
    from persotool.stages.ingest.parsing import ISO_FORMATS, _parse_strings_general

    good = [f"2024-01-{d:02d}T{h:02d}:{m:02d}:07.{m * 7:03d}Z" for d in (1, 15, 31) for h in (0, 23) for m in range(40)]
    edge = [
        "2024-02-29T12:00:00.500Z",  # leap day
        "2023-02-29T12:00:00.500Z",  # no such day
        "2024-04-31T12:00:00.500Z",
        "2024-13-01T12:00:00.500Z",
        "2024-01-01T24:00:00.000Z",
        "2024-01-01T23:60:00.000Z",
        "2024-01-01T23:59:60.000Z",  # a leap second rolls over, as in the general parser
        "2024-01-01T23:59:59.9Z",  # another length: retried by the general parser
        "2024-01-01T23:59:59.x1Z",
        "2024-01-01X23:59:59.100Z",
        "1899-12-31T23:59:59.999Z",
        None,
        "   ",
    ]
    raw = pl.Series([None if v is None else v.replace("T", separator, 1) for v in good + edge])
    fast, reasons, fmt = parse_time(raw, "iso")
    general = _parse_strings_general(raw, list(ISO_FORMATS), "UTC", iso=True).cast(fast.dtype)
    assert fmt == "iso"
    assert fast.head(len(good)).null_count() == 0
    ok = reasons.is_null()
    assert fast.filter(ok).to_list() == general.filter(ok).to_list()
    assert reasons.tail(len(edge)).to_list() == [
        None,
        "timestamp_unparseable",
        "timestamp_unparseable",
        "timestamp_unparseable",
        "timestamp_unparseable",
        "timestamp_unparseable",
        None,
        None,
        "timestamp_unparseable",
        "timestamp_unparseable",
        "timestamp_out_of_range",
        "timestamp_missing",
        "timestamp_missing",
    ]
    assert fast[len(good)].isoformat() == "2024-02-29T12:00:00.500000+00:00"
    assert fast[len(good) + 7].isoformat() == "2024-01-01T23:59:59.900000+00:00"
