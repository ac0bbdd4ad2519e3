"""`tune`: a hyperparameter study on a split's validation part (see `study` for how workers share
one), written as a tuning directory: trials.parquet, best.toml (a model config `train --config`
and benchmark configs accept as is), plots and a manifest."""

import json
import shutil
from pathlib import Path
from typing import Any

from persotool.errors import ConfigError, ModelError
from persotool.stages.tune.config import TuneConfig
from persotool.stages.tune.result import Tuning
from persotool.stages.tune.space import SearchSpace, load_space
from persotool.stages.tune.study import JOURNAL


def run(split, cfg: TuneConfig, out: Path, *, force: bool = False, progress=None) -> Tuning:
    """Run (or continue) the study and write the tuning directory; `progress(number)` hears each
    finished trial."""
    from persotool.stages.split.result import Split
    from persotool.stages.tune import study as st

    split_path = Path(getattr(split, "path", split))
    out = Path(out)
    _check_output(out, force, split_path)
    split = Split(split_path)
    if split.valid is None or not len(split.valid):
        raise ConfigError("tuning measures trials on the split's validation part: split with `valid`")
    space = load_space(cfg.space, cfg.model)
    _check_metrics(cfg)
    digest = split.digest
    _check_own_split(out, force, digest)
    created = _prepare(out, force)
    try:
        study, where, lock = st.open_study(cfg, space, digest, out)
    except BaseException:
        if created:  # nothing of the study was written: leave no empty output behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    objective = st.objective_for(cfg, space, split)
    st.run_trials(cfg, study, lock, objective, on_trial=progress)
    manifest = write(out, study, cfg, space, split, where, notes=[n for n in [st.REPAIRS.pop(where, None)] if n])
    if manifest["best"] is None:  # written (trials.parquet holds every error), but nothing to use
        raise ModelError(_no_trial_completed(out), where=str(out))
    return Tuning(out)


def _check_metrics(cfg: TuneConfig) -> None:
    """An objective no trial can measure would make every trial fail: refused before any work."""
    from persotool.kernels.metrics.beyond import NAMES
    from persotool.kernels.metrics.definitions import parse

    for name in cfg.metrics:
        if name.split("@")[0] in NAMES:
            continue
        parse(name)  # a ConfigError naming what is wrong with it


def _no_trial_completed(out: Path) -> str:
    import polars as pl

    trials = pl.read_parquet(out / "trials.parquet")
    errors = trials.filter(pl.col("error").is_not_null())["error"] if "error" in trials.columns else []
    first = f"; the first error: {errors[0]}" if len(errors) else ""
    counts = ", ".join(f"{n} {state}" for state, n in trials["state"].value_counts().sort("state").iter_rows())
    return f"no trial completed ({counts}){first}; trials.parquet has every trial's error"


def _is_tuning(out: Path) -> bool:
    """A tuning directory: its manifest says so, or it holds the study journal of a run that has
    not written its manifest yet (killed during its first trials)."""
    from persotool.kernels import storage as artifacts

    return artifacts.persotool_kind(out) == "tuning" or (out / JOURNAL).is_file()


def _check_output(out: Path, force: bool, split_path: Path) -> None:
    """The output guard every stage uses, with one difference: an existing tuning directory is
    not in the way, it is continued (rerunning resumes the study)."""
    from persotool.errors import OutputError
    from persotool.kernels import storage as artifacts

    artifacts.check_location(out, [split_path])
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError("exists and is not a directory", where=str(out))
    if not out.exists() or _is_tuning(out):
        return
    if not any(out.iterdir()):
        return
    if not force:
        raise OutputError("exists and is not a tuning directory; pass `force` to replace it", where=str(out))
    if not artifacts.replaceable(out):
        raise OutputError(artifacts.NOT_OURS, where=str(out))


def _check_own_split(out: Path, force: bool, digest: str) -> None:
    """A tuning directory belongs to the split its study tunes on: continuing it with another
    split would mix their trials and replace the other study's best.toml."""
    import json

    from persotool.errors import OutputError
    from persotool.kernels import storage as artifacts

    if force or artifacts.persotool_kind(out) != "tuning":
        return
    recorded = json.loads((out / artifacts.MANIFEST).read_text()).get("split", {}).get("digest")
    if recorded != digest:
        raise OutputError(
            f"holds the study of another split ({recorded}, this split is {digest}); "
            "choose another output, or `force` to start over",
            where=str(out),
        )


