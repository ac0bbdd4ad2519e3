"""The documents cannot drift: every result table in README.md and docs/ is the one its source gives
(docs/demo/, make demo's outputs; benchmarks/results/, the benchmarks'), and the check catches a
number edited by hand or a source that changed."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO


def _docs_module(root: Path):
    """scripts/docs.py pointed at a repository root (the real one, or a copy to tamper with)."""
    spec = importlib.util.spec_from_file_location("persotool_docs_script", REPO / "scripts" / "docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.REPO, module.DOCS = root, root / "docs"
    module.DEMO_DOCS, module.RESULTS = root / "docs" / "demo", root / "benchmarks" / "results"
    return module


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copytree(REPO / "benchmarks" / "results", root / "benchmarks" / "results")
    shutil.copy(REPO / "README.md", root / "README.md")
    shutil.copy(REPO / "CHANGELOG.md", root / "CHANGELOG.md")
    return root


def test_the_documents_match_their_sources(capsys) -> None:
    docs = _docs_module(REPO)
    assert docs.check(None) == 0, capsys.readouterr().err
    readme = (REPO / "README.md").read_text()
    blocks = list(docs.BLOCK.finditer(readme))
    assert {b[3] for b in blocks} >= {"demo/benchmark.md", "demo/ab-test.md"}  # the headline results
    assert all(b[5].strip() for b in blocks)  # none left empty
    performance = (REPO / "docs" / "performance.md").read_text()
    assert {b[3] for b in docs.BLOCK.finditer(performance)} >= set(docs.BENCHES) - {"validate_simulation"}


def test_a_number_edited_by_hand_is_caught(copy: Path, capsys) -> None:
    docs = _docs_module(copy)
    readme = copy / "README.md"
    text = readme.read_text()
    start = text.index("<!-- include demo/benchmark.md")
    cell = text.index("0.0", start)
    readme.write_text(text[:cell] + "0.9" + text[cell + 3 :])
    assert docs.check(None) == 1
    err = capsys.readouterr().err
    assert "README.md:" in err and "demo/benchmark.md differs from its source" in err
    docs.fill()
    assert readme.read_text() == text and docs.check(None) == 0


def test_a_link_to_a_missing_page_or_heading_is_caught(copy: Path, capsys) -> None:
    docs = _docs_module(copy)
    assert docs.check(None) == 0
    page = copy / "docs" / "commands.md"
    page.write_text(page.read_text().replace("(simulator.md#calibrate-and-backtest)", "(simulator.md#calibration)"))
    (copy / "docs" / "tracking.md").unlink()
    assert docs.check(None) == 1
    err = capsys.readouterr().err
    assert "docs/commands.md: a link to simulator.md#calibration, a heading simulator.md does not have" in err
    assert "README.md: a link to docs/tracking.md, which does not exist" in err


def test_a_benchmark_rerun_changes_the_table(copy: Path, capsys) -> None:
    docs = _docs_module(copy)
    path = copy / "benchmarks" / "results" / "evaluate.json"
    report = json.loads(path.read_text())
    report["ratio_to_floor"] = 2.5  # a slower run: the target is now missed
    path.write_text(json.dumps(report))
    assert docs.check(None) == 1
    assert "docs/performance.md" in capsys.readouterr().err
    docs.fill()
    table = docs.bench_part("evaluate")
    assert "**2.50x**" in table and "<= 2x: missed" in table
    assert table in (copy / "docs" / "performance.md").read_text()


def test_demo_pages_are_the_commands_own_tables_without_timings(tmp_path: Path) -> None:
    """docs/demo/ pages are what the command draws (result.to_markdown()), timings left out:
    a benchmark's table in the page equals its Markdown minus the fit-time row."""
    import persotool as pt

    log = pt.synth(out=tmp_path / "synth", users=150, items=60, events=3_000, days=20, seed=4)
    ds = pt.ingest(log.log, out=tmp_path / "movielens", schema=log.schema)
    sp = pt.split(ds, out=tmp_path / "split", strategy="leave-last", leave_last=2)
    config = pt.BenchmarkConfig(
        name="docs",
        baseline="popular",
        k=[10],
        metrics=["ndcg"],
        models={"popular": {"model": "popular"}, "ease": {"model": "ease", "params": {"l2": 100}}},
    )
    bench = pt.benchmark(sp, config, tmp_path / "benchmark")
    docs = _docs_module(REPO)
    docs.DEMO_STEPS = [("benchmark", "benchmark", "persotool benchmark ...")]
    page = docs.demo_markdown(tmp_path)["benchmark"]
    drawn = bench.to_markdown()
    assert "fit s" in drawn and "fit s" not in page
    ndcg = next(line for line in drawn.splitlines() if line.startswith("| ndcg@10"))
    assert ndcg in page
    assert str(tmp_path) not in page
