"""Raw interaction logs -> a canonical, versioned dataset directory.

The output directory holds `interactions.parquet` (dense int32 codes, UTC timestamps, sessions),
`users.parquet`, `items.parquet`, `rejects.parquet` and `manifest.json`. It is built in a temporary
directory and renamed into place only when complete.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from persotool.errors import DataError
from persotool.kernels import storage as artifacts
from persotool.stages.ingest._attributes import _attributes
from persotool.stages.ingest._columns import BLOCK, _blocks, _present, sort_unique, time_ranks
from persotool.stages.ingest._encode import REASONS, _encode
from persotool.stages.ingest._privacy import opted_out, pseudonymizer
from persotool.stages.ingest._read import (
    _byte_checks_first,
    _coded_types,
    _confirm,
    _load_source,
    _Loaded,
    _Recheck,
    _with_time,
)
from persotool.stages.ingest._rejects import REJECT_SCHEMA, _attach_raw, _reject_details
from persotool.stages.ingest.config import IngestConfig
from persotool.stages.ingest.parsing import UTC_DTYPE
from persotool.stages.ingest.sources import (
    EmptySource,
    discover,
    identify,
)

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


class _Phases:
    """Wall-clock seconds per phase of a run, recorded in the manifest and as MLflow metrics."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + now - self._last, 3)
        self._last = now


def run(sources, cfg: IngestConfig, out: Path, *, force: bool = False):
    """Raw logs (files, globs, directories) -> a dataset directory at `out`."""
    from persotool.stages.ingest.result import Dataset

    paths = [str(sources)] if isinstance(sources, str | Path) else [str(s) for s in sources]
    ingest(cfg, paths, Path(out), force=force)
    return Dataset(out)


def ingest(spec: IngestConfig, sources: list[str], out: Path, *, force: bool = False) -> dict[str, Any]:
    """Ingest raw logs into `out`; return the manifest (also written as `out/manifest.json`)."""
    if spec.columns.impressions:
        from persotool.stages.ingest._impressions import ingest_impressions

        return ingest_impressions(spec, sources, out, force=force)
    careful: set[Path] = set()
    while True:
        try:
            return _ingest(spec, sources, out, force=force, careful=careful)
        except _Recheck as again:
            careful |= again.paths  # grows every time: the loop ends


def _ingest(spec: IngestConfig, sources: list[str], out: Path, *, force: bool, careful: set[Path]) -> dict[str, Any]:
    """The phases in order. Each names what it leaves behind; the big row columns live in one
    `_Rows` whose buffers the later phases reuse in place (see `_sort_dedupe` and `_sessions`)."""
    started = time.perf_counter()
    phases = _Phases()
    paths, hidden = discover(sources, spec.source.format)
    pseudonymize = pseudonymizer(spec) if spec.pseudonymize else None
    loaded: list[_Loaded] = []
    inputs = [*paths, *(Path(s) for s in sources if Path(s).is_dir())]
    inputs += [Path(table.path) for table in (spec.items, spec.users) if table is not None]
    with artifacts.atomic_directory(out, force=force, inputs=inputs) as tmp, _byte_checks_first(loaded):
        work = tmp / ".work"
        work.mkdir()
        types = _coded_types()
        files, empty = _read_sources(paths, spec, work, types, careful, loaded)
        phases.mark("read")
        raw, offsets, fmt_by_file = _parse_time(loaded, spec, types)
        phases.mark("parse_time")
        coded = _encode(raw, spec)
        phases.mark("encode")
        counts: dict[str, Any] = {"rows_read": len(raw), "blank_lines": sum(item.blank_lines for item in loaded)}
        counts |= {"files_read": len(files), "files_empty": len(empty), "files_hidden_skipped": len(hidden)}
        gone, opted_out_users = opted_out(coded, len(raw))
        counts |= {"opted_out_users": opted_out_users, "opted_out_rows": int(gone.sum())}
        rejected = (coded.reason != 0) & ~gone
        rejects = _rejected_rows(raw, coded, np.flatnonzero(rejected), offsets, loaded)
        rows = _kept_rows(raw, coded, ~rejected & ~gone)
        del raw, gone, rejected
        by_reason = dict(sorted(Counter(rejects["reason"].to_list()).items()))
        counts |= {"rows_rejected": len(rejects), "rejected_by_reason": by_reason}
        considered = counts["rows_read"] - counts["opted_out_rows"]
        _check_rejects(rejects, by_reason, considered, len(rows.user), spec, fmt_by_file, files)
        phases.mark("reject")
        users, items = _final_codes(rows, coded, pseudonymize)
        phases.mark("recode")
        packed, counts["duplicates_removed"] = _sort_dedupe(rows, users, items, coded)
        phases.mark("sort_dedupe")
        sessions = _sessions(rows, packed, len(items.codes), spec.session_gap_minutes)
        weight, value_of, counts["below_threshold"] = _weights(spec, coded, rows.value)
        _confirm(loaded)  # the background byte checks passed: nothing is written before
        phases.mark("sessions")
        timed = spec.columns.time is not None
        _write_interactions(rows, sessions.session, users, items, coded.events, value_of, weight, tmp, timed)
        phases.mark("write")
        user_table, item_table, time_range, n_sessions = _user_item_tables(rows, sessions, users, items, timed)
        kept_rows = len(rows.user)
        del rows, sessions, packed
        user_table, item_table, attribute_sources = _with_attributes(
            spec, user_table, item_table, users, items, work, pseudonymize, counts
        )
        user_table.write_parquet(tmp / "users.parquet")
        item_table.write_parquet(tmp / "items.parquet")
        phases.mark("users_items")
        _reject_table(rejects, files, fmt_by_file, loaded, spec, pseudonymize).write_parquet(tmp / "rejects.parquet")
        import shutil

        shutil.rmtree(work)
        n_users, n_items = len(users.codes), len(items.codes)
        counts |= {
            "rows_kept": kept_rows,
            "n_users": n_users,
            "n_items": n_items,
            "n_sessions": n_sessions,
            "density": kept_rows / (n_users * n_items),
        }
        phases.mark("rejects")
        manifest = _manifest(spec, out, tmp, files, fmt_by_file, attribute_sources, counts, time_range)
        manifest |= {"seconds": round(time.perf_counter() - started, 3), "phase_seconds": phases.seconds}
        artifacts.write_json_atomic(tmp / artifacts.MANIFEST, manifest)
    return manifest


