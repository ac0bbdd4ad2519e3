"""Hyperparameter studies with Optuna: resumable, shared by workers on several machines, every
trial counted exactly once.

The study lives in Optuna storage: by default a journal file in the output directory (rerunning
the same call continues it), or any journal file or RDB URL (`storage`) that several workers share.
Each worker takes trials until the study holds `trials` of them:

- **Exact budget.** A worker decides to start a trial under a study-wide lock (a file lock beside a
  journal or sqlite file, a PostgreSQL advisory lock), counting every trial of the study, running
  ones included: concurrent workers never overshoot, and `trials` is the study's total.
- **Nothing lost when a worker dies.** A running trial records its worker (host, pid) and a
  heartbeat. A trial whose worker is gone (same host, pid not alive) or whose heartbeat stopped
  (`GRACE_SECONDS`) is marked failed and `stale`, and its parameters are queued again: the study
  still ends with `trials` trials that ran to the end (or failed on their own error, recorded).
- **The default configuration first**, then the seeded TPE sampler; trials that train in epochs
  report validation after each and the median pruner stops hopeless ones (single objective).
"""

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persotool.errors import ConfigError, DataError, OutputError
from persotool.stages.tune.config import TuneConfig

GRACE_SECONDS = 120  # a running trial silent for this long is stale
HEARTBEAT_SECONDS = 10
JOURNAL = "study.journal"


