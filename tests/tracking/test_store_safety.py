"""Tracking under load and faults: concurrent commands on a fresh store, stores that cannot work
found before the work, passwords never printed, a failed recording that leaves the output and says
how to record it, and `persotool track` for finished outputs."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from persotool.kernels.uris import redact
from tests.conftest import DATA, MOVIELENS, run_cli

TINY = DATA / "good" / "tiny.csv"
PERSOTOOL = Path(sys.executable).parent / "persotool"


def test_six_commands_on_a_fresh_store_all_record(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    processes = [
        subprocess.Popen(
            [str(PERSOTOOL), "ingest", str(TINY), "--preset", "movielens", "-o", f"ds{k}", "--experiment", "fresh"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(6)
    ]
    failures = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    assert [code for code, _ in failures] == [0] * 6, failures
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fresh")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # `mlflow ui` opens its runs
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == [f"ds{k} · ingest" for k in range(6)]
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert not list(tmp_path.glob(".*.lock"))


@pytest.mark.parametrize("fault", ["directory", "random-bytes", "unknown-scheme", "postgres-no-driver"])
def test_store_faults_are_found_before_the_work(tmp_path: Path, fault: str) -> None:
    store = tmp_path / "store.db"
    if fault == "directory":
        store.mkdir()
        uri, expected = f"sqlite:///{store}", "is a directory, not a sqlite file"
    elif fault == "random-bytes":
        store.write_bytes(os.urandom(4096))
        uri, expected = f"sqlite:///{store}", "is not a sqlite database"
    elif fault == "unknown-scheme":
        uri, expected = "mongodb://alice:hunter2@127.0.0.1/db", "unknown scheme 'mongodb'"
    else:
        # pg8000, a driver SQLAlchemy knows, is not installed (psycopg is: the tuning tests use it)
        uri, expected = "postgresql+pg8000://alice:hunter2@127.0.0.1:5432/mlflow", "needs the database driver"
    out = tmp_path / "out"
    started = time.monotonic()
    result = run_cli("ingest", TINY, "--preset", "movielens", "-o", out, env={"MLFLOW_TRACKING_URI": uri})
    assert result.exit_code == 6, result.stderr
    assert expected in result.stderr
    assert "hunter2" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert time.monotonic() - started < 30  # no minutes of retries


def test_passwords_are_redacted() -> None:
    assert redact("http://alice:s3cret@host:5000/x") == "http://alice:***@host:5000/x"
    assert redact("postgresql+psycopg2://u:p@db/mlflow") == "postgresql+psycopg2://u:***@db/mlflow"
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"


class _HealthyButBroken(http.server.BaseHTTPRequestHandler):
    """Answers /health like an MLflow server, and 500 to everything else: tracking passes the
    pre-flight check, then fails after the work."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 500)
        self.end_headers()
        self.wfile.write(b"OK" if self.path == "/health" else b"boom")

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def broken_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HealthyButBroken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://alice:hunter2@127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_failed_recording_keeps_the_output_and_says_how_to_record_it(
    tmp_path: Path, broken_server: str, scratch_cwd: Path
) -> None:
    out = tmp_path / "ds"
    result = run_cli("ingest", TINY, "--preset", "movielens", "-o", out, env={"MLFLOW_TRACKING_URI": broken_server})
    assert result.exit_code == 6, result.stderr
    assert f"record it later with `persotool track {out}`" in result.stderr
    assert "hunter2" not in result.stderr and "alice:***@" in result.stderr
    assert (out / "manifest.json").is_file()
    again = run_cli("track", out, "--experiment", "later", "--json")  # the default local store this time
    assert again.exit_code == 0, again.stderr
    run_id = json.loads(again.stdout)["mlflow_run_id"]
    run = MlflowClient(f"sqlite:///{scratch_cwd / 'mlflow.db'}").get_run(run_id)
    kept = json.loads((out / "manifest.json").read_text())["counts"]["rows_kept"]
    assert run.info.run_name == "ds · ingest" and run.data.metrics["rows_kept"] == kept


def test_track_records_finished_outputs_and_refuses_others(tmp_path: Path, scratch_cwd: Path) -> None:
    dataset, split = tmp_path / "ml", tmp_path / "split"
    before = int(time.time() * 1000)
    assert (
        run_cli("ingest", MOVIELENS / "ratings.csv", "--preset", "movielens", "-o", dataset, "--no-track").exit_code
        == 0
    )
    assert run_cli("split", dataset, "-o", split, "--strategy", "leave-last", "--no-track").exit_code == 0
    client = MlflowClient(f"sqlite:///{scratch_cwd / 'mlflow.db'}")
    for path, name in ((dataset, "ml · ingest"), (split, "split · split")):
        result = run_cli("track", path, "--experiment", "tracked-later", "--json")
        assert result.exit_code == 0, result.stderr
        run = client.get_run(json.loads(result.stdout)["mlflow_run_id"])
        assert run.info.run_name == name and run.info.status == "FINISHED"
    assert run.data.tags["persotool.split_digest"] == json.loads((split / "manifest.json").read_text())["split_digest"]
    not_output = run_cli("track", tmp_path)
    assert not_output.exit_code == 4 and "not a persotool output directory" in not_output.stderr
    # a tracked run spans the command's work: it starts before the work, not when recording begins
    timed = run_cli("ingest", MOVIELENS / "ratings.csv", "--preset", "movielens", "-o", tmp_path / "t", "--json")
    run = client.get_run(json.loads(timed.stdout)["mlflow_run_id"])
    work_ms = json.loads((tmp_path / "t" / "manifest.json").read_text())["seconds"] * 1000
    assert before <= run.info.start_time
    assert run.info.end_time - run.info.start_time >= work_ms


def test_runs_orphaned_by_a_killed_recorder_are_marked_killed(tmp_path: Path, scratch_cwd: Path) -> None:
    import socket

    client = MlflowClient(f"sqlite:///{scratch_cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("orphans") or client.get_experiment(client.create_experiment("orphans"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host, dead_pid, live_pid = socket.gethostname(), dead.stdout.strip(), str(os.getpid())

    def run(recorder: str, ran_by: str) -> str:
        tags = {"persotool.recorder": f"{host}:{recorder}", "persotool.host": host, "persotool.pid": ran_by}
        return client.create_run(experiment.experiment_id, tags=tags).info.run_id

    orphan = run(dead_pid, live_pid)  # what kill -9 leaves: its recorder is gone (whoever ran the work)
    alive = run(live_pid, dead_pid)  # recorded by a live process: a tuning trial whose worker has ended
    legacy = {"persotool.host": host, "persotool.pid": dead_pid}  # before the recorder tag
    legacy_orphan = client.create_run(experiment.experiment_id, tags=legacy).info.run_id
    result = run_cli("ingest", TINY, "--preset", "movielens", "-o", tmp_path / "ds", "--experiment", "orphans")
    assert result.exit_code == 0, result.stderr
    assert client.get_run(orphan).info.status == "KILLED"
    assert client.get_run(legacy_orphan).info.status == "KILLED"
    assert client.get_run(alive).info.status == "RUNNING"
