"""The benchmark stage's config (a TOML file; `benchmark` is the shipped one): the contenders, the baseline they are
tested against, the metrics and the test's family-wise error rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from persotool.errors import ConfigError
from persotool.kernels.config import Strict
from persotool.kernels.config import load_config as load


class ModelEntry(Strict):
    """One contender: a registry model name with parameters, or a model config file
    (a path relative to the benchmark config, or a shipped model config by name) with optional overrides."""

    model: str | None = None
    config: Path | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> ModelEntry:
        if self.model is None and self.config is None:
            raise ValueError("needs `model = NAME` or `config = PATH`")
        return self


class BenchmarkConfig(Strict):
    """A benchmark: the contenders, the baseline, the metrics and the tests' error rate."""

    name: str = Field("benchmark", description="the benchmark's name (its MLflow run)")
    baseline: str = Field(description="the entry every other model is tested against")
    k: list[int] = Field(default_factory=lambda: [10], description="cut-offs")
    metrics: list[str] = Field(
        default_factory=lambda: ["precision", "recall", "ndcg", "map", "mrr", "hit_rate", "auc"],
        description="metric names, @k added from k",
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="family-wise error rate of the Holm-corrected tests")
    on: Literal["test", "valid"] = Field("test", description="the split's part the models are measured on")
    valid_k: int = Field(10, ge=1, description="cut-off of the validation NDCG used for early stopping")
    use_features: bool = Field(True, description="give the models the dataset's user and item features")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="root seed")
    models: dict[str, ModelEntry] = Field(description="the contenders, by label: [models.LABEL] tables")

    @field_validator("k")
    @classmethod
    def _k(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError("cut-offs must be positive integers")
        return sorted(set(value))

    @model_validator(mode="after")
    def _baseline(self) -> BenchmarkConfig:
        if len(self.models) < 2:
            raise ValueError("a benchmark needs at least two models")
        if self.baseline not in self.models:
            raise ValueError(f"baseline {self.baseline!r} is not one of the models ({', '.join(self.models)})")
        return self

    @classmethod
    def resolve(cls, config: Any = None, options: dict[str, Any] | None = None, *, source: Any = None):
        """A BenchmarkConfig or a TOML file (model config paths relative to it), its fields from
        `options`, plus `add` (label -> model config file, e.g. a study's best.toml) and `only`
        (a subset of its models; the baseline is kept)."""
        options = dict(options or {})
        add, only = options.pop("add", None), options.pop("only", None)
        given = {key: value for key, value in options.items() if value is not None}
        if isinstance(config, cls):
            cfg = config.model_copy(update=given) if given else config
        else:
            cfg = load_config(config if config is not None else "benchmark", given)
        if add:
            cfg = cfg.adding(add)
        if only:
            cfg = cfg.only([*only, *(add or {})])
        return cfg

    def metric_names(self) -> list[str]:
        names = []
        for metric in self.metrics:
            names += [metric] if metric == "auc" or "@" in metric else [f"{metric}@{k}" for k in self.k]
        return names

    def adding(self, configs: dict[str, Path | str]) -> BenchmarkConfig:
        """The same benchmark with more contenders, each a model config file (e.g. a study's
        best.toml), under a new label."""
        taken = [label for label in configs if label in self.models]
        if taken:
            raise ConfigError(f"`add`: {taken[0]!r} is already a model of this benchmark")
        for label, path in configs.items():
            if not Path(path).is_file():
                raise ConfigError(f"`add`: no model config file for {label!r}", where=str(path))
        extra = {label: ModelEntry(config=Path(path).resolve()) for label, path in configs.items()}
        return self.model_copy(update={"models": {**self.models, **extra}})

    def only(self, labels: list[str]) -> BenchmarkConfig:
        """The same benchmark over a subset of its models (the baseline is always kept)."""
        unknown = [label for label in labels if label not in self.models]
        if unknown:
            raise ConfigError(f"`only`: {unknown[0]!r} is not a model of this benchmark ({', '.join(self.models)})")
        kept = {k: v for k, v in self.models.items() if k in labels or k == self.baseline}
        if len(kept) < 2:
            raise ConfigError("`only`: a benchmark needs at least one model besides the baseline")
        return self.model_copy(update={"models": kept})


def load_config(path: Path | str, overrides: dict[str, Any] | None = None) -> BenchmarkConfig:
    """A benchmark config file (or the name of a shipped one) with `overrides`; model config paths
    in the file are relative to it."""
    return load(BenchmarkConfig, path, overrides)


class Contenders(Strict):
    """Options of `pt.benchmark` that change its list of models."""

    add: dict[str, Path] | None = Field(
        None, description="more contenders: LABEL=model config file (e.g. a tuning's best.toml)"
    )
    only: list[str] | None = Field(None, description="benchmark only these of the config's models (and the baseline)")


EXTRA_OPTIONS = Contenders
