"""The Python API: the walk-through of docs/python-api.md and the README's example run as written,
`import persotool` stays light, and the API and the CLI write identical artifacts for the same
inputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import persotool as pt
from tests.conftest import MOVIELENS, REPO, run_cli


def _python_block(document: str) -> str:
    text = (REPO / document).read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def _run_as_written(code: str, cwd: Path) -> subprocess.CompletedProcess:
    (cwd / "datasets").symlink_to(REPO / "datasets")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


def test_readme_example_runs_as_written(tmp_path: Path) -> None:
    done = _run_as_written(_python_block("README.md"), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("movielens", "split", "ease"):
        assert (tmp_path / "build" / name / "manifest.json").is_file(), name
    assert (tmp_path / "mlflow.db").is_file()  # the tracked call recorded its run


def test_python_api_walkthrough_runs_as_written(tmp_path: Path) -> None:
    done = _run_as_written(_python_block("docs/python-api.md"), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("movielens", "split", "ease", "benchmark", "world", "ab-test"):
        assert (tmp_path / "build" / "api" / name / "manifest.json").is_file(), name
    assert (tmp_path / "mlflow.db").is_file()  # the tracked calls recorded their runs
    assert "OpenBLAS" not in done.stderr


def test_import_is_light() -> None:
    code = "import sys, persotool; print(','.join(m for m in ('polars', 'numpy', 'mlflow') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
    assert {"ingest", "split", "train", "evaluate", "benchmark", "simulate", "Dataset", "Experiment"} <= set(dir(pt))


def test_cli_and_api_write_identical_artifacts(tmp_path: Path) -> None:
    ratings = MOVIELENS / "ratings.csv"
    assert run_cli("ingest", ratings, "--preset", "movielens", "-o", tmp_path / "cli-ds", "--no-track").exit_code == 0
    api_ds = pt.ingest(ratings, out=tmp_path / "api-ds", preset="movielens")
    cli_manifest = json.loads((tmp_path / "cli-ds" / "manifest.json").read_text())
    assert api_ds.digest == cli_manifest["dataset_digest"]
    assert api_ds.manifest.config_hash == cli_manifest["config_hash"]

    args = ["--strategy", "leave-last", "--leave-last", "5", "--min-item-interactions", "10", "--no-track"]
    assert run_cli("split", tmp_path / "cli-ds", "-o", tmp_path / "cli-split", *args).exit_code == 0
    api_split = pt.split(
        api_ds, out=tmp_path / "api-split", strategy="leave-last", leave_last=5, min_item_interactions=10
    )
    assert api_split.digest == json.loads((tmp_path / "cli-split" / "manifest.json").read_text())["split_digest"]
    assert api_split.dataset.digest == api_ds.digest

    cli_model = run_cli("train", tmp_path / "cli-split", "--model", "ease", "-o", tmp_path / "cli-ease", "--no-track")
    assert cli_model.exit_code == 0, cli_model.stderr
    api_model = pt.train(api_split, out=tmp_path / "api-ease", model="ease")
    cli_files = json.loads((tmp_path / "cli-ease" / "manifest.json").read_text())["files"]
    assert api_model.manifest.files["arrays.npz"] == cli_files["arrays.npz"]
    evaluated = run_cli("evaluate", tmp_path / "cli-ease", "--k", "10", "--metrics", "ndcg", "--json", "--no-track")
    assert pt.evaluate(api_model, k=10, metrics="ndcg").summary["ndcg@10"] == json.loads(evaluated.stdout)["ndcg@10"]


def test_default_metric_list_in_help_matches_the_library() -> None:
    from persotool.stages.evaluate.names import DEFAULT_METRICS as LIBRARY
    from tests.conftest import run_cli

    shown = " ".join(run_cli("evaluate", "--help").stdout.split())
    listed = shown.split("(default: ")[1].split(";")[0]
    assert tuple(name.strip() for name in listed.split(",")) == LIBRARY


def test_api_errors_name_options_the_cli_shows_flags(tmp_path: Path) -> None:
    import pytest

    from persotool.errors import OutputError

    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputError, match="use `force` to replace it"):
        pt.ingest(MOVIELENS / "ratings.csv", out=tmp_path / "taken", preset="movielens")
    cli = run_cli("ingest", MOVIELENS / "ratings.csv", "--preset", "movielens", "-o", tmp_path / "taken", "--no-track")
    assert cli.exit_code == 7 and "use --force to replace it" in cli.stderr


def test_api_names_survive_importing_every_module() -> None:
    """Importing a submodule sets it as an attribute of its package: an API name equal to a module
    name (say `tracking`) would turn from a function into a module once anything imported it."""
    import importlib
    import pkgutil

    modules = {m.name.removeprefix("persotool.") for m in pkgutil.iter_modules(pt.__path__, "persotool.")}
    assert not modules & set(pt.__all__), modules & set(pt.__all__)
    for name in modules - {"__main__"}:
        importlib.import_module(f"persotool.{name}")
    assert callable(pt.tracker) and pt.tracker.__module__ == "persotool.workflow"
    assert pt.ingest.__module__ == "persotool.workflow"
