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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persotool import __version__
from persotool.errors import TRACKING_OFF, TrackingError
from persotool.kernels.runspec import RunSpec, flatten, metric_key
from persotool.kernels.uris import redact

DEFAULT_EXPERIMENT = "persotool"


@dataclass
class Tracking:
    """Where and whether to track; resolved once per command."""

    enabled: bool = True
    experiment: str = DEFAULT_EXPERIMENT
    uri: str = ""
    recorder: Any = field(default=None, repr=False, compare=False)  # the process started by `_warm_up`
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))  # when the command began

    def describe(self) -> str:
        return redact(self.uri) if self.enabled else "off"


def tracking_uri() -> str:
    """The URI MLflow would use: MLFLOW_TRACKING_URI, else its default local sqlite store."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


SQLITE_HEADER = b"SQLite format 3\x00"
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")
# MLflow's own defaults retry a dead server for minutes; a command should say so in seconds.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def preflight(enabled: bool, experiment: str | None) -> Tracking:
    """Resolve the tracking target and fail fast, before any work, if it cannot be used."""
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    if not enabled:
        return Tracking(enabled=False, experiment=name)
    uri = tracking_uri()
    shown = redact(uri)
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme in ("http", "https"):
        _check_server(uri, shown)
    elif scheme == "sqlite":
        _check_sqlite(uri, shown)
    elif scheme in DATABASE_SCHEMES:
        _check_database(uri, shown)
    elif scheme in ("file", ""):
        raise TrackingError(
            f"MLFLOW_TRACKING_URI={shown} is a file store, which MLflow 3 no longer supports for new "
            "runs; use sqlite:///mlflow.db (the default) or an http(s):// server"
        )
    else:
        raise TrackingError(
            f"MLFLOW_TRACKING_URI={shown} has an unknown scheme {scheme!r}; use sqlite:///mlflow.db (the default), "
            "an http(s):// server, or a postgresql:// or mysql:// database"
        )
    tracking = Tracking(enabled=True, experiment=name, uri=uri)
    _warm_up(tracking)
    return tracking


def _check_server(uri: str, shown: str) -> None:
    import base64
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri.rstrip("/"))
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    request = urllib.request.Request(urlunsplit(parts._replace(netloc=host, path=parts.path + "/health")))
    if parts.username is not None:  # credentials in the URI: basic auth, as MLflow's client sends them
        token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            if response.status != 200:
                raise TrackingError(f"MLflow server at {shown} answered {response.status} on /health")
    except urllib.error.HTTPError as exc:
        raise TrackingError(f"MLflow server at {shown} answered {exc.code} on /health") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {shown} ({reason}); start it, fix "
            f"MLFLOW_TRACKING_URI, or {TRACKING_OFF}"
        ) from None


def _check_sqlite(uri: str, shown: str) -> None:
    if not uri.startswith("sqlite:///"):
        raise TrackingError(f"MLFLOW_TRACKING_URI={shown}: a sqlite store is sqlite:///PATH (three slashes)")
    db = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    folder = db.parent if str(db.parent) else Path(".")
    if db.is_dir():
        raise TrackingError(f"the MLflow store {shown} is a directory, not a sqlite file; set MLFLOW_TRACKING_URI")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise TrackingError(
            f"cannot write the MLflow store {shown} (folder {folder} is not writable); "
            f"set MLFLOW_TRACKING_URI or {TRACKING_OFF}"
        )
    if db.is_file() and db.stat().st_size:
        with open(db, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
        if header != SQLITE_HEADER:
            raise TrackingError(
                f"the MLflow store {shown} is not a sqlite database (its first bytes say otherwise); "
                "move it away or set MLFLOW_TRACKING_URI"
            )


def _check_database(uri: str, shown: str) -> None:
    """A database URI names a driver that is installed and a server that answers on its port."""
    import socket

    try:
        from sqlalchemy.engine import make_url

        url = make_url(uri)
        url.get_dialect().import_dbapi()
    except ImportError as exc:
        module = getattr(exc, "name", None) or str(exc)
        raise TrackingError(
            f"MLFLOW_TRACKING_URI={shown} needs the database driver {module!r}, which is not installed "
            "(e.g. pip install 'psycopg[binary]')"
        ) from None
    except Exception as exc:
        raise TrackingError(f"MLFLOW_TRACKING_URI={shown} is not a valid database URL ({exc})") from None
    port = url.port or {"postgresql": 5432, "mysql": 3306, "mssql": 1433}[url.get_backend_name()]
    try:
        socket.create_connection((url.host or "localhost", port), timeout=3).close()
    except OSError as exc:
        raise TrackingError(
            f"cannot reach the tracking database at {shown} ({exc.strerror or exc}); start it or {TRACKING_OFF}"
        ) from None


_RECORDERS: list[Any] = []


def _warm_up(tracking: Tracking) -> None:
    """Start the process that will record this command's run: it imports MLflow (about 4 s of
    Python imports, most of what tracking costs) on the other core while the command works, then
    waits for the run to record (`record_run`)."""
    import subprocess

    if "mlflow.tracking" in sys.modules or os.environ.get("PERSOTOOL_RECORDER") == "inline":
        # already imported here (a notebook, a test session): recording in-process is quicker;
        # PERSOTOOL_RECORDER=inline asks for it anyway (benchmarks/tracking.py measures both)
        return
    tracking.recorder = subprocess.Popen(
        [sys.executable, "-m", "persotool.tracking.recorder"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C at the terminal goes to the command, which ends it
    )
    _RECORDERS.append(tracking.recorder)


def close_recorders() -> None:
    """End recorder processes that were never asked to record (the command failed first)."""
    while _RECORDERS:
        process = _RECORDERS.pop()
        if process.poll() is None:
            process.kill()  # it has recorded nothing: no need to let it finish importing MLflow
            process.wait()
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                stream.close()


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _quiet() -> None:
    import logging
    import warnings

    for noisy in ("mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"(mlflow|alembic|sqlalchemy)(\..*)?")


def _client(tracking: Tracking):
    for key, value in HTTP_LIMITS.items():
        os.environ.setdefault(key, value)
    _quiet()
    import mlflow
    from mlflow.tracking import MlflowClient

    _quiet()  # importing mlflow configures its loggers again
    mlflow.set_tracking_uri(tracking.uri)
    return MlflowClient(tracking_uri=tracking.uri)


# Shown by `mlflow ui` (3.x) as a model-development experiment, so that it opens on the runs
# table instead of the GenAI traces page.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def _experiment_id(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(name, tags=dict([EXPERIMENT_KIND]))
        except Exception:
            # Another process created it between our look-up and our insert (a database store
            # shared by several machines): use theirs.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
        else:
            return experiment_id
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    if experiment.tags.get(EXPERIMENT_KIND[0]) is None:
        client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
    return experiment.experiment_id


@contextlib.contextmanager
def _store_lock(tracking: Tracking):
    """Writers of one local sqlite store take turns: MLflow's schema migration of a new store and
    concurrent experiment creation race otherwise (several commands started together)."""
    if not tracking.uri.startswith("sqlite:///"):
        yield
        return
    from persotool.locks import Busy, file_lock

    db = Path(tracking.uri.removeprefix("sqlite:///").split("?", 1)[0])
    try:
        with file_lock(db.with_name(f".{db.name}.lock"), wait=600):
            yield
    except Busy:
        raise TrackingError(f"the MLflow store {redact(tracking.uri)} stayed busy for 10 minutes") from None


def record_run(tracking: Tracking, spec: RunSpec) -> str | None:
    """Record `spec` (and its children as nested runs); return the parent run id. The recorder
    process started by `preflight` does it when there is one, else this process. The spec's
    scratch files are removed afterwards, recorded or not."""
    import shutil

    try:
        return _record_spec(tracking, spec)
    finally:
        for path in spec.scratch:
            shutil.rmtree(path, ignore_errors=True)


def _record_spec(tracking: Tracking, spec: RunSpec) -> str | None:
    if not tracking.enabled:
        return None
    if spec.tree is not None:
        return record_tree(tracking, spec)
    ended = int(time.time() * 1000)
    for run in (spec, *spec.children):
        run.started_ms = run.started_ms or spec.started_ms or tracking.started_ms
        run.ended_ms = run.ended_ms or spec.ended_ms or ended
    process = tracking.recorder
    if process is not None and process.poll() is None:
        import dataclasses
        import json
        import pickle

        # Our own objects, to our own child process: nothing from a user is unpickled.
        payload = pickle.dumps((dataclasses.replace(tracking, recorder=None), spec))
        try:
            answer, _ = process.communicate(payload)
        except (OSError, ValueError):
            answer = b""
        if answer:
            reply = json.loads(answer)
            if "error" in reply:
                raise TrackingError(reply["error"])
            return reply["run_id"]
    # MLflow prints run links to stdout; they must not mix with a command's --json output.
    with contextlib.redirect_stdout(sys.stderr):
        return _record(tracking, spec)


def _record(tracking: Tracking, spec: RunSpec) -> str:
    try:
        with _store_lock(tracking):
            client = _client(tracking)
            experiment_id = _experiment_id(client, tracking.experiment)
            _close_orphans(client, experiment_id)
            run_id = _write_run(client, experiment_id, spec, parent=None)
            for child in spec.children:
                _write_run(client, experiment_id, child, parent=run_id)
        return run_id
    except TrackingError as exc:
        raise TrackingError(exc.message + _record_later(spec)) from None
    except Exception as exc:  # mlflow raises many kinds; the user needs one line
        raise _one_line(exc, tracking, spec) from exc


def _one_line(exc: Exception, tracking: Tracking, spec: RunSpec) -> TrackingError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    first = first.replace(tracking.uri, redact(tracking.uri))
    return TrackingError(f"could not record the MLflow run at {redact(tracking.uri)}: {first}{_record_later(spec)}")


def record_tree(tracking: Tracking, parent: RunSpec) -> str | None:
    """A run tree that grows: the parent run tagged `persotool.tree = parent.tree` is found (or
    created) and each child not yet under it is added, told apart by its `persotool.leaf` tag.
    Workers on other machines recording the same key attach to the same parent, and recording
    twice adds nothing. The parent's tags are refreshed each time (a tag can change; a param cannot)."""
    if not tracking.enabled:
        return None
    key = parent.tree or ""
    children = {child.leaf or child.name: child for child in parent.children}
    ended = int(time.time() * 1000)
    for run in (parent, *children.values()):
        run.started_ms = run.started_ms or tracking.started_ms
        run.ended_ms = run.ended_ms or ended
    try:
        with contextlib.redirect_stdout(sys.stderr), _store_lock(tracking):
            client = _client(tracking)
            experiment_id = _experiment_id(client, tracking.experiment)
            _close_orphans(client, experiment_id)
            safe = key.replace("'", "")
            found = client.search_runs([experiment_id], f"tags.`persotool.tree` = '{safe}'", max_results=1)
            if found:
                run_id = found[0].info.run_id
                for name, value in parent.tags.items():
                    client.set_tag(run_id, name, value)
                for name, value in parent.metrics.items():
                    if value is not None and value == value:
                        client.log_metric(run_id, metric_key(name), float(value))
                for path, artifact_dir in parent.artifacts:
                    client.log_artifact(run_id, str(path), artifact_dir)
            else:
                parent.tags = {**parent.tags, "persotool.tree": key}
                run_id = _write_run(client, experiment_id, parent, parent=None)
            existing = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", max_results=50000)
            have = {run.data.tags.get("persotool.leaf") for run in existing}
            for leaf, child in children.items():
                if leaf not in have:
                    child.tags = {**child.tags, "persotool.leaf": leaf}
                    _write_run(client, experiment_id, child, parent=run_id)
        return run_id
    except TrackingError:
        raise
    except Exception as exc:  # mlflow raises many kinds; the user needs one line
        raise _one_line(exc, tracking, parent) from exc


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _close_orphans(client, experiment_id: str) -> None:
    """Runs this machine left RUNNING because the process recording them was killed (`kill -9`
    mid-recording): marked KILLED, so `mlflow ui` shows no run alive forever."""
    import socket

    host = socket.gethostname().replace("'", "")
    running = "attributes.status = 'RUNNING'"
    recorded = client.search_runs([experiment_id], f"{running} and tags.`persotool.recorder` LIKE '{host}:%'")
    # runs from before the recorder tag: host and pid named the recorder
    legacy = client.search_runs([experiment_id], f"{running} and tags.`persotool.host` = '{host}'", max_results=200)
    for run in [*recorded[:200], *(r for r in legacy if "persotool.recorder" not in r.data.tags)]:
        recorder = run.data.tags.get("persotool.recorder") or f":{run.data.tags.get('persotool.pid', '')}"
        pid = recorder.rpartition(":")[2]
        if pid.isdigit() and not _process_alive(int(pid)):
            client.set_terminated(run.info.run_id, "KILLED")


