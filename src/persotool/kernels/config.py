"""What every stage's config builds on: strict pydantic models, TOML files read with the standard
library, dotted overrides, and one clear line for the first invalid setting. The resolved config is
what the manifest and MLflow record. Imports only pydantic and the standard library, so building
the command line never loads polars or numpy."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from persotool.errors import ConfigError


class Strict(BaseModel):
    """A config model: unknown settings are errors, every field documents itself."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    @classmethod
    def resolve(cls, config: Any = None, options: dict[str, Any] | None = None, *, source: Any = None):
        """This config from a config object, a dict, a TOML file or None (the defaults), with
        `options` over it: its fields as keywords, dotted keys reaching into tables, None meaning
        "the default". `source` is the stage's input (a stage's own `resolve` may use it)."""
        given = {key: value for key, value in (options or {}).items() if value is not None}
        if isinstance(config, cls):
            if not given:
                return config
            config = config.model_dump(mode="json", exclude_unset=True)
        return load_config(cls, config, given)


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("no such config file", where=str(path)) from None
    except IsADirectoryError:
        raise ConfigError(
            "is a directory, not a TOML config file (a stage's output goes in `out`, its third argument)",
            where=str(path),
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"is not valid TOML ({exc})", where=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text", where=str(path)) from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate(model: type[BaseModel], data: dict[str, Any], where: str, given: dict[str, str] | None = None) -> Any:
    """Validate `data` against `model`, turning the first pydantic error into one clear line.
    `given` maps setting paths (columns.time_format) to the option that set them (time_format):
    an error in one of those names that option, in backticks, instead of the file."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"]) or "config"
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            msg = "is required"
        elif first["type"] == "extra_forbidden":
            msg = "is not a known setting"
        if given and loc in given:
            raise ConfigError(f"`{given[loc]}`: {msg}") from None
        if not first["loc"]:  # a rule across settings: its message names them
            raise ConfigError(msg, where=None if where == "options" else where) from None
        raise ConfigError(f"{loc}: {msg}", where=where) from None


def nest(overrides: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys (`world.population`) as nested tables, ready to merge over a config file."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part} is a value, not a table of settings")
        node[leaf] = value
    return nested


def load_config(model: type[BaseModel], path: Any = None, overrides: dict[str, Any] | None = None):
    """Every config the commands and the API read: a TOML file or a dict (optional), then
    `overrides` (dotted keys reach into tables), validated by `model`."""
    if isinstance(path, dict):
        data, where = path, "config"
    else:
        data, where = (load_toml(Path(path)) if path else {}), (str(path) if path else "options")
    given = {key: key for key in overrides or {}}
    return validate(model, deep_merge(data, nest(overrides or {})), where, given)


def model_config(
    config: Path | str | None = None, model: str | None = None, params: dict[str, Any] | None = None, *, label=None
) -> tuple[str, dict[str, Any]]:
    """(model name, hyperparameters) from a model config file (`model = NAME` and `[params]`),
    overridden by `model` and `params`. `label` names the benchmark entry the config belongs to."""
    data = load_toml(Path(config)) if config else {}
    unknown = set(data) - {"model", "params"}
    if unknown:
        raise ConfigError(
            f"{sorted(unknown)[0]}: is not a known setting (use model = ... and [params])", where=str(config)
        )
    name = model or data.get("model")
    if not name:
        if label is not None:
            raise ConfigError(f"models.{label}: the config file names no model", where=str(config))
        raise ConfigError("say which model to train: a model name or a config file with model = NAME")
    return name, {**data.get("params", {}), **(params or {})}
