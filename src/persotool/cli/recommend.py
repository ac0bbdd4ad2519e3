"""`persotool recommend`: a trained model's top-k lists for real user ids."""

from persotool.cli.stage import Source, Spec

EXAMPLES = """
[bold]Examples[/bold]

  persotool recommend build/models/lightfm --all --k 20 -o build/recs

  persotool recommend build/models/ease --users users.txt --k 10 -o build/recs-ease
  persotool evaluate --recommendations build/recs-ease/recs.parquet --truth test.csv
"""

SPEC = Spec(
    name="recommend",
    summary="Recommend: each user's top-k items from a trained model, by real user and item ids "
    "(users the model cannot know get the popularity ranking, marked as such).",
    examples=EXAMPLES,
    source=Source("A model directory from `persotool train` (or a benchmark's models/)."),
    flags={"all_users": "--all"},
    after="Written to {out}/recs.parquet (user_id, item_id, rank, score, source).",
)
