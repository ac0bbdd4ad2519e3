"""MLflow tracking: the default local store, a real `mlflow server` on 127.0.0.1, and failures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import DATA, MOVIELENS, run_cli

TINY = DATA / "good" / "tiny.csv"


def _runs(client: MlflowClient, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} missing"
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])


def test_ingest_is_recorded_in_default_store(tmp_path: Path, scratch_cwd: Path) -> None:
    out = tmp_path / "ml"
    result = run_cli(
        "ingest", MOVIELENS / "ratings.csv", "--preset", "movielens", "-o", out, "--experiment", "t-default", "--json"
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (scratch_cwd / "mlflow.db").is_file()
    client = MlflowClient(f"sqlite:///{scratch_cwd / 'mlflow.db'}")
    run = _runs(client, "t-default")[0]
    assert run.info.run_id == summary["mlflow_run_id"]
    assert run.info.status == "FINISHED"
    assert run.data.params["config.columns.user"] == "userId"
    assert run.data.params["config.items.features"] == "['genres']"
    assert run.data.metrics["rows_kept"] == 100_004 and run.data.metrics["n_items"] == 9066
    manifest = json.loads((out / "manifest.json").read_text())
    assert run.data.tags["persotool.dataset_digest"] == manifest["dataset_digest"]
    assert run.data.tags["persotool.version"]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"manifest.json", "overview.png"}
    local = client.download_artifacts(run.info.run_id, "manifest.json", str(tmp_path))
    assert json.loads(Path(local).read_text())["dataset_digest"] == manifest["dataset_digest"]
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == manifest["dataset_digest"]
    assert json.loads(dataset_input.dataset.profile)["num_rows"] == 100_004


def test_pseudonymized_ids_never_reach_mlflow(tmp_path: Path, scratch_cwd: Path) -> None:
    src = tmp_path / "l.csv"
    src.write_text("u,i,t\nsecret-user-1,1,100\nsecret-user-2,2,200\n")
    result = run_cli(
        "ingest",
        src,
        "--user-col",
        "u",
        "--item-col",
        "i",
        "--time-col",
        "t",
        "--pseudonymize",
        "-o",
        tmp_path / "o",
        "--experiment",
        "t-private",
        "--json",
        env={"PERSOTOOL_PSEUDONYM_KEY": "k3y-long-enough-for-hmac"},
    )
    assert result.exit_code == 0, result.stderr
    client = MlflowClient(f"sqlite:///{scratch_cwd / 'mlflow.db'}")
    run = _runs(client, "t-private")[0]
    everything = json.dumps([run.data.params, run.data.tags, run.data.metrics])
    assert "secret-user" not in everything and "k3y" not in everything
    local = client.download_artifacts(run.info.run_id, "manifest.json", str(tmp_path / "dl"))
    assert "secret-user" not in Path(local).read_text()


def test_unreachable_server_fails_before_any_work(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    out = tmp_path / "o"
    result = run_cli(
        "ingest", TINY, "--preset", "movielens", "-o", out, env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    )
    assert result.exit_code == 6
    assert f"cannot reach the MLflow tracking server at http://127.0.0.1:{port}" in result.stderr
    assert result.stderr.strip().endswith("or pass --no-track")  # the CLI names its flag
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
    import persotool as pt
    from persotool.errors import TrackingError

    os.environ["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{port}"
    try:
        with pytest.raises(TrackingError, match=r"or turn tracking off$"):  # the library names no flag
            pt.tracker()
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]


def test_file_store_uri_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli(
        "ingest",
        TINY,
        "--preset",
        "movielens",
        "-o",
        tmp_path / "o",
        env={"MLFLOW_TRACKING_URI": str(tmp_path / "mlruns")},
    )
    assert result.exit_code == 6 and "file store" in result.stderr
    assert not (tmp_path / "o").exists()


def test_no_track_writes_no_store(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    result = run_cli(
        "ingest",
        TINY,
        "--preset",
        "movielens",
        "-o",
        tmp_path / "o",
        "--no-track",
        "--json",
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"},
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["mlflow_run_id"] is None
    assert not db.exists()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real MLflow tracking server on 127.0.0.1, serving artifacts too."""
    home = tmp_path_factory.mktemp("server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = open(home / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{home / 'server.db'}",
            "--artifacts-destination",
            str(home / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=home,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail("mlflow server did not start:\n" + (home / "server.log").read_text()[-3000:])
        time.sleep(0.5)
    yield uri, home
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_ingest_through_a_real_mlflow_server(tmp_path: Path, mlflow_server) -> None:
    uri, home = mlflow_server
    result = run_cli(
        "ingest",
        MOVIELENS / "ratings.csv",
        "--preset",
        "movielens",
        "-o",
        tmp_path / "ml",
        "--experiment",
        "served",
        "--json",
        env={"MLFLOW_TRACKING_URI": uri},
    )
    assert result.exit_code == 0, result.stderr
    run_id = json.loads(result.stdout)["mlflow_run_id"]
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.metrics["rows_kept"] == 100_004
    assert {a.path for a in client.list_artifacts(run_id)} == {"manifest.json", "overview.png"}
    stored = list((home / "artifacts").rglob("manifest.json"))
    assert len(stored) == 1, "the artifact must have gone through the server to its destination"
    assert json.loads(stored[0].read_text())["counts"]["rows_kept"] == 100_004
