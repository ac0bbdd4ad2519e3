"""Ingest, rejects: why each rejected row was rejected, and the text it is quoted with (its mapped
fields, the whole line on request, or pseudonymized)."""

from __future__ import annotations

import numpy as np
import polars as pl

from persotool.stages.ingest._encode import REASON_TEXT
from persotool.stages.ingest._read import _Loaded, _mapped_columns
from persotool.stages.ingest.config import IngestConfig
from persotool.stages.ingest.sources import (
    SUBSTITUTE,
    read_lines,
)

REJECT_SCHEMA = {"source": pl.String, "line": pl.Int64, "reason": pl.String, "detail": pl.String, "raw": pl.String}


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
