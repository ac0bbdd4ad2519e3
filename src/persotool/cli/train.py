"""`persotool train`: fit a recommender on a split and save it as a model directory."""

from persotool.cli.stage import Source, Spec

EXAMPLES = """
[bold]Examples[/bold]

  persotool train build/movielens-split --config lightfm -o build/models/lightfm

  persotool train build/movielens-split --model ease --set l2=300 -o build/models/ease
"""

SPEC = Spec(
    name="train",
    summary="Train a recommender on a split's training part (early stopping on its validation part).",
    examples=EXAMPLES,
    source=Source("A split directory from `persotool split`."),
    flags={"use_features": "--no-features"},
    skip=("params",),
    set_prefix="params.",
    set_example="KEY=VALUE (a hyperparameter), e.g. --set components=64",
    config_help="Model config: model = NAME and [params] (a file such as a tuning's best.toml, or a shipped "
    "one by name: lightfm, ease...).",
)
