"""`persotool ingest`: raw interaction logs (any layout, any column names) -> a dataset directory."""

from persotool.cli.stage import Source, Spec

EXAMPLES = """
[bold]Examples[/bold]

  persotool ingest datasets/movielens-small/ratings.csv --preset movielens -o build/movielens

  persotool ingest 'logs/*.jsonl.gz' --user-col uid --item-col sku --time-col ts --time-format ms \\
      --event-col type --event-weight view=1 --event-weight purchase=5 -o build/shop

  persotool ingest ml-1m/ratings.dat --no-header --columns user,item,rating,ts --delimiter '::' \\
      --user-col user --item-col item --time-col ts --value-col rating -o build/ml1m
"""

SPEC = Spec(
    name="ingest",
    summary="Ingest raw interaction logs (CSV/TSV/JSONL/Parquet, plain, gzip or zstd) into a dataset.",
    examples=EXAMPLES,
    source=Source("Files, globs or directories of raw logs.", many=True),
    flags={"event_weights": "--event-weight"},
    skip=(),
)
