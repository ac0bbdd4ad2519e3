"""`persotool train`: fit a model on a split and save it as arrays plus JSON."""

from __future__ import annotations

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


def model_config(config: Path | None, model: str | None, sets: list[str] | None) -> tuple[str, dict[str, Any]]:
    from persotool.config import load_toml
    from persotool.errors import ConfigError

    data = load_toml(config) if config else {}
    unknown = set(data) - {"model", "params"}
    if unknown:
        raise ConfigError(
            f"{sorted(unknown)[0]}: is not a known setting (use model = ... and [params])", where=str(config)
        )
    name = model or data.get("model")
    if not name:
        raise ConfigError("say which model to train: --model NAME or a --config file with model = NAME")
    return name, {**data.get("params", {}), **parse_sets(sets)}


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
    from persotool.tracking import preflight

    tracking = preflight(not no_track, experiment)
    name, params = model_config(config, model, sets)
    from persotool.data.artifacts import check_output
    from persotool.data.splits import Split
    from persotool.models import training

    check_output(out, force=force, inputs=[split_dir])
    split = Split(split_dir)
    fitted, info = training.train(split, name, params, valid_k=valid_k, use_features=not no_features)
    manifest = training.save(fitted, out, split, info, force=force)
    from persotool.tracking import records

    run_id = records.record_training(tracking, out) if tracking.enabled else None
    history = info["history"]
    valid_key = f"valid_{info['valid_metric']}"
    result = {
        "output": str(out),
        "model": name,
        "params": manifest["params"],
        "fit_seconds": info["fit_seconds"],
        "epochs": len(next(iter(history.values()), [])),
        "item_features": info["item_features"],
        "mlflow_run_id": run_id,
    }
    if valid_key in history:
        result[f"best_{valid_key}"] = max(history[valid_key])
    if as_json:
        print_json(result)
        return
    c = console()
    c.print(f"[bold]Trained[/bold] {name} in {info['fit_seconds']:.2f}s -> {out}")
    if valid_key in history:
        c.print(
            f"best validation {info['valid_metric']}: {max(history[valid_key]):.4f} "
            f"after {len(history[valid_key])} epochs"
        )


def register(app: typer.Typer) -> None:
    app.command("train", epilog=EXAMPLES, cls=Command)(train_command)