def _read_sources(paths, spec: IngestConfig, work: Path, types, careful, loaded: list) -> tuple[list, list[Path]]:
    """Identify and read every source. In a source of several files, a file with no data rows (an
    hour with only a header) is normal: counted and skipped; a single such file, or all of them,
    is an error."""
    files, empty, first = [], [], None
    for path in paths:
        try:
            source = identify(path, spec.source.format)
            item = _load_source(source, spec, work, types, source.path in careful)
        except EmptySource as exc:
            if len(paths) == 1:
                raise
            empty.append(path)
            first = first or exc
            continue
        files.append(source)
        loaded.append(item)
    if not files:
        raise DataError(f"every one of the {len(paths)} files has no data rows (the first: {first.line()})")
    return files, empty


def _parse_time(loaded: list[_Loaded], spec: IngestConfig, types) -> tuple[pl.DataFrame, np.ndarray, dict]:
    """Every file's rows with parsed timestamps, as one frame; each file's first row in it; the
    time format found in each file."""
    parts, fmt_by_file = [], {}
    for number, item in enumerate(loaded):
        part, fmt_by_file[number] = _with_time(item, spec, types)
        parts.append(part)
    offsets = np.cumsum([0] + [len(part) for part in parts])
    raw = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]
    return raw, offsets, fmt_by_file


@dataclass
class _Rows:
    """The kept rows as parallel columns of provisional codes, then final codes, then (after the
    sort) distinct rows ordered by user and time. `stamps` holds microseconds since the epoch."""

    user: np.ndarray
    item: np.ndarray
    event: np.ndarray
    value: np.ndarray
    stamps: np.ndarray


def _kept_rows(raw: pl.DataFrame, coded, kept: np.ndarray) -> _Rows:
    every = bool(kept.all())  # the common case: nothing to drop, no copies

    def keep(values: np.ndarray) -> np.ndarray:
        return values if every else values[kept]

    stamps = raw["timestamp"].to_physical()  # null only in rejected rows
    stamps = (stamps if every else stamps.filter(pl.Series(kept))).to_numpy()
    if not stamps.flags.writeable:
        stamps = stamps.copy()  # the sort writes ranks over it
    return _Rows(keep(coded.user), keep(coded.item), keep(coded.event), keep(coded.value), stamps)


@dataclass
class _Vocabulary:
    """Final dense codes of one side (users or items): `codes[k]` is the provisional code of final
    code k, `ids` the original ids by final code, `public` the ids as written (pseudonyms)."""

    codes: np.ndarray
    ids: pl.Series
    public: pl.Series


