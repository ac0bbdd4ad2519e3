"""`persotool track` records only an output that is as it was written: the files its manifest
recorded digests for, and every table it needs, checked as the loaders check them (exit 4 naming
the file otherwise)."""

from pathlib import Path

import pytest

import persotool as pt
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("track-verify")
    log = pt.synth(out=root / "synth", users=120, items=50, events=2_500, days=20, seed=6)
    ds = pt.ingest(log.log, out=root / "ds", schema=log.schema)
    sp = pt.split(ds, out=root / "split", strategy="leave-last", leave_last=2)
    config = pt.BenchmarkConfig(
        baseline="popular", models={"popular": {"model": "popular"}, "itemknn": {"model": "itemknn"}}
    )
    bench = pt.benchmark(sp, config, root / "bench")
    model = pt.train(sp, out=root / "model", model="popular")
    evaluation = pt.evaluate(model, out=root / "eval")
    return {"root": root, "model": model.path, "bench": bench.path, "eval": evaluation.path}


def _copy(path: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / path.name
    shutil.copytree(path, target)
    return target


def _track(path: Path):
    return run_cli("track", path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{path.parent / 'ml.db'}"})


def test_a_model_whose_arrays_changed_is_not_recorded(outputs, tmp_path) -> None:
    model = _copy(outputs["model"], tmp_path)
    data = (model / "arrays.npz").read_bytes()
    (model / "arrays.npz").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    made = _track(model)
    assert made.exit_code == 4 and "arrays.npz: does not match the digest recorded" in made.stderr, made.stderr


def test_a_benchmark_missing_a_model_file_is_not_recorded(outputs, tmp_path) -> None:
    bench = _copy(outputs["bench"], tmp_path)
    (bench / "models" / "itemknn" / "model.json").unlink()
    made = _track(bench)
    assert made.exit_code == 4 and "model.json: is missing" in made.stderr, made.stderr


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_damaged_or_missing_table_is_not_recorded(outputs, tmp_path, damage) -> None:
    evaluation = _copy(outputs["eval"], tmp_path)
    table = evaluation / "per_user.parquet"
    if damage == "missing":
        table.unlink()
    else:
        table.write_bytes(table.read_bytes()[:-40])
    made = _track(evaluation)
    assert made.exit_code == 4 and "per_user.parquet" in made.stderr, made.stderr
    assert ("is missing" if damage == "missing" else "cannot be read") in made.stderr
