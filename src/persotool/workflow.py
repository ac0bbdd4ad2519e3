"""The workflow as Python calls, one per stage, each usable alone: the input artifact first, then a
config object or the keyword options the command-line flags map to, then `out`. Each returns the
typed artifact it wrote and, given `track` (a `Tracking`, see `tracker()`), records its MLflow run.
The commands are thin shells over these calls.

    import persotool as pt
    ds = pt.ingest("datasets/movielens-small/ratings.csv", "build/ml", preset="movielens")
    sp = pt.split(ds, "build/split", strategy="leave-last", leave_last=10, valid=True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from persotool.results import (
    Backtest,
    Benchmark,
    Dataset,
    Evaluation,
    Experiment,
    Split,
    SyntheticLog,
    TrainedModel,
    Tuning,
    World,
)

# Keyword options of `ingest` and where each goes in the IngestConfig (the CLI flags of the same names).
INGEST_OPTIONS = {
    "format": "source.format",
    "delimiter": "source.delimiter",
    "quote": "source.quote",
    "header": "source.header",
    "columns": "source.columns",
    "user_col": "columns.user",
    "item_col": "columns.item",
    "time_col": "columns.time",
    "time_format": "columns.time_format",
    "timezone": "columns.timezone",
    "event_col": "columns.event",
    "value_col": "columns.value",
    "consent_col": "columns.consent",
    "event_weights": "events",
    "relevance_threshold": "relevance_threshold",
    "session_gap": "session_gap_minutes",
    "max_reject_rate": "max_reject_rate",
    "pseudonymize": "pseudonymize",
    "key_env": "pseudonym_key_env",
    "keep_raw_rejects": "keep_raw_rejects",
    "items": "items.path",
    "item_key": "items.key",
    "item_features": "items.features",
    "users": "users.path",
    "user_key": "users.key",
    "user_features": "users.features",
}


def tracker(experiment: str | None = None, *, enabled: bool = True):
    """Where runs go: MLflow's default local store or $MLFLOW_TRACKING_URI, checked now."""
    from persotool.tracking import preflight

    return preflight(enabled, experiment)


def _paths(value) -> list[str]:
    return [str(value)] if isinstance(value, str | Path) else [str(v) for v in value]


