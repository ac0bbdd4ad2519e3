"""Hypothesis properties of ingest: every valid row survives with its values, every invalid row is
rejected with the right reason at the right line, and the counts add up."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from persotool.stages.ingest.config import IngestConfig
from persotool.stages.ingest.run import ingest

SPEC = IngestConfig.model_validate(
    {
        "columns": {"user": "user", "item": "item", "time": "ts", "time_format": "s", "value": "v"},
        "max_reject_rate": 1.0,
    }
)
ids = st.text(alphabet="abcxyz019-_. éü", min_size=1, max_size=6).map(str.strip).filter(bool)
seconds = st.integers(min_value=0, max_value=4_000_000_000)
values = st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: round(x, 3)))
valid = st.tuples(st.just("ok"), ids, ids, seconds, values)
broken = st.one_of(
    st.tuples(st.just("user_missing"), st.just(""), ids, seconds, values),
    st.tuples(st.just("item_missing"), ids, st.just(" "), seconds, values),
    st.tuples(st.just("timestamp_missing"), ids, ids, st.just(""), values),
    st.tuples(st.just("timestamp_unparseable"), ids, ids, st.sampled_from(["12x", "soon", "1.2.3"]), values),
    st.tuples(st.just("timestamp_out_of_range"), ids, ids, st.integers(10**12, 10**20), values),
    st.tuples(st.just("value_unparseable"), ids, ids, seconds, st.sampled_from(["abc", "inf", "1e400"])),
)


def _field(value) -> str:
    if value is None:
        return ""
    text = str(value)
    return f'"{text}"' if any(c in text for c in ',"') else text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.one_of(valid, valid, broken), min_size=1, max_size=40))
def test_every_row_is_kept_or_rejected_with_its_reason(rows) -> None:
    assume(any(r[0] == "ok" for r in rows))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "log.csv"
        lines = ["user,item,ts,v"] + [",".join(_field(x) for x in r[1:]) for r in rows]
        src.write_text("\n".join(lines) + "\n", encoding="utf-8")
        manifest = ingest(SPEC, [str(src)], Path(tmp) / "out")
        kept = pl.read_parquet(Path(tmp) / "out" / "interactions.parquet")
        rejects = pl.read_parquet(Path(tmp) / "out" / "rejects.parquet")

    expected_valid = {(u, i, datetime.fromtimestamp(t, UTC), v) for kind, u, i, t, v in rows if kind == "ok"}
    got = {(r["user_id"], r["item_id"], r["timestamp"], r["value"]) for r in kept.to_dicts()}
    assert got == expected_valid
    assert len(kept) == len(expected_valid)  # exact duplicates collapse to one

    expected_rejects = [(line, kind) for line, (kind, *_) in enumerate(rows, start=2) if kind != "ok"]
    assert rejects.select("line", "reason").rows() == expected_rejects
    assert rejects["detail"].null_count() == 0

    counts = manifest["counts"]
    assert counts["rows_read"] == len(rows)
    assert counts["rows_kept"] + counts["rows_rejected"] + counts["duplicates_removed"] == counts["rows_read"]
    assert sum(counts["rejected_by_reason"].values()) == counts["rows_rejected"]
    # dense codes: 0..n-1, one per distinct id
    assert sorted(kept["user_idx"].unique()) == list(range(kept["user_id"].n_unique()))
    assert kept.group_by("user_id").agg(pl.col("user_idx").n_unique())["user_idx"].max() == 1
