"""`persotool train`: fit a model on a split and save it as arrays plus JSON."""

from pathlib import Path
from typing import Annotated, Any

import typer

from persotool.cli.options import Command, ExperimentOpt, ForceOpt, JsonOpt, NoTrackOpt, OutOpt, console, print_json

EXAMPLES = """
[bold]Examples[/bold]

  persotool train build/movielens-split --config configs/models/lightfm.toml -o build/models/lightfm

  persotool train build/movielens-split --model ease --set l2=300 -o build/models/ease
"""


def parse_sets(pairs: list[str] | None) -> dict[str, Any]:
    """--set key=value pairs; values are read as TOML (numbers, booleans, strings)."""
    import tomllib

    from persotool.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set components=64")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value.strip()
    return out


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

    tracking = workflow.tracking(experiment, enabled=not no_track)
    trained = workflow.train(
        split_dir,
        model,
        out,
        params=parse_sets(sets),
        config=config,
        valid_k=valid_k,
        use_features=not no_features,
        force=force,
        track=tracking,
    )
    manifest, run_id, name = trained.manifest, trained.mlflow_run_id, trained.manifest["model"]
    history = manifest.get("history") or {}
    valid_key = f"valid_{manifest['valid_metric']}"
    result = {
        "output": str(out),
        "model": name,
        "params": manifest["params"],
        "fit_seconds": manifest["fit_seconds"],
        "epochs": len(next(iter(history.values()), [])),
        "item_features": manifest["item_features"],
        "mlflow_run_id": run_id,
    }
    if valid_key in history:
        result[f"best_{valid_key}"] = max(history[valid_key])
    if as_json:
        print_json(result)
        return
    c = console()
    c.print(f"[bold]Trained[/bold] {name} in {manifest['fit_seconds']:.2f}s -> {out}")
    if valid_key in history:
        c.print(
            f"best validation {manifest['valid_metric']}: {max(history[valid_key]):.4f} "
            f"after {len(history[valid_key])} epochs"
        )


def register(app: typer.Typer) -> None:
    app.command("train", epilog=EXAMPLES, cls=Command)(train_command)