def _record_later(spec: RunSpec) -> str:
    if spec.output is None:
        return ""
    return f"; the output {spec.output} is complete: record it later with `persotool track {spec.output}`"


def _write_run(client, experiment_id: str, spec: RunSpec, parent: str | None) -> str:
    import socket

    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_SOURCE_NAME

    tags = {
        "persotool.version": __version__,
        "persotool.command": spec.command,
        # who records it (to tell orphans); host and pid say who ran it, which a spec may set
        "persotool.recorder": f"{socket.gethostname()}:{os.getpid()}",
        "persotool.host": socket.gethostname(),
        "persotool.pid": str(os.getpid()),
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
    client.set_terminated(run_id, "FINISHED", end_time=spec.ended_ms)
    return run_id


def _log_model(client, run_id: str, model_dir: Path, dataset: Path) -> None:
    """The model as an MLflow model (pyfunc, defined in code: `served_model.py`), with the model's
    files and its dataset's id maps as its one artifact, so nothing is pickled."""
    import tempfile

    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    from persotool.kernels.models.serving import package

    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "user_id"), ColSpec("long", "k", required=False)]),
        outputs=Schema(
            [
                ColSpec("string", "user_id"),
                ColSpec("string", "item_id"),
                ColSpec("integer", "rank"),
                ColSpec("float", "score"),
                ColSpec("string", "source"),
            ]
        ),
    )
    with tempfile.TemporaryDirectory(prefix="persotool-model-") as tmp:
        staged = package(Path(model_dir), Path(dataset), Path(tmp) / "model")
        mlflow.set_tracking_uri(client.tracking_uri)
        with mlflow.start_run(run_id=run_id):
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(__file__).with_name("served_model.py")),
                artifacts={"model": str(staged)},
                signature=signature,
                pip_requirements=[f"persotool=={__version__}"],
            )


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
    if spec.model is not None:
        _log_model(client, run_id, *spec.model)
