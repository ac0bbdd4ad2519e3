"""What one MLflow run records, as plain data: each stage's `record.run_spec(result)` builds one
from its output directory alone (so a command records its output exactly as `persotool track`
does later), and `persotool.tracking`, the only code that imports mlflow, writes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunSpec:
    """Everything one MLflow run records."""

    name: str
    command: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    metric_history: dict[str, list[float]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[tuple[Path, str | None]] = field(default_factory=list)  # (path, artifact dir)
    dataset: dict[str, str] | None = None  # name, digest, source, schema, profile
    children: list[RunSpec] = field(default_factory=list)
    output: Path | None = None  # the finished output directory this run describes, if any
    started_ms: int | None = None  # default: when the command began (the run spans its work)
    ended_ms: int | None = None  # default: when the work ended (recording it is not part of it)
    # A run tree that grows (a study's trials, recorded by many workers): the parent is found by
    # this key, and each child is added once, told apart by its `leaf`.
    tree: str | None = None
    leaf: str | None = None
    scratch: list[Path] = field(default_factory=list)  # temporary files made for the run, removed after
    # a trained model to log as an MLflow model (its directory, its dataset's directory): it shows in
    # the run's Models, can be registered, and `mlflow models serve` answers with its lists
    model: tuple[Path, Path] | None = None


def flatten(config: dict[str, Any], prefix: str = "", limit: int = 6000) -> dict[str, str]:
    """Nested config -> dotted MLflow params (values as text, cut to MLflow's limit)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat |= flatten(value, name + ".", limit)
        else:
            text = "" if value is None else str(value)
            flat[name] = text[:limit]
    return flat


def metric_key(name: str) -> str:
    """MLflow metric names allow no '@': ndcg@10 is recorded as ndcg_at_10."""
    return name.replace("@", "_at_")
