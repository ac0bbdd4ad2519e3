"""Search spaces (TOML files; shipped by name: `ease`, `lightfm`...): which hyperparameters a study
varies, over what range, and which only exist when another takes some value.

    model = "lightfm"
    [fixed]                 # passed as they are to every trial
    epochs = 30
    [params.components]
    type = "int"            # int, float or categorical
    low = 8
    high = 128
    log = true
    [params.loss]
    type = "categorical"
    choices = ["warp", "bpr"]
    [params.max_sampled]
    type = "int"
    low = 5
    high = 50
    when = { loss = ["warp", "warp-kos"] }   # only suggested for these losses

Parameters are suggested in the order they are written, so `when` may name only parameters above it.
"""

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from persotool.kernels.config import Strict


class Param(Strict):
    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0, description="grid step (int and float; not with log)")
    choices: list[Any] | None = None
    when: dict[str, list[Any]] | None = Field(
        None, description="suggested only when these parameters take these values"
    )

    @model_validator(mode="after")
    def _range(self) -> "Param":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs `choices`")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"an {self.type} parameter needs `low` and `high`")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("`low` and `high` must be finite numbers")
        if not self.low < self.high:
            raise ValueError(f"`low` ({self.low:g}) must be below `high` ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled range needs `low` > 0")
        if self.log and self.step is not None:
            raise ValueError("`step` and `log` do not go together")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("an int parameter needs whole `low` and `high`")
        return self


class SearchSpace(Strict):
    model: str
    fixed: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Param]

    @model_validator(mode="after")
    def _conditions(self) -> "SearchSpace":
        if not self.params:
            raise ValueError("a search space needs at least one parameter under [params]")
        above: list[str] = []
        for name, param in self.params.items():
            for other in param.when or {}:
                if other not in above:
                    raise ValueError(f"params.{name}.when names {other!r}, which is not a parameter above it")
            above.append(name)
        both = sorted(set(self.fixed) & set(self.params))
        if both:
            raise ValueError(f"{both[0]!r} is both fixed and searched")
        return self

    def check(self) -> None:
        """Every parameter is one the model has, and every value the space can give is one the model
        accepts (the fixed ones, both ends of each range, every choice): a space outside the model's
        bounds would make every trial fail."""
        from persotool.errors import ConfigError
        from persotool.kernels.models.registry import MODELS, build

        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; known models: {', '.join(sorted(MODELS))}")
        accepted = set(MODELS[self.model].params_model.model_fields)
        for name in [*self.params, *self.fixed]:
            if name not in accepted:
                raise ConfigError(
                    f"{self.model} has no parameter {name!r}; its parameters: {', '.join(sorted(accepted))}"
                )
        build(self.model, self.fixed)
        for name, p in self.params.items():
            values = p.choices if p.type == "categorical" else [p.low, p.high]
            for value in values:
                value = int(value) if p.type == "int" else value
                try:
                    build(self.model, {**self.fixed, name: value})
                except ConfigError as exc:
                    raise ConfigError(
                        f"params.{name}: {value!r} is outside what {self.model} accepts ({exc.message})"
                    ) from None

    def suggest(self, trial) -> dict[str, Any]:
        """One trial's parameters (an optuna Trial), conditions applied, over the fixed ones."""
        chosen: dict[str, Any] = {}
        for name, p in self.params.items():
            if p.when and any(chosen.get(other) not in values for other, values in p.when.items()):
                continue
            if p.type == "categorical":
                chosen[name] = trial.suggest_categorical(name, p.choices)
            elif p.type == "int":
                chosen[name] = trial.suggest_int(name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
            else:
                chosen[name] = trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
        return {**self.fixed, **chosen}

    def defaults(self) -> dict[str, Any]:
        """The model's default configuration, as the study's first trial: each searched parameter
        at its default (only those the space's ranges and conditions admit)."""
        from persotool.kernels.models.registry import MODELS

        fields = MODELS[self.model].params_model.model_fields
        chosen: dict[str, Any] = {}
        for name, p in self.params.items():
            if p.when and any(chosen.get(other) not in values for other, values in p.when.items()):
                continue
            value = fields[name].default
            if p.type == "categorical" and value not in p.choices:
                continue
            if p.type != "categorical" and (not isinstance(value, int | float) or not p.low <= value <= p.high):
                continue
            chosen[name] = value
        return chosen


def load_space(path: Path | str, model: str | None = None) -> SearchSpace:
    from persotool.errors import ConfigError
    from persotool.kernels.config import load_config

    space = load_config(SearchSpace, path, folder="spaces")
    if model is not None and model != space.model:
        raise ConfigError(f"the space is for {space.model!r}, not {model!r}", where=str(path))
    try:
        space.check()
    except ConfigError as exc:
        raise ConfigError(exc.message, where=exc.where or str(path)) from None
    return space
