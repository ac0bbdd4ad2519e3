"""Every file in tests/stages/ingest/bad/ gets one clear line, its documented exit status, and no output."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.conftest import DATA, run_cli

BAD = DATA / "bad"
CASES = tomllib.loads((BAD / "cases.toml").read_text())


def test_corpus_is_complete() -> None:
    files = {p.name for p in BAD.iterdir() if p.name != "cases.toml"}
    assert files == set(CASES["cases"]), "every bad file needs an entry in cases.toml and vice versa"
    assert len(files) >= 20


@pytest.mark.parametrize("name", sorted(CASES["cases"]))
def test_bad_input(name: str, tmp_path: Path) -> None:
    case = CASES["cases"][name]
    path = BAD / name
    source = (BAD / case["source"]).resolve() if "source" in case else path
    args = [a.replace("{file}", str(path)) for a in case.get("args", CASES["defaults"]["args"])]
    out = tmp_path / "out"
    result = run_cli("ingest", source, "-o", out, "--no-track", *args)
    assert result.exception is None, result.exception
    assert result.exit_code == case["exit"], result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("persotool: error: ")
    for fragment in case["expect"]:
        assert fragment in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "no temporary directory may be left behind"


def test_debug_shows_traceback(tmp_path: Path) -> None:
    result = run_cli(
        "ingest", BAD / "ragged_long.csv", "--preset", "movielens", "-o", tmp_path / "o", "--no-track", "--debug"
    )
    assert result.exit_code == 4
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("persotool: error: ")


def test_unwritable_output(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_cli("ingest", DATA / "good" / "tiny.csv", "--preset", "movielens", "-o", blocker / "sub", "--no-track")
    assert result.exit_code == 7
    assert "cannot create the output directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_existing_output_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("ingest", DATA / "good" / "tiny.csv", "--preset", "movielens", "-o", out, "--no-track")
    assert result.exit_code == 7
    assert "already exists (use --force" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"
    args = ("ingest", DATA / "good" / "tiny.csv", "--preset", "movielens", "--no-track", "--force")
    refused = run_cli(*args, "-o", out)  # not persotool's: --force does not delete a user's files
    assert refused.exit_code == 7, refused.stderr
    assert (out / "keep.txt").read_text() == "mine"
    ours = tmp_path / "ours"
    assert run_cli(*args, "-o", ours).exit_code == 0
    forced = run_cli(*args, "-o", ours)
    assert forced.exit_code == 0, forced.stderr
    assert (ours / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "ours"]


def test_missing_columns_flags_is_config_error(tmp_path: Path) -> None:
    result = run_cli("ingest", DATA / "good" / "tiny.csv", "-o", tmp_path / "o", "--no-track")
    assert result.exit_code == 3
    assert "--user-col" in result.stderr
