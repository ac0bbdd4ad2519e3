"""Ingest, attribute tables: users.parquet / items.parquet columns and `features` lists from an
attribute file (MovieLens movies.csv, RecBole .item/.user)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from persotool.errors import DataError
from persotool.kernels import storage as artifacts
from persotool.stages.ingest._read import _first_line, _missing_column_error
from persotool.stages.ingest.config import AttributeSpec
from persotool.stages.ingest.parsing import clean_id
from persotool.stages.ingest.sources import identify
from persotool.stages.ingest.text import prepare_text


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
    # the file's key column, renamed by the join when it shares a name with ours (user_id, item_id)
    key = f"{spec_attr.key}_right" if spec_attr.key in index.columns else spec_attr.key
    unknown = rows - duplicates - int(joined[key].is_not_null().sum())
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
    drop = ["__key", key] if key != f"{kind}_id" else ["__key"]
    if pseudonymize is not None and kind == "user":
        drop = ["__key", key]  # the raw key column must not survive
    out = joined.with_columns(features=features).drop(drop)
    counts = {
        f"{kind}_attribute_rows": rows,
        f"{kind}_attribute_duplicates": duplicates,
        f"{kind}_attribute_unknown_ids": max(unknown, 0),
        f"{kind}s_without_attributes": int(joined[key].is_null().sum()),
    }
    return out, counts
