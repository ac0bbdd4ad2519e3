"""Nothing persotool does deletes an input or a user's own files: every stage, `tune` included,
goes through one output guard (never the current directory or above it, never an input or what an
input was made from, never a directory holding one), and `--force` replaces only a directory
persotool wrote. A digest covers what makes an artifact what it is, so a study or a model never
mistakes one dataset's split for another's."""

import json
import os
from pathlib import Path

import polars as pl
import pytest

import persotool as pt
from persotool.kernels.config import CONFIGS
from tests.conftest import run_cli

SPACE = CONFIGS / "spaces" / "popular.toml"


def _log(path: Path, prefix: str) -> Path:
    """A small ratings log; `prefix` renames every item without changing their order, so two logs
    give identical index tables (user_idx, item_idx) but are different datasets."""
    rows = [
        (f"u{u:03d}", f"{prefix}{(u * 7 + k * 3) % 40:03d}", 3 + (u + k) % 3, 1_600_000_000 + 86_400 * k + u)
        for u in range(60)
        for k in range(12)
    ]
    frame = pl.DataFrame(rows, schema=["user", "item", "rating", "ts"], orient="row")
    frame.write_csv(path)
    return path


def _dataset(root: Path, prefix: str = "i") -> Path:
    log = _log(root / f"log-{prefix}.csv", prefix)
    return pt.ingest(
        log, out=root / f"ds-{prefix}", user_col="user", item_col="item", time_col="ts", value_col="rating"
    ).path


def _split(dataset: Path, out: Path) -> Path:
    return pt.split(dataset, out=out, strategy="leave-last", leave_last=2, valid=True).path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A working directory holding a dataset and its split, as a user's project would."""
    dataset = _dataset(tmp_path)
    _split(dataset, tmp_path / "split")
    return tmp_path


def _tune(split: Path, out, *more: str):
    return run_cli("tune", split, "--space", SPACE, "--trials", "2", "-o", out, "--no-track", *more)


