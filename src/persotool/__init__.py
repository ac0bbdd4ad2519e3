"""persotool: offline personalization experiments.

The whole workflow as one flat API, loaded lazily so `import persotool` stays instant: one verb per
stage (`pt.ingest`, `pt.split`, `pt.train`, ...), each stage's config and result classes, and
`pt.tracker` for MLflow:

    import persotool as pt
    ds = pt.ingest("datasets/movielens-small/ratings.csv", out="build/ml", preset="movielens")
    sp = pt.split(ds, out="build/split", strategy="leave-last", leave_last=10, valid=True)
    model = pt.train(sp, out="build/ease", model="ease", params={"l2": 300})
    print(pt.evaluate(model, k=[5, 10]).summary["ndcg@10"])
"""

from __future__ import annotations

import os

__version__ = "0.2.0"

# implicit (ALS/BPR) runs badly with an OpenBLAS thread pool; this must happen before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

_SUBPACKAGES = ("cli", "errors", "kernels", "locks", "stages", "tracking", "workflow")
# names that are not a stage's verb, config or result: name -> module that defines it
_MORE = {
    "tracker": "persotool.workflow",
    "ingest_config": "persotool.workflow",
    "open_result": "persotool.workflow",
    "Tracking": "persotool.tracking",
    "QualityGateFailed": "persotool.errors",
}


def _exports() -> dict[str, str]:
    import importlib

    stages = importlib.import_module("persotool.stages")
    return {**dict.fromkeys(stages.STAGES, "persotool.workflow"), **stages.exports(), **_MORE}


def __getattr__(name: str):
    if name == "__all__":
        return sorted(_exports())
    if name.startswith("__") or name in _SUBPACKAGES:  # let `from persotool import stages` import it
        raise AttributeError(name)
    exports = _exports()
    if name not in exports:
        raise AttributeError(f"module 'persotool' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(exports[name])
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(["__version__", *_exports()])
