"""`persotool tune`: a hyperparameter study with Optuna, resumable and shared between workers."""

from persotool.cli.stage import Source, Spec

EXAMPLES = """
[bold]Examples[/bold]

  persotool tune build/demo/split --space ease --trials 20 -o build/tune-ease

  persotool tune build/split --model lightfm --space lightfm --trials 50 -o build/tune-lfm \\
      --study lfm --storage postgresql://tuner@db/optuna     # the same command on every worker

  persotool tune build/split --space lightfm --metric ndcg@10 --metric diversity@10 -o build/pareto
"""

SPEC = Spec(
    name="tune",
    summary="Tune a model's hyperparameters on a split's validation part: resumable (rerun to continue), "
    "shared by workers through --storage, each trial an MLflow run under the study's.",
    examples=EXAMPLES,
    source=Source("A split directory with a validation part (`split --valid`)."),
    flags={"metrics": "--metric", "directions": "--direction", "prune": "--no-prune"},
    progress="trial {0} done",
    after="Written to {out} (trials.parquet, best.toml when a trial completed, plots).",
)
