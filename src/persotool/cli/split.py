"""`persotool split`: a dataset -> train / valid / test, leakage-aware and deterministic."""

from persotool.cli.stage import Source, Spec

EXAMPLES = """
[bold]Examples[/bold]

  persotool split build/movielens -o build/movielens-split --strategy temporal --cutoff 0.8 --valid

  persotool split build/shop -o build/shop-split --strategy leave-last --leave-last 2 --min-user-interactions 5
"""

SPEC = Spec(
    name="split",
    summary="Split a dataset into train/valid/test with a leakage report.",
    examples=EXAMPLES,
    source=Source("A dataset directory from `persotool ingest`."),
)
