"""Config models: every config file and preset is validated here, and its resolved form is what the
manifest and MLflow record. TOML files are read with the standard library.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from persotool.errors import ConfigError

TIME_FORMATS = ("auto", "s", "ms", "us", "ns", "iso")


def known_timezone(name: str) -> bool:
    """Whether the time-zone database polars parses with knows `name`."""
    import polars as pl

    try:
        pl.Series([0], dtype=pl.Datetime("us")).dt.replace_time_zone(name)
    except (pl.exceptions.PolarsError, ValueError):
        return False
    return True


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class SourceSpec(Strict):
    """How raw log files are laid out."""

    format: Literal["auto", "csv", "jsonl", "parquet"] = "auto"
    delimiter: str | None = Field(None, description="None sniffs it from the first line")
    header: bool = True
    columns: list[str] | None = Field(None, description="column names for files without a header")
    quote: str | None = Field('"', description="quote character; empty turns quoting off")

    @field_validator("quote")
    @classmethod
    def _quote(cls, value: str | None) -> str | None:
        if not value:
            return None
        if len(value) != 1:
            raise ValueError(f"{value!r} is not one character")
        return value

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = {"\\t": "\t", "tab": "\t"}.get(value, value)
        if value in ("", "\n", "\r") or "\n" in value or '"' in value:
            raise ValueError(f"{value!r} cannot separate fields")
        return value

    @model_validator(mode="after")
    def _columns(self) -> SourceSpec:
        if not self.header and not self.columns:
            raise ValueError("files without a header need `columns`, their names in order")
        if self.columns is not None and len(set(self.columns)) != len(self.columns):
            raise ValueError("`columns` has duplicate names")
        return self


class ColumnMap(Strict):
    """Which source column holds what. Names are used verbatim (any characters)."""

    user: str
    item: str
    time: str
    time_format: str = Field("auto", description="auto, s, ms, us, ns (epoch), iso (ISO-8601), or a strftime pattern")
    timezone: str = Field("UTC", description="zone of timestamps written without one")
    event: str | None = None
    value: str | None = None
    consent: str | None = Field(None, description="column whose false/0/no marks an opted-out user")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if not known_timezone(value):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Paris or UTC")
        return value

    @field_validator("time_format")
    @classmethod
    def _time_format(cls, value: str) -> str:
        if value not in TIME_FORMATS and "%" not in value:
            raise ValueError(
                f"{value!r} is not a time format: use one of {', '.join(TIME_FORMATS)} "
                "or a strftime pattern such as '%d/%m/%Y %H:%M'"
            )
        return value


class AttributeSpec(Strict):
    """A user or item attribute table (e.g. MovieLens movies.csv)."""

    path: Path
    key: str = Field(description="column holding the user or item id")
    features: list[str] = Field(default_factory=list, description="columns turned into features")
    separator: str | None = Field(
        "|", description="splits list-valued cells into one feature per token (' ' for space-separated); '' keeps them"
    )
    delimiter: str | None = None
    header: bool = True
    columns: list[str] | None = None


class IngestConfig(Strict):
    """Everything `persotool ingest` needs besides the source paths and output directory."""

    source: SourceSpec = Field(default_factory=SourceSpec)
    columns: ColumnMap
    events: dict[str, float] | None = Field(None, description="event name -> weight")
    relevance_threshold: float | None = Field(
        None, description="explicit ratings below it get weight 0 (kept, not relevant)"
    )
    session_gap_minutes: float = Field(30.0, gt=0)
    pseudonymize: bool = False
    pseudonym_key_env: str = "PERSOTOOL_PSEUDONYM_KEY"
    keep_raw_rejects: bool = Field(
        False, description="rejects.parquet quotes whole lines (unmapped fields too), not only the mapped fields"
    )
    max_reject_rate: float = Field(0.1, ge=0, le=1, description="fail when more than this share of rows is rejected")
    items: AttributeSpec | None = None
    users: AttributeSpec | None = None

    @model_validator(mode="after")
    def _events(self) -> IngestConfig:
        if self.events is not None:
            if self.columns.event is None:
                raise ValueError("`events` weights need an event column (columns.event)")
            for name, weight in self.events.items():
                if not weight >= 0:
                    raise ValueError(f"event weight for {name!r} must be >= 0")
        if self.relevance_threshold is not None and self.columns.value is None:
            raise ValueError("`relevance_threshold` needs a value column (columns.value)")
        return self


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("no such config file", where=str(path)) from None
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


def load_config(model: type[BaseModel], path: Path | str | None = None, overrides: dict[str, Any] | None = None):
    """Every config the commands and the API read: a TOML file (optional), then `overrides` (dotted
    keys reach into tables), validated by `model`."""
    data = load_toml(Path(path)) if path else {}
    given = {key: key for key in overrides or {}}
    return validate(model, deep_merge(data, nest(overrides or {})), str(path) if path else "options", given)


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
