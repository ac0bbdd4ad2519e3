"""Does the simulator predict? Calibration time on the bundled MovieLens log (target: under 10
minutes on 2 cores), the back-test of the bundled MovieLens log at cutoff 0.8, and the back-test of
a `datasets synth` log whose behaviour is known (users 3,000, 150 days, cutoff 0.7). Each back-test
carries its own baselines (persistence, historical rate, nobody returns) and noise floors, measured
in the same run. Results: benchmarks/results/backtest.json.

    python benchmarks/backtest.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from results_file import machine, write_results

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "backtest.json"


def _summary(result: dict) -> dict:
    from persotool.stages.backtest.compare import SOURCES

    keep = (*SOURCES, "noise", "verdict", "best_naive")
    return {
        "window": result["window"],
        "verdict": result["verdict"],
        "notes": result["notes"],
        "seconds": result["seconds"],
        "user_days_per_second": result["user_days_per_second"],
        "quantities": {q["quantity"]: {k: q.get(k) for k in keep if k in q} for q in result["quantities"]},
    }


def main() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from persotool.kernels.config import load_toml
    from persotool.stages.backtest import run as backtest
    from persotool.stages.backtest.config import BacktestConfig
    from persotool.stages.calibrate.run import calibrate
    from persotool.stages.ingest.config import IngestConfig
    from persotool.stages.ingest.run import ingest
    from persotool.stages.synth.config import SynthConfig
    from persotool.stages.synth.run import write

    data = HERE / "data" / "backtest"
    movielens = data / "movielens"
    if not (movielens / "manifest.json").is_file():
        import persotool as pt

        pt.ingest(REPO / "datasets" / "movielens-small" / "ratings.csv", out=movielens, preset="movielens", force=True)
    synth, synth_ds = data / "synth", data / "synth-dataset"
    if not (synth_ds / "manifest.json").is_file():
        write(SynthConfig(users=3000, items=1000, days=150, events=300_000, seed=1), synth, force=True)
        ingest(
            IngestConfig.model_validate(load_toml(synth / "schema.toml")),
            [str(synth / "events.csv")],
            synth_ds,
            force=True,
        )
    started = time.perf_counter()
    world = calibrate(movielens, None, data / "world", force=True)
    calibrate_seconds = time.perf_counter() - started
    print(f"calibrate: {calibrate_seconds:.1f}s", file=sys.stderr)
    report = {
        "calibrate_movielens_seconds": round(calibrate_seconds, 2),
        "calibrate_fit": world.fit.to_dict()["means"],
        "target": {"calibrate_seconds": "< 600 on 2 cores"},
        "machine": machine(),
    }
    for name, dataset, cutoff in (("movielens", movielens, 0.8), ("synthetic", synth_ds, 0.7)):
        t = time.perf_counter()
        result = backtest.forecast(dataset, BacktestConfig(cutoff=cutoff))
        print(f"backtest {name}: {time.perf_counter() - t:.1f}s", file=sys.stderr)
        report[f"backtest_{name}"] = _summary(result)
    write_results(RESULTS, report)


if __name__ == "__main__":
    main()
