"""`persotool benchmark`: several models on one split, each tested against a baseline."""

from persotool.cli.stage import Source, Spec

EXAMPLES = """
[bold]Examples[/bold]

  persotool benchmark build/movielens-split --config benchmark -o build/benchmark

  persotool benchmark build/split --config benchmark -o build/b --baseline itemknn --only ease,lightfm

  persotool benchmark build/split --config benchmark --add ease-tuned=build/tune-ease/best.toml -o build/b
"""

SPEC = Spec(
    name="benchmark",
    summary="Train and evaluate several models on one split; test each against a baseline (paired t-test "
    "and Wilcoxon, Holm-corrected); write results.csv/.md, tests.csv, a plot and every model.",
    examples=EXAMPLES,
    source=Source("A split directory from `persotool split`."),
    config_default="benchmark",
    config_help="Benchmark config: the models and the baseline.",
    progress="{0}: {1}",
)
