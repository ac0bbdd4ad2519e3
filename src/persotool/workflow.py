"""The workflow as Python calls, one per stage, all of one shape and recorded the same way:

    pt.<stage>(source, config=None, out=None, *, force=False, track=None, **options) -> its result

`source` is the input artifact (a directory, or the result object of the stage before); `config`
a config object, a dict or a TOML file; `options` that config's fields as keywords (dotted keys
reach into tables; None means "the default"); `out` the output directory. Every call goes through
the stage's output guard and manifest loader, and, given `track` (see `tracker()`), records its
MLflow run from the output directory alone, as `persotool track` would later. The commands are
thin shells over these calls.

    import persotool as pt
    ds = pt.ingest("datasets/movielens-small/ratings.csv", out="build/ml", preset="movielens")
    sp = pt.split(ds, out="build/split", strategy="leave-last", leave_last=10, valid=True)
    pt.evaluate(pt.train(sp, out="build/ease", model="ease")).require({"ndcg@10": 0.05})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from persotool import stages
from persotool.errors import ConfigError


def tracker(experiment: str | None = None, *, enabled: bool = True):
    """Where runs go: MLflow's default local store or $MLFLOW_TRACKING_URI, checked now."""
    from persotool.tracking import preflight

    return preflight(enabled, experiment)


def configure(name: str, config: Any = None, source: Any = None, **options):
    """The stage's resolved config, exactly as its call would resolve it (nothing runs)."""
    return stages.get(name).config_class.resolve(config, options, source=source)


def run(name: str, source: Any = None, config: Any = None, out: Path | str | None = None, **options):
    """Run stage `name`: resolve its config, run it into `out`, and record its MLflow run when
    `track` (an enabled `Tracking`) is given. Keyword options `force` and `track` and the stage's
    runtime callbacks (e.g. `progress`) are not config."""
    stage = stages.get(name)
    force, track = bool(options.pop("force", False)), options.pop("track", None)
    runtime = {key: options.pop(key) for key in stage.runtime if key in options}
    if out is None and not stage.out_optional:
        if isinstance(config, str | Path) and not Path(config).is_file():
            raise ConfigError(
                f"`config` {str(config)!r} is not a config file; the output directory is `out`, "
                f"the third argument: pt.{name}(source, config, out) or pt.{name}(source, out=...)"
            )
        raise ConfigError(f"{name} needs an output directory (`out`)")
    if source is None and stage.source is not None and name != "evaluate":
        raise ConfigError(f"{name} needs its input ({stage.source})")
    cfg = stage.config_class.resolve(config, options, source=source)
    result = stage.run(_path(source), cfg, None if out is None else Path(out), force=force, **runtime)
    return record(result, track)


def record(result, track):
    """Record a result's MLflow run (a `Tracking` from `tracker()`; None or disabled: nothing)."""
    if track is None or not track.enabled:
        return result
    from persotool.tracking import record_run

    stage = stages.by_kind(result.kind)
    result.mlflow_run_id = record_run(track, stage.run_spec(result))
    result.tracked_to = track.describe()
    return result


def open_result(path: Path | str):
    """The result object of any persotool output directory, by the kind its manifest declares,
    checked against what its manifest recorded (`verify`)."""
    from persotool.errors import DataError
    from persotool.kernels.storage import MANIFEST, persotool_kind

    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise DataError(f"is not a persotool output directory (no {MANIFEST})", where=str(path))
    kind = persotool_kind(path)
    stage = stages.by_kind(kind) if kind else None
    if stage is None:
        raise DataError(f"holds a {kind!r} artifact, which no stage of this persotool writes", where=str(path))
    return stage.result_class(path).verify()


def ingest_config(sources, **options):
    """The IngestConfig `pt.ingest(sources, **options)` would use (preset < schema < options)."""
    return configure("ingest", None, sources, **options)


def _path(value):
    """A result object stands for its directory; lists (ingest's sources) pass as they are."""
    return value.path if hasattr(value, "path") and hasattr(value, "manifest") else value


def _verb(name: str):
    stage = stages.get(name)

    if stage.source is None:

        def verb(config=None, out=None, **options):
            return run(name, None, config, out, **options)

    else:

        def verb(source=None, config=None, out=None, **options):
            return run(name, source, config, out, **options)

    verb.__name__ = verb.__qualname__ = name
    verb.__doc__ = (
        f"{stages.describe(name)}\n\n"
        f"pt.{name}({'' if stage.source is None else stage.source + ', '}config=None, out=None, *, force=False, "
        f"track=None, **options): `config` a {stage.config}, a dict or a TOML file, `options` its fields; "
        f"returns a {stage.result}."
    )
    return verb


def __getattr__(name: str):
    if name in stages.STAGES:
        verb = _verb(name)
        globals()[name] = verb
        return verb
    raise AttributeError(f"module 'persotool.workflow' has no attribute {name!r}")
