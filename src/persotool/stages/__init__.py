"""The stages of the workflow. Each is a package that owns everything about it:

    config.py   its pydantic config (imports only pydantic and the standard library)
    run.py      `run(source, config, out, *, force)`: the work, writing one output directory
    result.py   its manifest model and result class (the artifact view over that directory)
    record.py   `run_spec(result)`: what its MLflow run records (plain data; no mlflow here)

and declares itself in its `__init__.py` with a `Stage`. Adding a stage is one folder, one CLI
file (`cli/<name>.py`) and one line in `STAGES` below: the Python API (`pt.<name>`), the output
guard, the manifest loader, `persotool track` and the MLflow recorder find it here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cache
from typing import Any

STAGES = (
    "ingest",
    "synth",
    "split",
    "train",
    "evaluate",
    "benchmark",
    "tune",
    "calibrate",
    "backtest",
    "simulate",
    "recommend",
    "ope",
    "explain",
)


@dataclass(frozen=True)
class Stage:
    """What the generic machinery needs to know of a stage; classes are named, loaded on use."""

    name: str  # the verb: pt.<name>, `persotool <name>`
    kind: str  # the kind its manifest.json declares
    config: str  # the config class in <stage>.config
    result: str  # the result class in <stage>.result
    source: str | None = None  # what its first argument is (None: it takes no input artifact)
    runtime: tuple[str, ...] = ()  # keyword arguments of `run` that are not config (callbacks)
    exports: tuple[str, ...] = field(default=())  # more names pt exposes from <stage>.result
    out_optional: bool = False  # without `out` its result lives in a temporary directory (evaluate, explain)

    def module(self, part: str):
        return importlib.import_module(f"persotool.stages.{self.name}.{part}")

    @property
    def config_class(self) -> Any:
        return getattr(self.module("config"), self.config)

    @property
    def result_class(self) -> Any:
        return getattr(self.module("result"), self.result)

    def run(self, *args, **kwargs):
        return self.module("run").run(*args, **kwargs)

    def run_spec(self, result):
        return self.module("record").run_spec(result)


@cache
def get(name: str) -> Stage:
    if name not in STAGES:
        raise KeyError(name)
    return importlib.import_module(f"persotool.stages.{name}").STAGE


def by_kind(kind: str) -> Stage | None:
    """The stage whose outputs are of this kind."""
    return next((get(name) for name in STAGES if get(name).kind == kind), None)


def describe(name: str) -> str:
    """The first line of the stage's docstring: what it does."""
    doc = importlib.import_module(f"persotool.stages.{name}").__doc__ or name
    return " ".join(doc.split("\n\n")[0].split())


def exports() -> dict[str, str]:
    """Every class the flat API exposes, by name -> the module that defines it."""
    names: dict[str, str] = {}
    for name in STAGES:
        stage = get(name)
        names[stage.config] = f"persotool.stages.{name}.config"
        for exported in (stage.result, *stage.exports):
            names[exported] = f"persotool.stages.{name}.result"
    return names
