"""`persotool train`: fit a model on a split and save it as arrays plus JSON."""

from pathlib import Path
from typing import Annotated

import typer

from persotool.cli.options import Command, ExperimentOpt, ForceOpt, JsonOpt, NoTrackOpt, OutOpt, key_values, show

EXAMPLES = """
[bold]Examples[/bold]

  persotool train build/movielens-split --config configs/models/lightfm.toml -o build/models/lightfm

  persotool train build/movielens-split --model ease --set l2=300 -o build/models/ease
"""


def train_command(
    split_dir: Annotated[Path, typer.Argument(help="A split directory from `persotool split`.")],
    out: OutOpt,
    model: Annotated[
        str | None, typer.Option("--model", help="random, popular, itemknn, ease, als, bpr, lightfm.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Model config (configs/models/*.toml).")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Hyperparameter KEY=VALUE, repeatable.")] = None,
    valid_k: Annotated[int, typer.Option("--valid-k", help="Cut-off of the validation NDCG for early stopping.")] = 10,
    no_features: Annotated[bool, typer.Option("--no-features", metavar="", help="Ignore user/item features.")] = False,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    no_track: NoTrackOpt = False,
    experiment: ExperimentOpt = None,
) -> None:
    """Train a recommender on a split's training part (early stopping on its validation part)."""
    from persotool import workflow

    tracking = workflow.tracker(experiment, enabled=not no_track)
    trained = workflow.train(
        split_dir,
        model,
        out,
        params=key_values(sets, "--set", "KEY=VALUE, e.g. --set components=64"),
        config=config,
        valid_k=valid_k,
        use_features=not no_features,
        force=force,
        track=tracking,
    )
    show(trained, as_json)


def register(app: typer.Typer) -> None:
    app.command("train", epilog=EXAMPLES, cls=Command)(train_command)