def _contents(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_tune_force_into_the_working_directory_deletes_nothing(project: Path) -> None:
    before = _contents(project)
    old = Path.cwd()
    os.chdir(project)
    try:
        outcome = _tune(Path("split"), ".", "--force")
    finally:
        os.chdir(old)
    assert outcome.exit_code == 7, outcome.stderr
    assert "current directory" in outcome.stderr
    assert _contents(project) == before


def test_tune_force_onto_the_splits_dataset_deletes_nothing(project: Path) -> None:
    before = _contents(project / "ds-i")
    outcome = _tune(project / "split", project / "ds-i", "--force")
    assert outcome.exit_code == 7, outcome.stderr
    assert "would replace the input" in outcome.stderr
    assert _contents(project / "ds-i") == before


def test_tune_force_onto_the_directory_holding_the_split_deletes_nothing(project: Path) -> None:
    before = _contents(project)
    outcome = _tune(project / "split", project, "--force")
    assert outcome.exit_code == 7, outcome.stderr
    assert _contents(project) == before


@pytest.mark.parametrize("command", ["split", "train", "tune"])
@pytest.mark.parametrize("foreign", ["notes.txt", "manifest.json"])
def test_force_replaces_only_what_persotool_wrote(project: Path, command: str, foreign: str) -> None:
    """A directory of the user's own, even one with a manifest.json of another program, survives
    `--force` with exit 7; the same command then replaces a persotool output of its own."""
    mine = project / "mine"
    mine.mkdir()
    (mine / foreign).write_text('{"name": "my web app", "kind": "split"}\n')
    args = {
        "split": ["split", project / "ds-i", "--strategy", "random"],
        "train": ["train", project / "split", "--model", "popular"],
        "tune": ["tune", project / "split", "--space", SPACE, "--trials", "1"],
    }[command]
    outcome = run_cli(*args, "-o", mine, "--force", "--no-track")
    assert outcome.exit_code == 7, outcome.stderr
    assert "persotool did not write" in outcome.stderr
    assert (mine / foreign).read_text().startswith('{"name": "my web app"')
    ours = project / "ours"
    assert run_cli(*args, "-o", ours, "--no-track").exit_code == 0
    again = run_cli(*args, "-o", ours, "--force", "--no-track")
    assert again.exit_code == 0, again.stderr


def test_force_may_use_an_empty_directory(project: Path) -> None:
    (project / "empty").mkdir()
    outcome = run_cli("split", project / "ds-i", "-o", project / "empty", "--force", "--no-track")
    assert outcome.exit_code == 0, outcome.stderr
    assert (project / "empty" / "train.parquet").is_file()


def test_a_simulation_may_not_replace_the_model_it_simulates(project: Path) -> None:
    model = pt.train(project / "split", out=project / "models" / "popular", model="popular")
    config = project / "sim.toml"
    config.write_text(
        f'name = "guard"\ndays = 3\n[world]\npopulation = 50\n[[arms]]\nname = "a"\npolicy = "random"\nshare = 0.5\n'
        f'[[arms]]\nname = "b"\npolicy = "model"\nshare = 0.5\nmodel = "{model.path}"\n'
    )
    before = _contents(project / "models")
    outcome = run_cli("simulate", project / "ds-i", "--config", config, "-o", project / "models", "--force")
    assert outcome.exit_code == 7, outcome.stderr
    assert _contents(project / "models") == before


def test_splits_of_different_datasets_have_different_digests(tmp_path: Path) -> None:
    """Identical index tables, different datasets: the split (and a model trained on it) must not
    share a digest, and a study of one refuses the other's split."""
    a = _split(_dataset(tmp_path, "i"), tmp_path / "split-a")
    b = _split(_dataset(tmp_path, "j"), tmp_path / "split-b")
    assert (a / "train.parquet").read_bytes() == (b / "train.parquet").read_bytes()
    assert pt.Split(a).digest != pt.Split(b).digest
    assert (
        pt.train(a, out=tmp_path / "ma", model="popular").digest
        != pt.train(b, out=tmp_path / "mb", model="popular").digest
    )
    # the same split with another config is another split
    c = pt.split(tmp_path / "ds-i", out=tmp_path / "split-c", strategy="leave-last", leave_last=3, valid=True)
    assert c.digest != pt.Split(a).digest

    assert _tune(a, tmp_path / "study").exit_code == 0
    best = (tmp_path / "study" / "best.toml").read_bytes()
    manifest = json.loads((tmp_path / "study" / "manifest.json").read_text())
    outcome = _tune(b, tmp_path / "study")
    assert outcome.exit_code == 7, outcome.stderr
    assert "another split" in outcome.stderr
    assert (tmp_path / "study" / "best.toml").read_bytes() == best
    assert json.loads((tmp_path / "study" / "manifest.json").read_text()) == manifest


def test_a_tuning_journal_of_another_split_is_not_continued(tmp_path: Path) -> None:
    """Killed before its manifest, a tuning directory holds only its journal: still its split's."""
    a = _split(_dataset(tmp_path, "i"), tmp_path / "split-a")
    b = _split(_dataset(tmp_path, "j"), tmp_path / "split-b")
    assert _tune(a, tmp_path / "study").exit_code == 0
    (tmp_path / "study" / "manifest.json").unlink()
    outcome = _tune(b, tmp_path / "study")
    assert outcome.exit_code == 7, outcome.stderr
    assert "another split" in outcome.stderr


def test_a_model_digest_covers_its_parameters(project: Path) -> None:
    one = pt.train(project / "split", out=project / "p1", model="popular", params={"window_days": 10_000})
    two = pt.train(project / "split", out=project / "p2", model="popular", params={"window_days": 20_000})
    assert (one.path / "arrays.npz").read_bytes() == (two.path / "arrays.npz").read_bytes()
    assert one.digest != two.digest