def _recode(column: np.ndarray, codes: np.ndarray, size: int) -> np.ndarray:
    if len(codes) == size and (codes == np.arange(size)).all():
        return column.astype(np.int32, copy=False)  # every provisional code kept, in order: already final
    lookup = np.full(size, -1, dtype=np.int32)
    lookup[codes] = np.arange(len(codes), dtype=np.int32)
    return lookup[column]


def _final_codes(rows: _Rows, coded, pseudonymize) -> tuple[_Vocabulary, _Vocabulary]:
    """Dense codes for the users and items that kept at least one row (users ordered by pseudonym
    when pseudonymized, so codes do not reveal the original order); `rows` recoded to them."""
    user_codes = _present(rows.user, len(coded.users))
    user_ids = user_public = coded.users.gather(user_codes)
    if pseudonymize is not None:
        public = pl.Series(pseudonymize(user_ids.to_list()), dtype=pl.String)
        order = public.arg_sort()
        user_codes, user_ids, user_public = user_codes[order.to_numpy()], user_ids.gather(order), public.gather(order)
    item_codes = _present(rows.item, len(coded.items))
    item_ids = coded.items.gather(item_codes)
    rows.user = _recode(rows.user, user_codes, len(coded.users))
    rows.item = _recode(rows.item, item_codes, len(coded.items))
    return _Vocabulary(user_codes, user_ids, user_public), _Vocabulary(item_codes, item_ids, item_ids)


def _sort_dedupe(rows: _Rows, users: _Vocabulary, items: _Vocabulary, coded) -> tuple[np.ndarray, int]:
    """Sort the rows by user, time, item, event and value and drop exact duplicates, in place.
    Returns the uint64 buffer the sort packed rows into (free again afterwards: `_sessions` reuses
    it) and the number of duplicates removed.

    Memory: the timestamps are replaced by their dense ranks in the same buffer (`time_ranks`), the
    ranks sort with the other columns, and are turned back into timestamps in place, so the sort
    needs one extra uint64 column however many columns it orders."""
    n = len(rows.user)
    rank, time_values = time_ranks(rows.stamps)  # a uint64 view of the stamps' memory
    packed = np.empty(n, dtype=np.uint64)
    columns = [rows.user, rank, rows.item, rows.event, rows.value]
    sizes = [len(users.codes), len(time_values), len(items.codes), len(coded.events), len(coded.values)]
    m = sort_unique(columns, sizes, packed)
    rows.user, rank, rows.item, rows.event, rows.value = (column[:m] for column in columns)
    del columns
    stamps = rank.view(np.int64)  # the same memory: ranks become timestamps again, block by block
    for start, stop in _blocks(m):
        stamps[start:stop] = time_values[stamps[start:stop]]
    rows.stamps = stamps
    return packed, n - m


@dataclass
class _Sessions:
    starts: np.ndarray  # each user's first row (rows are sorted by user)
    ends: np.ndarray  # and last row
    item_users: np.ndarray  # distinct users per item
    session: np.ndarray  # session number of every row, 0-based, global


def _sessions(rows: _Rows, packed: np.ndarray, n_items: int, gap_minutes: float) -> _Sessions:
    """User runs, distinct users per item and sessions (a new user, or a gap longer than
    `gap_minutes`). The sort's `packed` buffer holds first the (user, item) pairs, then the
    session numbers: the same memory, one name per meaning."""
    user, item, stamps, m = rows.user, rows.item, rows.stamps, len(rows.user)
    starts = np.flatnonzero(np.concatenate(([True], user[1:] != user[:-1])))
    ends = np.append(starts[1:], m) - 1
    pairs = packed[:m].view(np.int64)
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
    session = pairs  # the pairs are counted: the buffer now holds session starts, then numbers
    del pairs
    session[:1] = 1
    np.not_equal(user[1:], user[:-1], out=session[1:], casting="unsafe")
    gap = np.int64(gap_minutes * 60 * 1_000_000)
    for start, stop in _blocks(m - 1):
        session[start + 1 : stop + 1] |= (stamps[start + 1 : stop + 1] - stamps[start:stop]) > gap
    np.cumsum(session, out=session)
    session -= 1
    return _Sessions(starts, ends, item_users, session)


