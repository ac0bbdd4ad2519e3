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
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from persotool.config import IngestConfig
from persotool.data import artifacts
from persotool.data.ingest._attributes import _attributes
from persotool.data.ingest._encode import REASONS, _encode
from persotool.data.ingest._read import (
    _byte_checks_first,
    _coded_types,
    _confirm,
    _load_source,
    _Loaded,
    _Recheck,
    _with_time,
)
from persotool.data.ingest._rejects import REJECT_SCHEMA, _attach_raw, _reject_details
from persotool.data.ingest.kernels import BLOCK, _blocks, _present, sort_unique, time_ranks
from persotool.data.parsing import UTC_DTYPE
from persotool.data.sources import (
    discover,
    identify,
)
from persotool.errors import ConfigError, DataError

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


class _Phases:
    """Wall-clock seconds per phase of a run, recorded in the manifest and as MLflow metrics."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + now - self._last, 3)
        self._last = now


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

        gone, opted_out_users = _opted_out(coded, rows_read)
        opted_out_rows = int(gone.sum())
        counts |= {"opted_out_users": opted_out_users, "opted_out_rows": opted_out_rows}
        rejected = (coded.reason != 0) & ~gone
        rejects = _rejected_rows(raw, coded, np.flatnonzero(rejected), offsets, loaded)
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
        _check_rejects(rejects, by_reason, rows_read - opted_out_rows, len(user), spec, fmt_by_file, files)

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
        _reject_table(rejects, files, fmt_by_file, loaded, spec, pseudonymize).write_parquet(tmp / "rejects.parquet")

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


def _opted_out(coded, rows: int) -> tuple[np.ndarray, int]:
    """Consent: a user who opted out anywhere is removed everywhere, rejects included. Returns the
    rows to drop and the number of users who opted out."""
    gone = np.zeros(rows, dtype=bool)
    if coded.consent is None:
        return gone, 0
    refused = np.unique(coded.user[(coded.consent == 0) & (coded.user >= 0)])
    if len(refused):
        refused_mask = np.zeros(len(coded.users), dtype=bool)
        refused_mask[refused] = True
        gone = (coded.user >= 0) & refused_mask[np.maximum(coded.user, 0)]
    return gone, len(refused)


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
