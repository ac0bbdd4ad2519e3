"""Typed manifests: what each artifact directory's `manifest.json` holds, as pydantic models.

The fields every reader relies on are declared with their types; the rest (timings, configs echoed
for the record, per-kind detail) are kept as extra fields, so a manifest read and written back is
unchanged. Validation happens when an artifact is opened: a manifest whose declared fields have the
wrong type is refused with the field's name."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Ref(BaseModel):
    """Lineage: the directory an artifact was made from, and that directory's digest."""

    model_config = ConfigDict(extra="allow")

    path: str
    digest: str
    name: str | None = None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    kind: str
    schema_version: int
    persotool_version: str
    name: str

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)


class DatasetManifest(Manifest):
    dataset_digest: str
    config: dict[str, Any]
    config_hash: str
    sources: list[Any]
    counts: dict[str, Any]
    time_min: str | None
    time_max: str | None
    files: dict[str, str]
    seconds: float


class SplitManifest(Manifest):
    split_digest: str
    dataset: Ref
    n_users: int
    n_items: int
    config: dict[str, Any]
    config_hash: str
    counts: dict[str, Any]
    leakage: dict[str, Any]
    files: dict[str, str]
    seconds: float


class ModelManifest(Manifest):
    model: str
    params: dict[str, Any]
    model_digest: str
    split: Ref
    dataset: Ref
    fit_seconds: float
    item_features: int = 0
    epochs_kept: int | None = None
    valid_metric: str | None = None
    history: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str]


class EvaluationManifest(Manifest):
    summary: dict[str, Any]
    context: dict[str, Any]


class BenchmarkManifest(Manifest):
    config: dict[str, Any]
    split: Ref
    dataset: Ref
    models: dict[str, Any]
    users_evaluated: int
    users_without_relevant: int


class ExperimentManifest(Manifest):
    config: dict[str, Any]
    config_hash: str
    dataset: Ref
    calibration: dict[str, Any]
    arm_sizes: dict[str, int]
    srm_p: float | None
    user_days: int
    seconds: dict[str, float]


class SyntheticLogManifest(Manifest):
    config: dict[str, Any]
    config_hash: str
    log: str
    rows: int
    truth: dict[str, Any]
    files: dict[str, str]
    seconds: float


class TuningManifest(Manifest):
    study: str
    storage: str
    model: str
    config: dict[str, Any]
    config_hash: str
    space: dict[str, Any]
    split: Ref
    dataset: Ref
    directions: list[str]
    totals: dict[str, int]
    trials: int
    best: dict[str, Any] | None


class WorldManifest(Manifest):
    dataset: Ref
    window: dict[str, Any]
    model: str
    fit: dict[str, Any]
    grid: dict[str, Any]
    engagement: dict[str, Any]
    diagnostics: dict[str, Any]
    users: int
    seconds: float


class BacktestManifest(Manifest):
    dataset: Ref
    window: dict[str, Any]
    config: dict[str, Any]
    config_hash: str
    fit: dict[str, Any]
    quantities: list[dict[str, Any]]
    verdict: dict[str, Any]
    seconds: dict[str, float]


BY_KIND: dict[str, type[Manifest]] = {
    "dataset": DatasetManifest,
    "split": SplitManifest,
    "model": ModelManifest,
    "evaluation": EvaluationManifest,
    "benchmark": BenchmarkManifest,
    "simulation": ExperimentManifest,
    "synthetic-log": SyntheticLogManifest,
    "tuning": TuningManifest,
    "world": WorldManifest,
    "backtest": BacktestManifest,
}


def parse(kind: str, raw: dict[str, Any], where: str) -> Manifest:
    """The typed manifest of one artifact; a field of the wrong type is a data error naming it."""
    from pydantic import ValidationError

    from persotool.errors import DataError

    try:
        return BY_KIND[kind].model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise DataError(f"manifest field {field!r}: {first['msg'].lower()}", where=where) from None