def _weights(spec: IngestConfig, coded, value: np.ndarray) -> tuple[pl.Expr, pl.Series, int]:
    """The weight of every row as an expression over its event and value codes (0 below the
    relevance threshold), the value of each value code, and how many rows fall below."""
    event_weights = spec.events or {}
    weights = pl.Series([float(event_weights.get(e, 1.0)) for e in coded.events.to_list()], dtype=pl.Float64)
    value_of = pl.Series(coded.values).fill_nan(None)  # by value code; code 0 is no value
    weight = pl.lit(weights).gather(pl.col("event"))
    if spec.relevance_threshold is None:
        return weight, value_of, 0
    below = coded.values < spec.relevance_threshold  # False for a missing value (NaN)
    weight = pl.when(pl.lit(pl.Series(below)).gather(pl.col("value"))).then(0.0).otherwise(weight)
    n_below = int(np.bincount(value, minlength=len(below))[below].sum()) if below.any() else 0
    return weight, value_of, n_below


def _write_interactions(
    rows: _Rows,
    session: np.ndarray,
    users: _Vocabulary,
    items: _Vocabulary,
    events,
    value_of,
    weight,
    tmp: Path,
    timed: bool = True,
) -> None:
    """interactions.parquet, streamed: ids, events and weights are looked up a morsel at a time; a
    log without times has null timestamps (and one session per user)."""
    pl.LazyFrame(
        {
            "user_idx": rows.user,
            "item_idx": rows.item,
            "timestamp": rows.stamps,
            "event": rows.event,
            "value": rows.value,
            "session": session,
        }
    ).select(
        user_idx=pl.col("user_idx"),
        item_idx=pl.col("item_idx"),
        user_id=pl.lit(users.public).gather(pl.col("user_idx")),
        item_id=pl.lit(items.public).gather(pl.col("item_idx")),
        timestamp=pl.col("timestamp").cast(UTC_DTYPE) if timed else pl.lit(None, dtype=UTC_DTYPE),
        event=pl.lit(events).gather(pl.col("event")),
        value=pl.lit(value_of).gather(pl.col("value")),
        weight=weight,
        session_id=pl.col("session"),
    ).cast(INTERACTION_SCHEMA).sink_parquet(tmp / "interactions.parquet", compression="zstd", compression_level=1)


def _user_item_tables(rows: _Rows, s: _Sessions, users: _Vocabulary, items: _Vocabulary, timed: bool = True):
    """users and items tables (counts, sessions, first and last seen), the time range and the
    number of sessions."""
    stamps, n_items = rows.stamps, len(items.codes)
    user_table = pl.DataFrame(
        {
            "user_idx": rows.user[s.starts],
            "user_id": users.public,
            "n_interactions": s.ends - s.starts + 1,
            "n_sessions": s.session[s.ends] - s.session[s.starts] + 1,
            "first_seen": pl.Series(stamps[s.starts]).cast(UTC_DTYPE) if timed else None,
            "last_seen": pl.Series(stamps[s.ends]).cast(UTC_DTYPE) if timed else None,
        },
        schema_overrides={"n_interactions": pl.UInt32, "n_sessions": pl.UInt32},
    )
    item_table = pl.DataFrame(
        {
            "item_idx": np.arange(n_items, dtype=np.int32),
            "item_id": items.public,
            "n_interactions": np.bincount(rows.item, minlength=n_items),
            "n_users": s.item_users,
        },
        schema_overrides={"n_interactions": pl.UInt32, "n_users": pl.UInt32},
    )
    time_range = (int(stamps.min()), int(stamps.max())) if timed else (None, None)
    return user_table, item_table, time_range, int(s.session[-1]) + 1


def _with_attributes(spec, user_table, item_table, users: _Vocabulary, items: _Vocabulary, work, pseudonymize, counts):
    """The users and items tables joined with their attribute files, if any; which files."""
    sources = []
    if spec.users is not None:
        table, extra = _attributes(spec.users, users.ids, users.public, "user", work, pseudonymize)
        user_table = user_table.join(table.drop("user_id"), on="user_idx", how="left")
        counts |= extra
        sources.append(("users", spec.users.path))
    if spec.items is not None:
        table, extra = _attributes(spec.items, items.ids, items.public, "item", work, None)
        item_table = item_table.join(table.drop("item_id"), on="item_idx", how="left")
        counts |= extra
        sources.append(("items", spec.items.path))
    user_table = user_table.select("user_idx", "user_id", pl.exclude("user_idx", "user_id"))
    item_table = item_table.select("item_idx", "item_id", pl.exclude("item_idx", "item_id"))
    return user_table, item_table, sources


