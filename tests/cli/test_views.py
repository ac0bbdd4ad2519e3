"""Results show themselves: the terminal table, the Markdown and the --json payload carry the same
numbers; notes speak the API's names in Python and the flags on the command line; manifests are
typed; every KEY=VALUE option and config file goes through one parser and one loader."""

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

import persotool as pt
from persotool.errors import ConfigError, DataError
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("views")
    log = pt.synth(out=root / "synth", users=400, items=150, events=12_000, days=60, seed=3)
    ds = pt.ingest(log.log, out=root / "ds", schema=log.schema)
    sp = pt.split(ds, out=root / "split", strategy="temporal", cutoff="0.3")  # many users start later
    model = pt.train(sp, out=root / "popular", model="popular")
    return {"root": root, "ds": ds, "split": sp, "model": model}


def _terminal(view) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(view)
    return buffer.getvalue()


def test_evaluation_shows_the_same_numbers_everywhere(world) -> None:
    evaluation = pt.evaluate(world["model"], k=[5, 10])
    terminal, markdown, payload = _terminal(evaluation), evaluation.to_markdown(), evaluation.to_dict()
    for name in ("ndcg@10", "recall@5", "coverage@10"):
        shown = f"{payload[name]:,.4f}"
        assert re.search(rf"{re.escape(name)}\s+│?\s*{re.escape(shown)}", terminal), (name, shown)
        assert f"| {name} | {shown} |" in markdown
    assert markdown.startswith("**Evaluation of popular**")
    assert "| segment | users | metric | mean | 95% CI |" in markdown  # the per-segment table too


def test_every_artifact_draws_and_serialises(world) -> None:
    for view in (world["ds"], world["split"], world["model"], world["ds"].info()):
        assert _terminal(view).strip()
        json.dumps(view.to_dict())  # what --json prints is plain JSON
        assert view.to_markdown().strip()
    assert f"| rows kept | {world['ds'].counts['rows_kept']:,} |" in world["ds"].to_markdown()


def test_cold_start_note_names_the_option_as_each_side_spells_it(world, tmp_path: Path) -> None:
    counts = world["split"].manifest.counts
    assert counts["test_users_without_history"] * 10 >= counts["test_users"]  # the fixture has many cold users
    (note,) = world["split"].notes()
    assert "`test_users` seen keeps users with history only" in note
    done = run_cli(
        "split", world["ds"].path, "-o", tmp_path / "s", "--strategy", "temporal", "--cutoff", "0.3", "--no-track"
    )
    assert done.exit_code == 0, done.stderr
    assert "persotool: note:" in done.stderr and "--test-users seen keeps users with history only" in done.stderr
    kept = pt.split(world["ds"], out=tmp_path / "seen", strategy="temporal", cutoff="0.3", test_users="seen")
    assert kept.notes() == []


def test_manifest_is_typed_and_a_wrong_field_is_named(world, tmp_path: Path) -> None:
    import shutil

    sp = world["split"]
    assert isinstance(sp.manifest.n_users, int) and sp.manifest.dataset.digest == world["ds"].digest
    assert sp.dataset.digest == world["ds"].digest  # lineage by path, checked by digest
    copy = tmp_path / "split"
    shutil.copytree(sp.path, copy)
    raw = json.loads((copy / "manifest.json").read_text())
    raw["n_users"] = "many"
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match="manifest field 'n_users'"):
        pt.Split.load(copy)