def storage_for(cfg: TuneConfig, out: Path):
    """(optuna storage, the path or URL it lives at, the lock guarding the budget)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    where = cfg.storage or str(out / JOURNAL)
    if "://" in where:
        if not where.startswith(("postgresql", "sqlite:///", "mysql")):
            raise ConfigError(f"`storage` {where!r}: expected a journal file path or an RDB URL (postgresql://...)")
        lock = _rdb_lock(where)
        try:
            with lock():  # workers starting together would race to create Optuna's tables
                storage = optuna.storages.RDBStorage(where)
        except ImportError as exc:
            raise ConfigError(
                f"`storage` needs the database driver for {where.split('://')[0]} ({exc.name or exc}); "
                "for PostgreSQL: pip install 'psycopg[binary]'"
            ) from None
        return storage, where, lock
    path = Path(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _file_lock(path.with_name(f".{path.name}.budget"))
    with lock():  # no worker appends while the journal is checked
        REPAIRS[str(path)] = check_journal(path)
    backend = JournalFileBackend(str(path))
    return optuna.storages.JournalStorage(backend), str(path), lock


REPAIRS: dict[str, str | None] = {}  # journal path -> what check_journal did to it, for the manifest's notes


def check_journal(path: Path) -> str | None:
    """A journal's last line cut short (a crash, a full disk) is set aside, so that what workers
    append next does not run into it: its bytes are moved to `<journal>.torn-<n>` (nothing is
    deleted) and a note says so. A line in the middle that is not a journal entry is corruption the
    study cannot be continued from: refused, naming the line."""
    import json

    if not path.is_file():
        return None
    data = path.read_bytes()
    body, _, tail = data.rpartition(b"\n")
    lines = body.split(b"\n") if body else []
    for number, line in enumerate(lines, start=1):
        try:
            json.loads(line)
        except ValueError:
            raise DataError(
                "is not a journal entry: the study's journal is corrupt and cannot be continued from; "
                "start over with `force`, or restore the journal",
                where=f"{path}:{number}",
            ) from None
    if not tail.strip():
        return None
    try:
        json.loads(tail)
        complete = True
    except ValueError:
        complete = False
    if complete:  # a whole entry without its line end: give it one
        with open(path, "ab") as handle:
            handle.write(b"\n")
        return None
    kept = path.with_name(f"{path.name}.torn-{len(list(path.parent.glob(path.name + '.torn-*'))) + 1}")
    kept.write_bytes(tail)
    with open(path, "r+b") as handle:
        handle.truncate(len(data) - len(tail))
    return (
        f"the study's journal ended in a line cut short ({len(tail)} bytes, as a crash or a full disk leaves); "
        f"it was set aside in {kept.name} and the study continued from the {len(lines)} entries before it"
    )


def _file_lock(path: Path):
    @contextlib.contextmanager
    def hold() -> Iterator[None]:
        from persotool.locks import Busy, file_lock

        try:
            with file_lock(path, wait=600):
                yield
        except Busy:
            raise ConfigError(f"the study's lock {path} stayed busy for 10 minutes") from None

    return hold


def _rdb_lock(url: str):
    if url.startswith("sqlite:///"):
        return _file_lock(Path(url.removeprefix("sqlite:///") + ".budget"))

    @contextlib.contextmanager
    def hold() -> Iterator[None]:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        key = 0x70657273  # "pers": one advisory lock per database, held while a worker picks a trial
        with engine.connect() as conn:
            if url.startswith("postgresql"):
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            else:
                conn.execute(sqlalchemy.text("SELECT GET_LOCK('persotool-tune', 600)"))
            try:
                yield
            finally:
                if url.startswith("postgresql"):
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                else:
                    conn.execute(sqlalchemy.text("SELECT RELEASE_LOCK('persotool-tune')"))
        engine.dispose()

    return hold


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_stale(study) -> list[int]:
    """Mark running trials whose worker is gone as failed and stale, and queue their parameters
    again. Returns the numbers of the trials it failed."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    now = time.time()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(trial.user_attrs.get("worker", ""))
        name, _, pid = worker.rpartition(":")
        beat = float(trial.user_attrs.get("heartbeat", trial.datetime_start.timestamp()))
        gone = name == host and pid.isdigit() and not _alive(int(pid))
        if not gone and now - beat < GRACE_SECONDS:
            continue
        storage = study._storage  # optuna has no public call to fail another worker's trial
        storage.set_trial_user_attr(trial._trial_id, "stale", True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        failed.append(trial.number)
    return failed


class _Heartbeat:
    """Refreshes a running trial's heartbeat from a thread while it trains."""

    def __init__(self, trial) -> None:
        self.trial, self.stop = trial, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(Exception):
                self.trial.set_user_attr("heartbeat", time.time())

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def counted(trials) -> list:
    """The trials that count toward the budget: all but the stale ones (which were queued again)."""
    return [t for t in trials if not t.user_attrs.get("stale")]


def open_study(cfg: TuneConfig, space, split_digest: str, out: Path):
    """Create or load the study, checking that a loaded one tunes the same thing. A storage that
    cannot be opened (a server down, a bad host, a file that is not a database, a journal path
    that is a directory) is one line naming it, not a driver's traceback."""
    try:
        return _open_study(cfg, space, split_digest, out)
    except (ConfigError, DataError, OutputError):
        raise
    except Exception as exc:
        raise storage_error(cfg, out, exc) from None


def storage_error(cfg: TuneConfig, out: Path, exc: Exception) -> ConfigError:
    """One line for a study storage that cannot be used, with what to do about it."""
    from persotool.kernels.uris import redact

    where = redact(cfg.storage or str(out / JOURNAL))
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    reason = reason.removeprefix("connection failed: ")
    if isinstance(exc, IsADirectoryError):
        reason = "it is a directory; give a journal file path"
    elif isinstance(exc, OSError) and exc.strerror:
        reason = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return ConfigError(f"`storage` {where}: cannot open the study's storage ({reason})")


def _open_study(cfg: TuneConfig, space, split_digest: str, out: Path):
    import optuna

    storage, where, lock = storage_for(cfg, out)
    name = cfg.study or f"{space.model}-{split_digest}"
    identity = {
        "persotool.split": split_digest,
        "persotool.model": space.model,
        "persotool.space": space.model_dump(mode="json"),
        "persotool.metrics": list(cfg.metrics),
    }
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = cfg.resolved_directions()
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=5)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    with lock():
        if cfg.storage is None:  # the output's own journal holds this split's study, no other
            for other in storage.get_all_studies():
                digest = other.user_attrs.get("persotool.split")
                if digest is not None and digest != split_digest:
                    raise OutputError(
                        f"holds the study of another split ({digest}, this split is {split_digest}); "
                        "choose another output, or `force` to start over",
                        where=str(out),
                    )
        study = optuna.create_study(
            study_name=name, storage=storage, sampler=sampler, pruner=pruner, directions=directions, load_if_exists=True
        )
        known = study.user_attrs
        first_worker = not known
        if not known:
            for key, value in identity.items():
                study.set_user_attr(key, value)
            study.enqueue_trial(space.defaults(), user_attrs={"default": True})
        else:
            for key, value in identity.items():
                if known.get(key) != value:
                    what = key.removeprefix("persotool.")
                    raise ConfigError(
                        f"the study {name!r} in {where} was started with another {what}; "
                        "give another `study` name, or `force` to start over"
                    )
    # The worker that creates the study samples with `seed` exactly (one worker: reproducible); the
    # others with seeds of their own, so workers starting together do not propose alike.
    if not first_worker:
        study.sampler = optuna.samplers.TPESampler(seed=(cfg.seed + os.getpid()) % 2**32, n_startup_trials=5)
    return study, where, lock


