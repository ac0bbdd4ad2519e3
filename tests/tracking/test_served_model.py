"""A trained model is an MLflow model: it shows in the run's Models, holds no pickle, and a real
`mlflow models serve` on 127.0.0.1 answers recommendation requests over HTTP with the lists
`persotool recommend` writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl

import persotool as pt


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_trained_model_is_served_over_http(tmp_path: Path, scratch_cwd) -> None:
    import mlflow

    log = pt.synth(out=tmp_path / "synth", users=200, items=80, events=5_000, days=20, seed=5)
    ds = pt.ingest(log.log, out=tmp_path / "ds", schema=log.schema)
    sp = pt.split(ds, out=tmp_path / "split", strategy="leave-last", leave_last=2)
    model = pt.train(sp, out=tmp_path / "ease", model="ease", params={"l2": 50}, track=pt.tracker("served"))
    uri = f"sqlite:///{scratch_cwd / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    run = mlflow.get_run(model.mlflow_run_id)
    (logged,) = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
        output_format="list",
    )
    stored = Path(logged.artifact_location.removeprefix("file://"))
    names = {p.name for p in stored.rglob("*") if p.is_file()}
    assert "served_model.py" in names and "arrays.npz" in names and "user_ids.parquet" in names
    assert not any(name.endswith((".pkl", ".pickle")) for name in names)  # models from code: nothing pickled

    port = _free_port()
    # the serving command starts uvicorn from PATH, as in an activated environment
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow_bin), "models", "serve", "-m", f"models:/{logged.model_id}", "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(
        command, cwd=scratch_cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "mlflow models serve did not start"
            time.sleep(0.5)
        users = pl.read_parquet(ds.path / "users.parquet")["user_id"].head(3).to_list()
        body = {"dataframe_split": {"columns": ["user_id", "k"], "data": [[u, 5] for u in [*users, "nobody"]]}}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = pl.DataFrame(json.loads(response.read())["predictions"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert answer.height == 4 * 5
    (tmp_path / "users.txt").write_text("\n".join([*users, "nobody"]) + "\n")
    recs = pt.recommend(model, out=tmp_path / "recs", users=tmp_path / "users.txt", k=5).recs
    for column in ("user_id", "item_id", "rank", "source"):
        assert answer[column].to_list() == recs[column].to_list(), column
    assert answer.filter(pl.col("user_id") == "nobody")["source"].to_list() == ["fallback: unknown user"] * 5
