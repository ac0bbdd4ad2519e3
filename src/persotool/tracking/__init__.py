"""MLflow tracking: the only package that imports mlflow.

A command checks the store before it starts work (`preflight`), does its work, then records one run
(optionally with nested child runs) through `record_run`. Runs are written after the work succeeds,
so a failed command leaves no half-filled run behind.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persotool import __version__
from persotool.errors import TrackingError

DEFAULT_EXPERIMENT = "persotool"
MAX_PARAM_LENGTH = 6000


@dataclass
class Tracking:
    """Where and whether to track; resolved once per command."""

    enabled: bool = True
    experiment: str = DEFAULT_EXPERIMENT
    uri: str = ""

    def describe(self) -> str:
        return self.uri if self.enabled else "off"


@dataclass
class RunSpec:
    """Everything one MLflow run records."""

    name: str
    command: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    metric_history: dict[str, list[float]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[tuple[Path, str | None]] = field(default_factory=list)  # (path, artifact dir)
    dataset: dict[str, str] | None = None  # name, digest, source, schema, profile
    children: list[RunSpec] = field(default_factory=list)
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))


def tracking_uri() -> str:
    """The URI MLflow would use: MLFLOW_TRACKING_URI, else its default local sqlite store."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def preflight(enabled: bool, experiment: str | None) -> Tracking:
    """Resolve the tracking target and fail fast, before any work, if it cannot be used."""
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    if not enabled:
        return Tracking(enabled=False, experiment=name)
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=5) as response:
                if response.status != 200:
                    raise TrackingError(f"MLflow server at {uri} answered {response.status} on /health")
        except urllib.error.HTTPError as exc:
            raise TrackingError(f"MLflow server at {uri} answered {exc.code} on /health") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"cannot reach the MLflow tracking server at {uri} ({reason}); start it, fix "
                "MLFLOW_TRACKING_URI, or pass --no-track"
            ) from None
    elif uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        folder = db.parent if str(db.parent) else Path(".")
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise TrackingError(
                f"cannot write the MLflow store {uri} (folder {folder} is not writable); "
                "set MLFLOW_TRACKING_URI or pass --no-track"
            )
    elif uri.startswith("file:") or "://" not in uri:
        raise TrackingError(
            f"MLFLOW_TRACKING_URI={uri} is a file store, which MLflow 3 no longer supports for new "
            "runs; use sqlite:///mlflow.db (the default) or an http(s):// server"
        )
    return Tracking(enabled=True, experiment=name, uri=uri)


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> dotted MLflow params (values as text, cut to MLflow's limit)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat |= flatten(value, name + ".")
        else:
            text = "" if value is None else str(value)
            flat[name] = text[:MAX_PARAM_LENGTH]
    return flat


def metric_key(name: str) -> str:
    """MLflow metric names allow no '@': ndcg@10 is recorded as ndcg_at_10."""
    return name.replace("@", "_at_")


def _client(tracking: Tracking):
    import logging

    for noisy in ("mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking.uri)
    return MlflowClient(tracking_uri=tracking.uri)


def _experiment_id(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name)
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def record_run(tracking: Tracking, spec: RunSpec) -> str | None:
    """Record `spec` (and its children as nested runs); return the parent run id."""
    if not tracking.enabled:
        return None
    # MLflow prints run links to stdout; they must not mix with a command's --json output.
    with contextlib.redirect_stdout(sys.stderr):
        return _record(tracking, spec)


def _record(tracking: Tracking, spec: RunSpec) -> str:
    try:
        client = _client(tracking)
        experiment_id = _experiment_id(client, tracking.experiment)
        run_id = _write_run(client, experiment_id, spec, parent=None)
        for child in spec.children:
            _write_run(client, experiment_id, child, parent=run_id)
        return run_id
    except TrackingError:
        raise
    except Exception as exc:  # mlflow raises many kinds; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"could not record the MLflow run at {tracking.uri}: {first}") from exc


def _write_run(client, experiment_id: str, spec: RunSpec, parent: str | None) -> str:
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_SOURCE_NAME

    tags = {
        "persotool.version": __version__,
        "persotool.command": spec.command,
        MLFLOW_SOURCE_NAME: f"persotool {spec.command}",
        **spec.tags,
    }
    commit = git_commit()
    if commit:
        tags[MLFLOW_GIT_COMMIT] = commit
    if parent:
        tags[MLFLOW_PARENT_RUN_ID] = parent
    run = client.create_run(experiment_id, start_time=spec.started_ms, tags=tags, run_name=spec.name)
    run_id = run.info.run_id
    try:
        _fill_run(client, run_id, spec)
    except BaseException as exc:
        # A run left RUNNING with half its data would look alive forever in `mlflow ui`.
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _fill_run(client, run_id: str, spec: RunSpec) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param

    now = int(time.time() * 1000)
    params = [Param(k, v) for k, v in flatten(spec.params).items()]
    metrics = [Metric(metric_key(k), float(v), now, 0) for k, v in spec.metrics.items() if v is not None and v == v]
    for key, values in spec.metric_history.items():
        metrics.extend(Metric(metric_key(key), float(v), now, step) for step, v in enumerate(values))
    for start in range(0, max(len(params), 1), 100):
        client.log_batch(run_id, params=params[start : start + 100])
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    if spec.dataset:
        dataset = Dataset(
            name=spec.dataset["name"],
            digest=spec.dataset["digest"],
            source_type="local",
            source=spec.dataset["source"],
            schema=spec.dataset.get("schema"),
            profile=spec.dataset.get("profile"),
        )
        context = spec.dataset.get("context", "training")
        client.log_inputs(run_id, datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context", context)])])
    for path, artifact_dir in spec.artifacts:
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_dir)
        else:
            client.log_artifact(run_id, str(path), artifact_dir)
