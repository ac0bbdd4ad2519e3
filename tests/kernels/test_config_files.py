"""Config files: the ones persotool ships are found by name from any working directory (and by
their old repository paths), and a path written in a config file is relative to that file."""

import os
from pathlib import Path

import pytest

import persotool as pt
from persotool.kernels.config import CONFIGS, locate
from tests.conftest import MOVIELENS, run_cli


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("configs")
    log = pt.synth(out=root / "synth", users=150, items=60, events=3_000, days=30, seed=8)
    ds = pt.ingest(log.log, out=root / "ds", schema=log.schema)
    return pt.split(ds, out=root / "split", strategy="leave-last", leave_last=2, valid=True).path


@pytest.fixture
def elsewhere(tmp_path: Path):
    """A working directory with no configs/ in sight."""
    old = Path.cwd()
    (tmp_path / "cwd").mkdir()
    os.chdir(tmp_path / "cwd")
    yield tmp_path / "cwd"
    os.chdir(old)


def test_shipped_configs_are_found_by_name_or_old_path_from_anywhere(elsewhere) -> None:
    assert locate("benchmark") == CONFIGS / "benchmark.toml"
    assert locate("ease", "spaces") == CONFIGS / "spaces" / "ease.toml"
    assert locate("ease", "models") == CONFIGS / "models" / "ease.toml"
    assert locate("configs/spaces/ease.toml") == CONFIGS / "spaces" / "ease.toml"  # the repository's old layout
    assert locate("movielens", "schemas") == CONFIGS / "schemas" / "movielens.toml"
    (elsewhere / "benchmark.toml").write_text("# mine\n")
    assert locate("benchmark.toml") == Path("benchmark.toml")  # a file of the user's own comes first


def test_every_default_works_outside_the_repository(split, elsewhere) -> None:
    tuned = run_cli("tune", split, "--space", "popular", "--trials", "2", "-o", "t", "--no-track")
    assert tuned.exit_code == 0, tuned.stderr
    trained = run_cli("train", split, "--config", "lightfm", "--set", "epochs=1", "-o", "m", "--no-track")
    assert trained.exit_code == 0, trained.stderr
    bench = run_cli("benchmark", split, "--only", "itemknn", "-o", "b", "--no-track")  # the shipped benchmark
    assert bench.exit_code == 0, bench.stderr
    ds = run_cli("ingest", MOVIELENS / "ratings.csv", "--schema", "movielens", "-o", "ds", "--no-track", "--json")
    assert ds.exit_code == 0, ds.stderr
    assert pt.Dataset("ds").items["features"].list.len().max() > 0  # movies.csv found beside the ratings
    unknown = run_cli("tune", split, "--space", "nonesuch", "--trials", "1", "-o", "u", "--no-track")
    assert unknown.exit_code == 3 and "ships: als, bpr, ease, itemknn, lightfm, popular" in unknown.stderr


def test_paths_in_a_config_file_are_relative_to_the_file(split, tmp_path, elsewhere) -> None:
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    model = pt.train(split, out=project / "models" / "pop", model="popular")
    (project / "mine.toml").write_text('model = "itemknn"\n[params]\nneighbors = 5\n')
    (project / "bench.toml").write_text(
        'baseline = "popular"\n[models.popular]\nmodel = "popular"\n[models.knn]\nconfig = "mine.toml"\n'
    )
    bench = run_cli("benchmark", split, "--config", project / "bench.toml", "-o", "b", "--no-track")
    assert bench.exit_code == 0, bench.stderr
    assert pt.Benchmark("b").manifest.models["knn"]["params"]["neighbors"] == 5
    config = pt.SimulationConfig.resolve(None, None)  # the shipped default: no model needed
    assert {arm.policy for arm in config.arms} == {"popular", "oracle"}
    (project / "sim.toml").write_text(
        'name = "rel"\n[[arms]]\nname = "a"\npolicy = "popular"\nshare = 0.5\n'
        '[[arms]]\nname = "b"\npolicy = "model"\nmodel = "models/pop"\nshare = 0.5\n'
        '[world]\nsource = "calibrated"\nground_truth = "truth"\n'
    )
    loaded = pt.SimulationConfig.resolve(project / "sim.toml")
    assert loaded.arms[1].model == model.path.resolve()
    assert loaded.world.source == "calibrated" and loaded.world.ground_truth == project.resolve() / "truth"
    overridden = pt.SimulationConfig.resolve(project / "sim.toml", {"world.source": "my-world"})
    assert overridden.world.source == "my-world"  # given on the command line: relative to where it runs


def test_a_schemas_attribute_file_is_relative_to_the_schema(tmp_path, elsewhere) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "log.csv").write_text("u,i,t\na,1,1700000000\nb,2,1700000100\n")
    (data / "genres.csv").write_text("item,genre\n1,Drama\n2,Comedy\n")
    (data / "schema.toml").write_text(
        '[columns]\nuser = "u"\nitem = "i"\ntime = "t"\n'
        '[items]\npath = "genres.csv"\nkey = "item"\nfeatures = ["genre"]\n'
    )
    made = pt.ingest(data / "log.csv", out="ds", schema=data / "schema.toml")
    assert sorted(made.items["features"].explode().to_list()) == ["genre=Comedy", "genre=Drama"]