def _path(value) -> Path:
    return value.path if hasattr(value, "path") else Path(value)


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The options that were given (None means: the config's default)."""
    return {key: value for key, value in options.items() if value is not None}


def _recorded(artifact, track):
    if track is not None and track.enabled:
        artifact.record(track)
    return artifact


def ingest_config(
    sources,
    *,
    preset: str | None = None,
    schema: Path | str | None = None,
    list_separator: str | None = None,
    **options,
):
    """The IngestConfig of preset < schema file < options, validated. `options` are INGEST_OPTIONS
    (None leaves the preset's or schema's value)."""
    from persotool.errors import ConfigError
    from persotool.kernels.config import IngestConfig, deep_merge, load_toml, validate
    from persotool.stages.ingest.presets import preset as preset_config

    unknown = sorted(set(options) - set(INGEST_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown ingest option {unknown[0]!r}; options: {', '.join(INGEST_OPTIONS)}")
    sources = _paths(sources)
    merged: dict = {}
    where = "options"
    if preset:
        merged, where = preset_config(preset, sources[0] if sources else None), f"preset {preset}"
    if schema:
        merged, where = deep_merge(merged, load_toml(Path(schema))), str(schema)
    given: dict = {}
    for key, value in options.items():
        if value is None or value == [] or (value is False and key != "header"):
            continue
        *parents, leaf = INGEST_OPTIONS[key].split(".")
        node = given
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = str(value) if isinstance(value, Path) else value
    merged = deep_merge(merged, given)
    for table in ("items", "users"):
        if isinstance(merged.get(table), dict) and "path" in merged[table] and "key" not in merged[table]:
            raise ConfigError(f"`{table}` needs `{table[:-1]}_key` (the {table[:-1]} id column in that file)")
    if list_separator is not None:
        tables = [key for key in ("items", "users") if isinstance(merged.get(key), dict)]
        if not tables:
            raise ConfigError("`list_separator` splits attribute cells: give `items` or `users`, or a schema with them")
        for key in tables:
            merged[key] = {**merged[key], "separator": list_separator}
    if "columns" not in merged:
        raise ConfigError(
            "say which columns hold the user, item and time: user_col, item_col and time_col, a schema file, "
            "or the movielens preset"
        )
    options_given = {INGEST_OPTIONS[k]: k for k, v in options.items() if v is not None and v != []}
    return validate(IngestConfig, merged, where, options_given)


def ingest(sources, out: Path | str, config=None, *, force: bool = False, track=None, **options) -> Dataset:
    """Raw logs (files, globs, directories) -> a dataset directory at `out`. `config` is an
    IngestConfig; without one, `preset`, `schema` and INGEST_OPTIONS build it."""
    from persotool.stages.ingest import ingest as run

    spec = config if config is not None else ingest_config(sources, **options)
    run(spec, _paths(sources), Path(out), force=force)
    return _recorded(Dataset(out), track)


def split(dataset, out: Path | str, config=None, *, force: bool = False, track=None, **options) -> Split:
    """A dataset -> train / valid / test at `out`. `config` is a SplitConfig, or its fields as keywords."""
    from persotool.kernels.config import load_config
    from persotool.stages.split.run import SplitConfig
    from persotool.stages.split.run import split as run

    given = {k: v for k, v in options.items() if v is not None}
    cfg = config if isinstance(config, SplitConfig) else load_config(SplitConfig, config, given)
    run(_path(dataset), Path(out), cfg, force=force)
    return _recorded(Split(out), track)


def train(
    split,
    model: str | None = None,
    out: Path | str | None = None,
    *,
    params: dict | None = None,
    config: Path | str | None = None,
    valid_k: int = 10,
    use_features: bool = True,
    force: bool = False,
    track=None,
) -> TrainedModel:
    """Fit `model` (a registry name, or the one `config` names) on the split's training part, with
    early stopping on its validation part, and save it at `out`."""
    from persotool.errors import ConfigError
    from persotool.kernels.config import model_config
    from persotool.kernels.models import fitting as training
    from persotool.kernels.storage import check_output
    from persotool.stages.split.run import Split as Loaded

    if out is None:
        raise ConfigError("train needs an output directory for the model")
    name, merged = model_config(config, model, params)
    split_path = _path(split)
    check_output(Path(out), force=force, inputs=[split_path])
    loaded = Loaded(split_path)
    fitted, info = training.train(loaded, name, merged, valid_k=valid_k, use_features=use_features)
    training.save(fitted, Path(out), loaded, info, force=force)
    return _recorded(TrainedModel(out), track)


def evaluate(
    model=None,
    *,
    split=None,
    k=(10,),
    metrics: list[str] | str | None = None,
    on: str = "test",
    segment_by: str = "activity",
    min_segment_users: int = 20,
    seed: int = 0,
    recommendations=None,
    truth=None,
    out: Path | str | None = None,
    force: bool = False,
    track=None,
) -> Evaluation:
    """Full-ranking metrics of a trained model on its split (or `split`, of the same dataset), or
    of another system's ranked lists (`recommendations` and `truth` files). Without `out` the
    evaluation lives in a temporary directory until the returned object is dropped."""
    from persotool.stages.evaluate import run as session

    return session.evaluate(
        model=None if model is None else _path(model),
        split=None if split is None else _path(split),
        k=k,
        metrics=metrics,
        on=on,
        segment_by=segment_by,
        min_segment_users=min_segment_users,
        seed=seed,
        recommendations=recommendations,
        truth=truth,
        out=out,
        force=force,
        track=track,
    )


def benchmark(
    split,
    config,
    out: Path | str,
    *,
    only: list[str] | None = None,
    add: dict[str, Path | str] | None = None,
    force: bool = False,
    track=None,
    progress=None,
    **overrides,
) -> Benchmark:
    """Train and evaluate every model of `config` (a BenchmarkConfig or a TOML file) on `split`,
    tested against the baseline; `overrides` are BenchmarkConfig fields, `add` more contenders
    (label -> model config file, e.g. a tuning's best.toml), `only` a subset of its models (the
    baseline is kept); `progress(label, stage)` is told when each model starts training
    and evaluating."""
    from persotool.stages.benchmark import run as bench

    if isinstance(config, bench.BenchmarkConfig):
        cfg = config.model_copy(update=overrides) if overrides else config
    else:
        cfg = bench.load_config(config, overrides)
    if add:
        cfg = cfg.adding(add)
    if only:
        cfg = cfg.only([*only, *(add or {})])
    bench.run(_path(split), cfg, Path(out), force=force, progress=progress)
    return _recorded(Benchmark(out), track)


def simulate(dataset, config=None, out: Path | str | None = None, *, force: bool = False, track=None, **overrides):
    """A simulated A/B/n test on a world calibrated from `dataset`; `config` is a SimulationConfig
    or a TOML file, `overrides` its fields."""
    from persotool.errors import ConfigError
    from persotool.kernels.config import load_config
    from persotool.kernels.simulation.spec import SimulationConfig
    from persotool.stages.simulate import run as exp

    if out is None:
        raise ConfigError("simulate needs an output directory")
    cfg = config if isinstance(config, SimulationConfig) else load_config(SimulationConfig, config, overrides)
    exp.run(_path(dataset), cfg, Path(out), force=force)
    return _recorded(Experiment(out), track)


def synth(out: Path | str, config=None, *, force: bool = False, track=None, **options) -> SyntheticLog:
    """A synthetic log with known ground truth; `config` is a SynthConfig, or its fields as keywords."""
    from persotool.kernels.config import load_config
    from persotool.stages.synth.run import SynthConfig, write

    given = {k: v for k, v in options.items() if v is not None}
    cfg = config if isinstance(config, SynthConfig) else load_config(SynthConfig, config, given)
    write(cfg, Path(out), force=force)
    return _recorded(SyntheticLog(out), track)


def tune(
    split, config=None, out: Path | str | None = None, *, force: bool = False, track=None, progress=None, **options
):
    """A hyperparameter study on `split`'s validation part, run (or continued) into `out`.
    `config` is a TuneConfig, or its fields as keywords (`space` at least); `progress(number)` hears
    each finished trial. Rerunning continues the study; several workers share one `storage`."""
    from persotool.errors import ConfigError
    from persotool.kernels.config import load_config
    from persotool.stages.tune.run import run
    from persotool.stages.tune.study import TuneConfig

    if out is None:
        raise ConfigError("tune needs an output directory")
    given = {k: v for k, v in options.items() if v is not None}
    cfg = config if isinstance(config, TuneConfig) else load_config(TuneConfig, config, given)
    run(_path(split), cfg, Path(out), force=force, progress=progress)
    return _recorded(Tuning(out), track)


def calibrate(
    dataset, out: Path | str, *, until: str | float | None = None, seed: int = 0, force: bool = False, track=None
) -> World:
    """Fit the simulator's user model on `dataset`'s logs up to `until` (a date, a fraction of the
    log's time range, or None for all of it) and write the world directory `out`, which
    `simulate` loads with `[world] source = "OUT"`."""
    from persotool.kernels.simulation import calibration as fitted

    fitted.calibrate(_path(dataset), until, Path(out), seed=seed, force=force)
    return _recorded(World(out), track)


def backtest(dataset, out: Path | str, config=None, *, force: bool = False, track=None, **options) -> Backtest:
    """Calibrate on `dataset`'s logs before a cutoff, simulate the held-out period and compare with
    what the logs show after it, beside naive forecasts and noise floors. `config` is a
    BacktestConfig or a TOML file; `options` its fields (dotted keys for nested ones)."""
    from persotool.kernels import storage as artifacts
    from persotool.kernels.config import load_config
    from persotool.stages.backtest import run as bt

    cfg = config if isinstance(config, bt.BacktestConfig) else load_config(bt.BacktestConfig, config, _given(options))
    artifacts.check_output(Path(out), force=force, inputs=[_path(dataset)])
    result = bt.run(_path(dataset), cfg)
    bt.write(result, cfg, Path(out), force=force)
    return _recorded(Backtest(out), track)
