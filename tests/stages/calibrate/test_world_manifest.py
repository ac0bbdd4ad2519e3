"""A world directory whose manifest was edited is refused on load, naming the field (exit 4), by
`pt.World` and by a simulation that loads it: never an overflow, an unbounded allocation or a
simulation that "succeeds" with NaN."""

import csv
import json
import shutil
from pathlib import Path

import pytest

import persotool as pt
from persotool.errors import DataError
from tests.conftest import run_cli

EDITS = {
    "a grid of 600^3 nodes": (lambda m: m["grid"].update(sizes=[600, 600, 600]), "grid.sizes"),
    "a grid side of 0": (lambda m: m["grid"].update(sizes=[0, 24, 10]), "grid.sizes"),
    "a huge cutoff": (lambda m: m["window"].update(cutoff_day=10**6), "window.cutoff_day"),
    "a negative cutoff": (lambda m: m["window"].update(cutoff_day=-3), "window.cutoff_day"),
    "the window as a string": (lambda m: m.update(window="0.8"), "window"),
    "no fit": (lambda m: m.pop("fit"), "fit"),
    "a NaN Beta parameter": (lambda m: m["fit"]["params"].update(alpha=float("nan")), "fit.params"),
    "a zero Beta parameter": (lambda m: m["fit"]["params"].update(beta=0.0), "fit.params"),
    "a negative Beta parameter": (lambda m: m["fit"]["params"].update(zeta=-1.0), "fit.params"),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("world-manifest")
    with open(root / "log.csv", "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["u", "i", "t"])
        for u in range(40):
            for d in range(0, 60, 1 + u % 4):
                out.writerow([f"u{u}", f"i{(u + d) % 50}", 1_700_000_000 + d * 86_400 + u * 60])
    ds = pt.ingest(root / "log.csv", out=root / "ds", user_col="u", item_col="i", time_col="t")
    return {"root": root, "dataset": ds.path, "world": pt.calibrate(ds, out=root / "world").path}


def _edited(world: dict[str, Path], tmp_path: Path, edit) -> Path:
    copy = tmp_path / "world"
    shutil.copytree(world["world"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize("case", EDITS)
def test_an_edited_world_manifest_is_refused_naming_the_field(world, tmp_path, case) -> None:
    edit, field = EDITS[case]
    copy = _edited(world, tmp_path, edit)
    with pytest.raises(DataError, match=f"manifest field '{field}'"):
        pt.World(copy)


def test_a_simulation_refuses_an_edited_world_before_any_work(world, tmp_path) -> None:
    copy = _edited(world, tmp_path, EDITS["a grid of 600^3 nodes"][0])
    config = tmp_path / "sim.toml"
    config.write_text(
        f'name = "w"\ndays = 3\npre_days = 0\n[world]\npopulation = 100\nsource = "{copy}"\n'
        '[[arms]]\nname = "popular"\npolicy = "popular"\nshare = 0.5\n'
        '[[arms]]\nname = "random"\npolicy = "random"\nshare = 0.5\n'
    )
    made = run_cli("simulate", world["dataset"], "--config", config, "-o", tmp_path / "sim", "--no-track")
    assert made.exit_code == 4 and "manifest field 'grid.sizes'" in made.stderr, made.stderr
    assert not (tmp_path / "sim").exists()


def test_a_log_of_one_day_is_refused_not_fitted_to_its_starting_values(tmp_path) -> None:
    with open(tmp_path / "day.csv", "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["u", "i", "t"])
        for u in range(200):
            for k in range(1 + u % 4):
                out.writerow([f"u{u}", f"i{(u + k) % 40}", 1_700_000_000 + (u * 17 + k) % 3600])
    ds = pt.ingest(tmp_path / "day.csv", out=tmp_path / "ds", user_col="u", item_col="i", time_col="t")
    made = run_cli("calibrate", ds.path, "-o", tmp_path / "w", "--no-track")
    assert made.exit_code == 4 and "needs at least 2 days" in made.stderr and "2023-11-14 22:13" in made.stderr
    assert not (tmp_path / "w").exists()


def test_a_fit_the_in_sample_check_rejects_is_flagged(world, tmp_path) -> None:
    copy = _edited(world, tmp_path, lambda m: m["diagnostics"]["active_days"].update(p_value=1e-8))
    assert any("in-sample check rejects the fit" in note for note in pt.World(copy).notes())
    original = pt.World(world["world"])
    rejected = original.manifest.diagnostics["active_days"]["p_value"] < 0.01
    assert rejected == any("in-sample check rejects the fit" in note for note in original.notes())