def _manifest(spec, out, tmp, files, fmt_by_file, attribute_sources, counts, time_range) -> dict[str, Any]:
    file_digests = {
        name: artifacts.file_sha256(tmp / name)
        for name in ("interactions.parquet", "users.parquet", "items.parquet", "rejects.parquet")
    }
    config = spec.model_dump(mode="json")
    tmin, tmax = pl.Series(time_range).cast(UTC_DTYPE).to_list()
    sources = [
        {"path": str(s.path), "format": s.format, "compression": s.compression, "bytes": s.size, "sha256": s.sha256}
        for s in files
    ]
    sources += [
        {"path": str(p), "role": role, "sha256": artifacts.file_sha256(Path(p))} for role, p in attribute_sources
    ]
    return artifacts.new_manifest(
        "dataset",
        1,
        name=Path(out).name,
        # content only: the same events from other files (reordered, recompressed) are the same dataset
        dataset_digest=artifacts.directory_digest(file_digests),
        config=config,
        config_hash=artifacts.config_hash(config),
        time_format_detected={str(files[k].path): v for k, v in fmt_by_file.items()},
        sources=sources,
        counts=counts,
        time_min=tmin.isoformat() if tmin else None,
        time_max=tmax.isoformat() if tmax else None,
        files=file_digests,
    )


def _rejected_rows(raw: pl.DataFrame, coded, rows: np.ndarray, offsets: np.ndarray, loaded: list) -> pl.DataFrame:
    """The rejected rows with their file, line, reason and the fields their details quote."""
    if not len(rows):
        return pl.DataFrame(schema={"__file": pl.Int32, "__line": pl.Int64, "reason": pl.String})
    picked = raw[rows]
    file_of = np.searchsorted(offsets, rows, side="right") - 1
    line_of = np.empty(len(rows), dtype=np.int64)
    for number, item in enumerate(loaded):
        mine = file_of == number
        line_of[mine] = item.line_numbers(rows[mine] - offsets[number])
    return picked.select(
        __file=pl.Series(file_of, dtype=pl.Int32),
        __line=pl.Series(line_of),
        __raw_time=pl.col("__raw_time").cast(pl.String),
        reason=pl.Series([REASONS[c - 1] for c in coded.reason[rows].tolist()], dtype=pl.String),
        user_id=pl.col("user").cast(pl.String).str.strip_chars(),
        item_id=pl.col("item").cast(pl.String).str.strip_chars(),
        **({"__raw_value": pl.col("value").cast(pl.String)} if "value" in picked.columns else {}),
    )


def _check_rejects(
    rejects: pl.DataFrame, by_reason: dict, considered: int, kept: int, spec: IngestConfig, fmt_by_file: dict, files
) -> None:
    """Fail, naming the first rejected line, when more rows were rejected than the spec allows (or
    when nothing is left)."""
    if len(rejects) and (kept == 0 or len(rejects) > spec.max_reject_rate * considered):
        first = rejects.sort(["__file", "__line"]).head(1)
        detail = _reject_details(first, fmt_by_file)[0]
        share = len(rejects) / max(considered, 1)
        raise DataError(
            f"{detail}; {len(rejects)} of {considered} rows rejected ({share:.0%}), more than "
            f"`max_reject_rate` {spec.max_reject_rate:g} allows: {_summary(by_reason)}",
            where=f"{files[first['__file'][0]].path}:{first['__line'][0]}",
        )
    if kept == 0:
        raise DataError("no rows left after removing opted-out users", where=str(files[0].path))


def _reject_table(rejects: pl.DataFrame, files, fmt_by_file: dict, loaded: list, spec: IngestConfig, pseudonymize):
    """rejects.parquet: source, line, reason, detail and the quoted text of every rejected row."""
    rejects = rejects.sort(["__file", "__line"])
    empty = pl.Series([], dtype=pl.String)
    return pl.DataFrame(
        {
            "source": pl.Series([str(files[i].path) for i in rejects["__file"].to_list()], dtype=pl.String),
            "line": rejects["__line"].cast(pl.Int64),
            "reason": rejects["reason"],
            "detail": _reject_details(rejects, fmt_by_file) if len(rejects) else empty,
            "raw": _attach_raw(rejects, loaded, spec, pseudonymize) if len(rejects) else empty,
        },
        schema=REJECT_SCHEMA,
    )


def _summary(by_reason: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(by_reason.items(), key=lambda kv: -kv[1]))
