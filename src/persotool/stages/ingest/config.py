"""The ingest stage's config: how raw log files are laid out, which column holds what, how events
are weighted, privacy, and attribute tables. `OPTIONS` maps the flat keyword options of `pt.ingest`
(and the command's flags of the same names) to the setting each one sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from persotool.errors import ConfigError
from persotool.kernels.config import Strict, deep_merge, load_toml, locate, relative_to_file, validate

MAX_EVENT_WEIGHT = 1e6
TIME_FORMATS = ("auto", "s", "ms", "us", "ns", "iso")


def known_timezone(name: str) -> bool:
    """Whether the IANA time-zone database knows `name` (the standard library's copy: the config
    must not load polars, whose own copy parses the timestamps later)."""
    import zoneinfo

    if name.upper() == "UTC":
        return True
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, IsADirectoryError):
        return False
    return True


class SourceSpec(Strict):
    """How raw log files are laid out."""

    format: Literal["auto", "csv", "jsonl", "parquet"] = Field(
        "auto", description="file format (auto: from the name, checked against the content)"
    )
    delimiter: str | None = Field(
        None, description="field delimiter, any length (';', '\\t', '::'); sniffed from the first line when not given"
    )
    header: bool = Field(
        True,
        description="the files start with a header line",
        json_schema_extra={"off": "the files have no header line"},
    )
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

    user: str | None = Field(
        None, description="the column holding the user id (an impression log may have none: the OBD layout)"
    )
    item: str = Field(description="the column holding the item id")
    time: str | None = Field(
        None, description="the column holding the event time (none: a log without times, e.g. user,item,count)"
    )
    time_format: str = Field("auto", description="auto, s, ms, us, ns (epoch), iso (ISO-8601), or a strftime pattern")
    timezone: str = Field("UTC", description="zone of timestamps written without one")
    event: str | None = Field(None, description="the column holding the event type (view, purchase...)")
    value: str | None = Field(None, description="the column holding a value (a rating)")
    consent: str | None = Field(None, description="column whose false/0/no marks an opted-out user")
    reward: str | None = Field(
        None,
        description="an impression log: the column holding each shown item's reward (a click, or a number); "
        "every row is an impression, kept in log order, duplicates included",
    )
    position: str | None = Field(None, description="impression logs: the column holding the slot the item was shown in")
    propensity: str | None = Field(
        None, description="impression logs: the logging policy's probability of that item at that position"
    )
    slate: str | None = Field(
        None, description="impression logs: the column identifying the slate an impression was in"
    )
    context: list[str] = Field(
        default_factory=list,
        description="impression logs: context columns kept as features (names or glob patterns, e.g. user_feature_*)",
    )

    @model_validator(mode="after")
    def _layout(self) -> ColumnMap:
        impressions = ("position", "propensity", "slate", "context")
        if self.reward is None:
            given = [name for name in impressions if getattr(self, name)]
            if given:
                raise ValueError(f"`{given[0]}` belongs to an impression log: give its reward column too (reward)")
            if self.user is None:
                raise ValueError("say which column holds the user id (user); only impression logs may have none")
        elif self.event is not None or self.consent is not None:
            raise ValueError("an impression log (reward given) takes no event or consent column")
        return self

    @property
    def impressions(self) -> bool:
        return self.reward is not None

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

    path: Path = Field(description="an attribute file (CSV, TSV, JSON Lines or Parquet), one row per user or item")
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

    @classmethod
    def resolve(cls, config: Any = None, options: dict[str, Any] | None = None, *, source: Any = None):
        return resolve(config, options, source=source)

    source: SourceSpec = Field(default_factory=SourceSpec)
    columns: ColumnMap
    events: dict[str, float] | None = Field(None, description="event name -> weight")
    relevance_threshold: float | None = Field(
        None, description="explicit ratings below it get weight 0 (kept, not relevant)"
    )
    session_gap_minutes: float = Field(30.0, gt=0, description="minutes of inactivity that end a session")
    pseudonymize: bool = Field(
        False, description="replace user ids by a keyed HMAC-SHA256 (key from the environment variable below)"
    )
    pseudonym_key_env: str = Field(
        "PERSOTOOL_PSEUDONYM_KEY", description="the environment variable holding the pseudonym key"
    )
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
                if not 0 <= weight <= MAX_EVENT_WEIGHT:
                    raise ValueError(
                        f"event weight for {name!r} must be from 0 to {MAX_EVENT_WEIGHT:g} (weights are relative; "
                        "models multiply them in 32-bit floats)"
                    )
        if self.relevance_threshold is not None and self.columns.value is None:
            raise ValueError("`relevance_threshold` needs a value column (columns.value)")
        return self


# Flat options (keyword arguments of pt.ingest, flags of `persotool ingest`) -> the setting they set.
OPTIONS = {
    "format": "source.format",
    "delimiter": "source.delimiter",
    "quote": "source.quote",
    "header": "source.header",
    "columns": "source.columns",
    "user_col": "columns.user",
    "item_col": "columns.item",
    "time_col": "columns.time",
    "time_format": "columns.time_format",
    "timezone": "columns.timezone",
    "event_col": "columns.event",
    "value_col": "columns.value",
    "consent_col": "columns.consent",
    "reward_col": "columns.reward",
    "position_col": "columns.position",
    "propensity_col": "columns.propensity",
    "slate_col": "columns.slate",
    "context_cols": "columns.context",
    "event_weights": "events",
    "relevance_threshold": "relevance_threshold",
    "session_gap": "session_gap_minutes",
    "max_reject_rate": "max_reject_rate",
    "pseudonymize": "pseudonymize",
    "key_env": "pseudonym_key_env",
    "keep_raw_rejects": "keep_raw_rejects",
    "items": "items.path",
    "item_key": "items.key",
    "item_features": "items.features",
    "users": "users.path",
    "user_key": "users.key",
    "user_features": "users.features",
}


class SettingsFrom(Strict):
    """Options of `pt.ingest` that are not settings but where settings come from."""

    preset: Literal["movielens"] | None = Field(
        None, description="a built-in layout (movielens: ratings.csv or ratings.dat, movies beside them as items)"
    )
    schema_file: Path | None = Field(
        None,
        alias="schema",
        description="a TOML file of these settings, or a shipped one (movielens, recbole-atomic, retail-events, obd)",
    )
    list_separator: str | None = Field(
        None, description="splits list-valued attribute cells (' ' for space-separated genres; '' keeps them whole)"
    )


EXTRA_OPTIONS = SettingsFrom


def resolve(config: Any = None, options: dict[str, Any] | None = None, *, source: Any = None) -> IngestConfig:
    """The IngestConfig of preset < schema file (or `config`, a file or an IngestConfig) < options,
    validated. `options` are OPTIONS plus `preset`, `schema` and `list_separator` (None: the
    preset's or schema's value); `source` the sources (a preset looks beside the first)."""
    from persotool.stages.ingest.presets import preset as preset_config

    options = dict(options or {})
    if isinstance(config, IngestConfig) and not any(v not in (None, [], False) for v in options.values()):
        return config
    preset, schema = options.pop("preset", None), options.pop("schema", None)
    list_separator = options.pop("list_separator", None)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown ingest option {unknown[0]!r}; options: {', '.join(OPTIONS)}")
    sources = [str(source)] if isinstance(source, str | Path) else [str(s) for s in source or []]
    merged: dict = {}
    where = "options"
    if preset:
        merged, where = preset_config(preset, sources[0] if sources else None), f"preset {preset}"
    if isinstance(config, IngestConfig):
        merged = deep_merge(merged, config.model_dump(mode="json", exclude_unset=True))
    elif config is not None or schema:
        path = locate(schema or config, "schemas")
        data = relative_to_file(IngestConfig, load_toml(path, "schemas"), path.resolve().parent)
        merged, where = deep_merge(merged, data), str(schema or config)
    merged = deep_merge(merged, _given(options))
    _beside_sources(merged, sources)
    for table in ("items", "users"):
        if isinstance(merged.get(table), dict) and "path" in merged[table] and "key" not in merged[table]:
            raise ConfigError(f"`{table}` needs `{table[:-1]}_key` (the {table[:-1]} id column in that file)")
    if list_separator is not None:
        tables = [key for key in ("items", "users") if isinstance(merged.get(key), dict)]
        if not tables:
            raise ConfigError("`list_separator` splits attribute cells: give `items` or `users`, or a schema with them")
        for key in tables:
            merged[key] = {**merged[key], "separator": list_separator}
    if "columns" not in merged:
        raise ConfigError(
            "say which columns hold the user, item and time: user_col, item_col and time_col (time_col may be left "
            "out for a log without times), a schema file, or the movielens preset"
        )
    options_given = {OPTIONS[k]: k for k, v in options.items() if v is not None and v != []}
    return validate(IngestConfig, merged, where, options_given)


def _beside_sources(merged: dict[str, Any], sources: list[str]) -> None:
    """Attribute files a schema names beside the logs: `{sources}` is the first source's folder
    (the source itself when it is a folder) and `{stem}` its name without suffixes, so that one
    shipped schema reads RecBole's `ml-100k/ml-100k.item` beside `ml-100k/ml-100k.inter`."""
    first = Path(sources[0]) if sources else Path(".")
    folder = first if first.is_dir() else first.parent
    stem = first.name.split(".")[0]
    for table in ("items", "users"):
        spec = merged.get(table)
        if isinstance(spec, dict) and isinstance(spec.get("path"), str) and "{" in spec["path"]:
            spec["path"] = spec["path"].format(sources=folder, stem=stem)


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The flat options that were given, as nested settings (False means "not given", except for
    `header`, whose default is True)."""
    given: dict = {}
    for key, value in options.items():
        if value is None or value == [] or (value is False and key != "header"):
            continue
        *parents, leaf = OPTIONS[key].split(".")
        node = given
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = str(value) if isinstance(value, Path) else value
    return given
