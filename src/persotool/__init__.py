"""persotool: offline personalization experiments.

The whole workflow as one flat API, loaded lazily so `import persotool` stays instant:

    import persotool as pt
    ds = pt.ingest("datasets/movielens-small/ratings.csv", "build/ml", preset="movielens")
    sp = pt.split(ds, "build/split", strategy="leave-last", leave_last=10, valid=True)
    model = pt.train(sp, "ease", "build/ease", params={"l2": 300})
    print(pt.evaluate(model, k=[5, 10]).summary["ndcg@10"])
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

# implicit (ALS/BPR) runs badly with an OpenBLAS thread pool; this must happen before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# name -> module that defines it; imported on first use (PEP 562)
_EXPORTS = {
    "ingest": "persotool.workflow",
    "ingest_config": "persotool.workflow",
    "split": "persotool.workflow",
    "train": "persotool.workflow",
    "evaluate": "persotool.workflow",
    "benchmark": "persotool.workflow",
    "simulate": "persotool.workflow",
    "synth": "persotool.workflow",
    "tracker": "persotool.workflow",
    "tune": "persotool.workflow",
    "calibrate": "persotool.workflow",
    "backtest": "persotool.workflow",
    "World": "persotool.results",
    "Backtest": "persotool.results",
    "BacktestConfig": "persotool.stages.backtest.run",
    "Tuning": "persotool.results",
    "TuneConfig": "persotool.stages.tune.study",
    "Dataset": "persotool.results",
    "Split": "persotool.results",
    "TrainedModel": "persotool.results",
    "Evaluation": "persotool.results",
    "Benchmark": "persotool.results",
    "Experiment": "persotool.results",
    "SyntheticLog": "persotool.results",
    "IngestConfig": "persotool.kernels.config",
    "SplitConfig": "persotool.stages.split.run",
    "BenchmarkConfig": "persotool.stages.benchmark.run",
    "SimulationConfig": "persotool.kernels.simulation.spec",
    "SynthConfig": "persotool.stages.synth.run",
    "Tracking": "persotool.tracking",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'persotool' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_EXPORTS[name])
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
