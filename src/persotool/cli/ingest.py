"""`persotool ingest`: raw logs -> a canonical dataset directory, recorded in MLflow."""

from pathlib import Path
from typing import Annotated

import typer

from persotool.cli.options import (
    Command,
    ExperimentOpt,
    ForceOpt,
    JsonOpt,
    NoTrackOpt,
    OutOpt,
    key_values,
    name_list,
    number,
    show,
)

EXAMPLES = """
[bold]Examples[/bold]

  persotool ingest datasets/movielens-small/ratings.csv --preset movielens -o build/movielens

  persotool ingest 'logs/*.jsonl.gz' --user-col uid --item-col sku --time-col ts --time-format ms \\
      --event-col type --event-weight view=1 --event-weight purchase=5 -o build/shop

  persotool ingest ml-1m/ratings.dat --no-header --columns user,item,rating,ts --delimiter '::' \\
      --user-col user --item-col item --time-col ts --value-col rating -o build/ml1m
"""


def ingest_command(
    sources: Annotated[list[str], typer.Argument(help="Files, globs or directories of raw logs.", show_default=False)],
    out: OutOpt,
    schema: Annotated[Path | None, typer.Option("--schema", help="Schema file (configs/schemas/*.toml).")] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="Built-in layout: movielens.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="auto, csv, jsonl or parquet.")] = None,
    user_col: Annotated[str | None, typer.Option("--user-col", help="Column with the user id.")] = None,
    item_col: Annotated[str | None, typer.Option("--item-col", help="Column with the item id.")] = None,
    time_col: Annotated[str | None, typer.Option("--time-col", help="Column with the timestamp.")] = None,
    time_format: Annotated[
        str | None, typer.Option("--time-format", help="auto, s, ms, us, ns (epoch), iso, or a strftime pattern.")
    ] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="Zone of timestamps without one (default UTC).")
    ] = None,
    event_col: Annotated[str | None, typer.Option("--event-col", help="Column with the event type.")] = None,
    value_col: Annotated[str | None, typer.Option("--value-col", help="Column with a value, e.g. a rating.")] = None,
    consent_col: Annotated[
        str | None, typer.Option("--consent-col", help="Column whose false/no/0/opt-out removes that user entirely.")
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option("--delimiter", help="Field delimiter, any length (e.g. ';', '\\t', '::'); sniffed if omitted."),
    ] = None,
    quote: Annotated[
        str | None,
        typer.Option("--quote", help="Quote character (default '\"'); '' turns quoting off, e.g. for Last.fm TSVs."),
    ] = None,
    no_header: Annotated[bool, typer.Option("--no-header", metavar="", help="The files have no header line.")] = False,
    columns: Annotated[str | None, typer.Option("--columns", help="Column names for --no-header files: a,b,c.")] = None,
    event_weight: Annotated[
        list[str] | None,
        typer.Option("--event-weight", help="NAME=WEIGHT, repeatable; events not listed are rejected."),
    ] = None,
    relevance_threshold: Annotated[
        float | None, typer.Option("--relevance-threshold", help="Values below it get weight 0 (kept, not relevant).")
    ] = None,
    session_gap: Annotated[
        float | None, typer.Option("--session-gap", help="Minutes of inactivity that end a session (default 30).")
    ] = None,
    max_reject_rate: Annotated[
        float | None,
        typer.Option("--max-reject-rate", help="Fail when more than this share of rows is rejected (default 0.1)."),
    ] = None,
    items: Annotated[Path | None, typer.Option("--items", help="Item attribute file (e.g. movies.csv).")] = None,
    item_key: Annotated[str | None, typer.Option("--item-key", help="Item id column in --items.")] = None,
    item_features: Annotated[
        str | None, typer.Option("--item-features", help="Columns of --items to use as features: a,b.")
    ] = None,
    list_separator: Annotated[
        str | None,
        typer.Option(
            "--list-separator",
            help="Splits list-valued attribute cells into one feature per token: '|' (default), ' ' for "
            "space-separated genres, ',' ...; '' keeps each cell whole.",
        ),
    ] = None,
    users: Annotated[Path | None, typer.Option("--users", help="User attribute file.")] = None,
    user_key: Annotated[str | None, typer.Option("--user-key", help="User id column in --users.")] = None,
    user_features: Annotated[
        str | None, typer.Option("--user-features", help="Columns of --users to use as features: a,b.")
    ] = None,
    pseudonymize: Annotated[
        bool,
        typer.Option(
            "--pseudonymize",
            metavar="",
            help="Replace user ids with a keyed HMAC; the key comes from $PERSOTOOL_PSEUDONYM_KEY.",
        ),
    ] = False,
    keep_raw_rejects: Annotated[
        bool,
        typer.Option(
            "--keep-raw-rejects",
            metavar="",
            help="rejects.parquet quotes whole rejected lines (default: only their mapped fields, no personal extras).",
        ),
    ] = False,
    key_env: Annotated[
        str | None, typer.Option("--key-env", help="Environment variable holding the pseudonym key.")
    ] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    no_track: NoTrackOpt = False,
    experiment: ExperimentOpt = None,
) -> None:
    """Ingest raw interaction logs (CSV/TSV/JSONL/Parquet, plain, gzip or zstd) into a dataset."""
    from persotool import workflow

    weights = key_values(event_weight, "--event-weight", "NAME=NUMBER, e.g. purchase=5", number)
    dataset = workflow.ingest(
        sources,
        out,
        force=force,
        track=workflow.tracker(experiment, enabled=not no_track),
        preset=preset,
        schema=schema,
        list_separator=list_separator,
        format=fmt,
        delimiter=delimiter,
        quote=quote,
        header=False if no_header else None,
        columns=name_list(columns),
        user_col=user_col,
        item_col=item_col,
        time_col=time_col,
        time_format=time_format,
        timezone=timezone,
        event_col=event_col,
        value_col=value_col,
        consent_col=consent_col,
        event_weights=weights or None,
        relevance_threshold=relevance_threshold,
        session_gap=session_gap,
        max_reject_rate=max_reject_rate,
        pseudonymize=pseudonymize,
        keep_raw_rejects=keep_raw_rejects,
        key_env=key_env,
        items=items,
        item_key=item_key,
        item_features=name_list(item_features),
        users=users,
        user_key=user_key,
        user_features=name_list(user_features),
    )
    show(dataset, as_json)


def register(app: typer.Typer) -> None:
    app.command("ingest", epilog=EXAMPLES, cls=Command)(ingest_command)
