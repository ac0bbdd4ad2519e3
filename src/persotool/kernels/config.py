"""What every stage's config builds on: strict pydantic models, TOML files read with the standard
library, dotted overrides, and one clear line for the first invalid setting. The resolved config is
what the manifest and MLflow record. Imports only pydantic and the standard library, so building
the command line never loads polars or numpy."""

from __future__ import annotations

import tomllib
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from persotool.errors import ConfigError


class Strict(BaseModel):
    """A config model: unknown settings are errors, every field documents itself."""

    model_config = ConfigDict(extra="forbid", frozen=False)
    config_folder: ClassVar[str] = ""  # where persotool's shipped configs of this kind are (models, spaces)
    default_config: ClassVar[str | None] = None  # the shipped config used when none is given

    @classmethod
    def resolve(cls, config: Any = None, options: dict[str, Any] | None = None, *, source: Any = None):
        """This config from a config object, a dict, a TOML file or None (the defaults), with
        `options` over it: its fields as keywords, dotted keys reaching into tables, None meaning
        "the default". `source` is the stage's input (a stage's own `resolve` may use it)."""
        given = {key: value for key, value in (options or {}).items() if value is not None}
        config = cls.default_config if config is None else config
        if isinstance(config, cls):
            if not given:
                return config
            config = config.model_dump(mode="json", exclude_unset=True)
        return load_config(cls, config, given, folder=cls.config_folder)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # the configs persotool ships


def locate(path: Path | str, folder: str = "") -> Path:
    """A config file by path, or by the name of one persotool ships (`benchmark`, `--space ease`,
    `--schema movielens`, `--config lightfm` for a model), found in the package from any working
    directory. An old repository path (`configs/spaces/ease.toml`) finds the shipped file too."""
    path = Path(path)
    if path.exists():
        return path
    name = path.name if path.suffix == ".toml" else f"{path.name}.toml"
    shipped = [CONFIGS / folder / name, CONFIGS / name]
    parts = path.parts
    if "configs" in parts:  # configs/spaces/ease.toml, as the repository used to hold it
        shipped.insert(0, CONFIGS.joinpath(*parts[parts.index("configs") + 1 :]))
    if len(parts) == 1 or "configs" in parts:
        for candidate in shipped:
            if candidate.is_file():
                return candidate
    return path


def shipped(folder: str = "") -> list[str]:
    """The names of the configs persotool ships in `folder`."""
    return sorted(p.stem for p in (CONFIGS / folder).glob("*.toml"))


def load_toml(path: Path, folder: str = "") -> dict[str, Any]:
    path = locate(path, folder)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        names = shipped(folder)
        hint = f" (or name one persotool ships: {', '.join(names)})" if names else ""
        raise ConfigError(f"no such config file{hint}", where=str(path)) from None
    except IsADirectoryError:
        raise ConfigError(
            "is a directory, not a TOML config file (a stage's output goes in `out`, its third argument)",
            where=str(path),
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"is not valid TOML ({exc})", where=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text", where=str(path)) from None


def relative_to_file(model: type[BaseModel], data: Any, base: Path) -> Any:
    """Paths written in a config file are relative to that file, wherever the command runs: every
    field typed as a path (in tables and lists of tables too), and every text field marked
    `json_schema_extra={"path": True}` (a world's `source`, unless one of its `keywords`)."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name, field in model.model_fields.items():
        key = field.alias or name
        if out.get(key) is None:
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        members = _members(field.annotation)
        value = out[key]
        if Path in members or extra.get("path"):
            text = value if isinstance(value, str) else ""
            keep = not text or text in extra.get("keywords", ()) or Path(text).is_absolute() or text.startswith("{")
            if not keep:  # "{sources}/..." is the stage's to fill in
                out[key] = str(base / text)
            continue
        for member in members:
            origin, inner = typing.get_origin(member), _model_in(member)
            if inner is None:
                continue
            if origin is list and isinstance(value, list):
                out[key] = [relative_to_file(inner, item, base) for item in value]
            elif origin is dict and isinstance(value, dict):
                out[key] = {k: relative_to_file(inner, v, base) for k, v in value.items()}
            elif origin is None:
                out[key] = relative_to_file(inner, value, base)
    return out


def _members(annotation) -> tuple:
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return typing.get_args(annotation) if union else (annotation,)


def _model_in(annotation) -> type[BaseModel] | None:
    """The config model an annotation holds: itself, or a list's or a table's values."""
    args = typing.get_args(annotation)
    candidate = args[-1] if typing.get_origin(annotation) in (list, dict) and args else annotation
    return candidate if isinstance(candidate, type) and issubclass(candidate, BaseModel) else None


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


def load_config(model: type[BaseModel], path: Any = None, overrides: dict[str, Any] | None = None, folder: str = ""):
    """Every config the commands and the API read: a TOML file or a dict (optional), then
    `overrides` (dotted keys reach into tables), validated by `model`."""
    if isinstance(path, dict):
        data, where = path, "config"
    elif path:
        found = locate(path, folder)
        data, where = relative_to_file(model, load_toml(found, folder), found.resolve().parent), str(path)
    else:
        data, where = {}, "options"
    given = {key: key for key in overrides or {}}
    return validate(model, deep_merge(data, nest(overrides or {})), where, given)


def model_config(
    config: Path | str | None = None, model: str | None = None, params: dict[str, Any] | None = None, *, label=None
) -> tuple[str, dict[str, Any]]:
    """(model name, hyperparameters) from a model config file (`model = NAME` and `[params]`),
    overridden by `model` and `params`. `label` names the benchmark entry the config belongs to."""
    data = load_toml(Path(config), "models") if config else {}
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
