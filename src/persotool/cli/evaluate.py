"""`persotool evaluate`: full-ranking metrics of a trained model, or of any system's ranked lists."""

from persotool.cli.stage import Source, Spec

EXAMPLES = """
[bold]Examples[/bold]

  persotool evaluate build/models/lightfm --k 5,10,20 --min ndcg@10=0.05

  persotool evaluate --recommendations recs.csv --truth test.csv --k 5,10 --json
"""

SPEC = Spec(
    name="evaluate",
    summary="Full-ranking evaluation (never sampled negatives), beyond-accuracy measures and per-segment CIs.",
    examples=EXAMPLES,
    source=Source("A model directory from `persotool train` (or none, with --recommendations).", optional=True),
    out_required=False,
)