def test_benchmark_only_keeps_the_baseline_and_names_unknown_models(world, tmp_path: Path) -> None:
    config = pt.BenchmarkConfig(
        name="views",
        baseline="popular",
        k=[10],
        metrics=["ndcg"],
        models={"popular": {"model": "popular"}, "random": {"model": "random"}, "itemknn": {"model": "itemknn"}},
    )
    made = pt.benchmark(world["split"], config, tmp_path / "b", only=["random"])
    assert made.results["model"].to_list() == ["popular", "random"]
    assert "| metric | popular (baseline) | random |" in made.to_markdown()
    with pytest.raises(ConfigError, match=r"`only`: 'ease' is not a model of this benchmark"):
        pt.benchmark(world["split"], config, tmp_path / "c", only=["ease"])
    toml = tmp_path / "bench.toml"
    toml.write_text(
        'name = "views"\nbaseline = "popular"\nk = [10]\nmetrics = ["ndcg"]\n'
        '[models.popular]\nmodel = "popular"\n[models.random]\nmodel = "random"\n'
    )
    done = run_cli("benchmark", world["split"].path, "--config", toml, "-o", tmp_path / "d", "--only", "ease")
    assert done.exit_code == 3 and "--only: 'ease' is not a model" in done.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["train", "SPLIT", "--model", "popular", "--set", "=3"], "--set '=3': expected KEY=VALUE"),
        (["ingest", "x.csv", "--preset", "movielens", "--event-weight", "view"], "--event-weight 'view': expected"),
        (["ingest", "x.csv", "--preset", "movielens", "--event-weight", "view=lots"], "expected NAME=NUMBER"),
        (["evaluate", "MODEL", "--min", "ndcg@10=nan"], "--min 'ndcg@10=nan': expected METRIC=FLOOR"),
        (["evaluate", "MODEL", "--k", "5,ten"], "--k '5,ten': expected comma-separated integers"),
    ],
)
def test_key_value_options_fail_with_one_line(world, tmp_path: Path, args: list[str], line: str) -> None:
    args = [str(world["split"].path) if a == "SPLIT" else str(world["model"].path) if a == "MODEL" else a for a in args]
    done = run_cli(
        *args, "-o" if args[0] in ("train", "ingest") else "--json", *([tmp_path / "o"] * (args[0] != "evaluate"))
    )
    assert done.exit_code in (2, 3), done.stderr
    assert line in done.stderr and done.stderr.count("\n") == 1


def test_one_config_loader_reaches_into_tables(tmp_path: Path) -> None:
    from persotool.kernels.config import load_config
    from persotool.kernels.simulation.spec import SimulationConfig

    toml = tmp_path / "sim.toml"
    toml.write_text(
        'name = "t"\ncontrol = "a"\n[world]\npopulation = 100\n'
        '[[arms]]\nname = "a"\npolicy = "popular"\nshare = 0.5\n[[arms]]\nname = "b"\npolicy = "random"\nshare = 0.5\n'
    )
    cfg = load_config(SimulationConfig, toml, {"world.population": 5000, "days": 9})
    assert cfg.world.population == 5000 and cfg.days == 9 and cfg.name == "t"
    with pytest.raises(ConfigError, match=r"`world\.populaton`: is not a known setting"):
        load_config(SimulationConfig, toml, {"world.populaton": 5})
    with pytest.raises(ConfigError, match="name: Input should be a valid string"):
        load_config(SimulationConfig, toml, {"name.days": 5})


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["split", "DS", "--strategy", "foo"], "persotool: error: --strategy: Input should be 'temporal'"),
        (["datasets", "synth", "--churn", "3"], "persotool: error: --churn: Input should be less than 1"),
        (
            ["ingest", "LOG", "--schema", "SCHEMA", "--time-format", "xx"],
            "persotool: error: --time-format: 'xx' is not",
        ),
    ],
)
def test_option_errors_name_the_flag_not_the_setting(world, tmp_path: Path, args: list[str], line: str) -> None:
    log = world["root"] / "synth"
    paths = {"DS": world["ds"].path, "LOG": log / "events.csv", "SCHEMA": log / "schema.toml"}
    done = run_cli(*[paths.get(a, a) for a in args], "-o", tmp_path / "o", "--no-track")
    assert done.exit_code == 3 and done.stderr.startswith(line), done.stderr
    assert not (tmp_path / "o").exists()


def test_tables_print_whole_when_piped(capsys, monkeypatch) -> None:
    """Piped to a file or a CI log, a table is not cut at 80 columns (`precisio…`)."""
    from persotool.cli.options import show
    from persotool.kernels import render

    class Wide(render.View):
        def blocks(self):
            columns = ["model", *(f"precision@{k}" for k in (1, 5, 10, 20, 50, 100, 200, 500))]
            return [render.Table("wide", columns, [["lightfm-warp", *("0.0520" for _ in columns[1:])]])]

        def to_dict(self):
            return {}

    monkeypatch.delenv("COLUMNS", raising=False)
    show(Wide(), as_json=False)  # pytest's captured stdout is not a terminal
    out = capsys.readouterr().out
    assert "…" not in out and "precision@500" in out
    assert max(len(line) for line in out.splitlines()) > 120
