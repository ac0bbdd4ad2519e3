"""`persotool explain`: why a trained model recommends a user's top items."""

from persotool.cli.stage import Source, Spec

EXAMPLES = """
[bold]Examples[/bold]

  persotool explain build/models/ease --user 42 --k 10

  persotool explain build/models/als --user 42 --reasons 3 --json
"""

SPEC = Spec(
    name="explain",
    summary="Explain: why a trained model recommends each of a user's top items, as contributions that add up "
    "to its score (history items for itemknn, ease, als, bpr and lightfm; popularity for popular).",
    examples=EXAMPLES,
    source=Source("A model directory from `persotool train` (or a benchmark's models/)."),
    out_required=False,
)