def run_trials(cfg: TuneConfig, study, lock, objective, on_trial=None) -> list[int]:
    """Take trials until the study holds `trials` of them or `timeout` passes; returns the numbers
    of the trials this worker ran."""
    import optuna
    from optuna.trial import TrialState

    started = time.monotonic()
    ran: list[int] = []
    while True:
        with lock():
            fail_stale(study)
            trials = study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            full = cfg.trials is not None and len(counted(trials)) >= cfg.trials
            late = cfg.timeout is not None and time.monotonic() - started >= cfg.timeout
            if (full and not waiting) or late:
                break
            trial = study.ask()
            trial.set_user_attr("worker", _worker())
            trial.set_user_attr("heartbeat", time.time())
        try:
            with _Heartbeat(trial):
                values = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except (KeyboardInterrupt, SystemExit):
            trial.set_user_attr("stale", True)  # interrupted, not failed: run again on resume
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            trial.set_user_attr("error", f"{type(exc).__name__}: {first}"[:500])
            study.tell(trial, state=TrialState.FAIL)
        else:
            if any(not math.isfinite(v) for v in values):
                trial.set_user_attr("error", "the objective is not a finite number")
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, values)
        ran.append(trial.number)
        if on_trial is not None:
            on_trial(trial.number)
    return ran


def objective_for(cfg: TuneConfig, space, split) -> Any:
    """The function a trial runs: train on the split's training part with the trial's parameters
    (validation NDCG reported after each epoch, for pruning), then measure every metric on the
    validation part. Per-epoch history, timings and all measures are kept as trial attributes."""
    import optuna

    from persotool.kernels import training
    from persotool.kernels.metrics.ranking import evaluate_model

    accuracy = [m for m in cfg.metrics if m.split("@")[0] not in _beyond_names()]
    widest = max(int(m.split("@")[1]) for m in cfg.metrics)
    names = sorted({*accuracy, f"ndcg@{widest}"})
    valid_k = int(cfg.metrics[0].split("@")[1])
    single = len(cfg.metrics) == 1 and cfg.prune

    def objective(trial) -> list[float]:
        params = space.suggest(trial)

        def on_epoch(epoch: int, measures: dict[str, float]) -> None:
            value = measures.get(f"valid_ndcg@{valid_k}")
            if value is None or not single or cfg.metrics[0] != f"ndcg@{valid_k}":
                return
            trial.report(value, epoch)
            if trial.should_prune():
                trial.set_user_attr("pruned_at_epoch", epoch)
                raise optuna.TrialPruned()

        started = time.perf_counter()
        model, info = training.train(
            split,
            space.model,
            params,
            valid_k=valid_k,
            on_epoch=on_epoch,
            use_features=cfg.use_features,
            validate_each_epoch=single and cfg.metrics[0] == f"ndcg@{valid_k}",
        )
        result = evaluate_model(model, split.valid, names, n_items=split.n_items)
        measured = {**result.summary, **(result.beyond or {})}
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
        trial.set_user_attr("history", info.get("history", {}))
        trial.set_user_attr("measures", {k: float(v) for k, v in measured.items() if v == v})
        missing = [m for m in cfg.metrics if m not in measured]
        if missing:
            raise ConfigError(f"metric {missing[0]!r} is not measured; measured: {', '.join(sorted(measured))}")
        return [float(measured[m]) for m in cfg.metrics]

    return objective


def _beyond_names() -> tuple[str, ...]:
    from persotool.kernels.metrics.beyond import NAMES

    return NAMES