def _prepare(out: Path, force: bool) -> bool:
    """Make the output ready for the study (emptied with `force`); True when this call created it."""
    from persotool.errors import OutputError

    if out.exists() and force:
        shutil.rmtree(out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output directory ({exc.strerror})", where=str(out)) from None
    return created


def _tied(table, metric: str, value: float, number: int) -> list[int]:
    """Completed trials whose objective equals the best one exactly (other parameters, same score:
    the best is then the lowest-numbered of them, an arbitrary choice worth knowing)."""
    import polars as pl

    if table.is_empty():
        return []
    same = table.filter((pl.col("state") == "complete") & (pl.col(metric) == value) & (pl.col("number") != number))
    return sorted(same["number"].to_list())


def trials_table(study, cfg: TuneConfig):
    import polars as pl

    rows = []
    for t in study.get_trials(deepcopy=False):
        state = "stale" if t.user_attrs.get("stale") else t.state.name.lower()
        row: dict[str, Any] = {
            "number": t.number,
            "state": state,
            "default": bool(t.user_attrs.get("default", False)),
            "retry_of": t.user_attrs.get("retry_of"),
            "seconds": t.duration.total_seconds() if t.duration is not None else None,
            "worker": t.user_attrs.get("worker"),
            "error": t.user_attrs.get("error"),
            "pruned_at_epoch": t.user_attrs.get("pruned_at_epoch"),
        }
        for i, metric in enumerate(cfg.metrics):
            row[metric] = t.values[i] if t.values is not None else None
        for name, value in t.params.items():
            row[f"param.{name}"] = value
        for name, value in (t.user_attrs.get("measures") or {}).items():
            if name not in cfg.metrics:
                row[f"valid.{name}"] = value
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None).sort("number") if rows else pl.DataFrame()


def best_trials(study, cfg: TuneConfig) -> list:
    """The best trial (one metric) or the Pareto front (several), best first metric first."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    front = [study.best_trial] if len(cfg.metrics) == 1 else list(study.best_trials)
    sign = -1 if cfg.resolved_directions()[0] == "maximize" else 1
    return sorted(front, key=lambda t: (sign * t.values[0], t.number))


def toml_config(model: str, params: dict[str, Any]) -> str:
    """A model config file (`model = NAME`, `[params]`), the format `train --config` reads."""
    lines = [f"model = {json.dumps(model)}", "", "[params]"]
    for key, value in params.items():
        lines.append(f"{key} = {json.dumps(value) if not isinstance(value, float) else repr(value)}")
    return "\n".join(lines) + "\n"


def write(out: Path, study, cfg: TuneConfig, space: SearchSpace, split, where: str, notes=()) -> dict[str, Any]:
    """Every output file, each written to a temporary name and renamed: trials.parquet, best.toml,
    pareto.parquet (several metrics), the plots and the manifest."""
    from persotool.kernels import storage as artifacts
    from persotool.kernels.uris import redact
    from persotool.stages.tune import plots

    table = trials_table(study, cfg)
    artifacts.write_file_atomic(out / "trials.parquet", lambda p: table.write_parquet(p))
    front = best_trials(study, cfg)
    best = None
    if front:
        top = front[0]
        best = {"number": top.number, "values": dict(zip(cfg.metrics, top.values, strict=True)), "params": top.params}
        best["tied_with"] = _tied(table, cfg.metrics[0], top.values[0], top.number)
        params = {**space.fixed, **top.params}
        artifacts.write_file_atomic(out / "best.toml", lambda p: p.write_text(toml_config(space.model, params)))
    if len(cfg.metrics) > 1 and front:
        import polars as pl

        pareto = pl.DataFrame([{"number": t.number, **dict(zip(cfg.metrics, t.values, strict=True))} for t in front])
        artifacts.write_file_atomic(out / "pareto.parquet", lambda p: pareto.write_parquet(p))
    histories = {
        str(t.number): t.user_attrs["history"] for t in study.get_trials(deepcopy=False) if t.user_attrs.get("history")
    }
    artifacts.write_file_atomic(out / "histories.json", lambda p: p.write_text(json.dumps(histories)))
    written = plots.write_all(table, cfg, front, space, study, out, artifacts.write_file_atomic)
    totals = (
        {}
        if table.is_empty()
        else {row["state"]: row["count"] for row in table["state"].value_counts().iter_rows(named=True)}
    )
    config = cfg.model_dump(mode="json") | {"space": str(cfg.space)}
    manifest = artifacts.new_manifest(
        Tuning.kind,
        Tuning.schema_version,
        name=out.name,
        study=study.study_name,
        storage=redact(where) if "://" in where else str(Path(where).resolve()),
        model=space.model,
        config=config,
        config_hash=artifacts.config_hash({"study": study.study_name, **config}),
        space=space.model_dump(mode="json"),
        split={"path": str(Path(split.path).resolve()), "digest": split.digest},
        dataset=split.manifest.dataset.model_dump(),
        directions=cfg.resolved_directions(),
        totals={str(k): int(v) for k, v in totals.items()},
        trials=len(table),
        best=best,
        plots=written,
        notes=list(notes),
    )
    artifacts.write_json_atomic(out / "manifest.json", manifest)
    return manifest
