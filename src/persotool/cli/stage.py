"""One adapter from a stage's config to its command: every flag is made from the config field it
sets (type, default, bounds, choices, help text; see `persotool.stages.catalogue`), so a command file says only what is
its own: its input argument, examples, and the few flags whose names differ from their field's.

Every stage command also takes `--config FILE` (a TOML file of the config), `--set KEY=VALUE`
(any setting, dotted keys reaching into tables), `-o/--out`, `--force`, `--json`, `--no-track`,
`--experiment`, and the quality gates `--min NAME=FLOOR` / `--max NAME=CEILING` (exit 1 when not
met, after the output is complete)."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from persotool.cli.options import Command, key_values, number, show, toml_value
from persotool.errors import ConfigError

TYPES = {"int": int, "float": float, "str": str, "path": Path}
CATALOGUE = Path(__file__).with_name("options.json")  # generated from the configs: persotool.stages.catalogue


@functools.cache
def catalogue() -> dict[str, Any]:
    """Every stage's options as its config declares them (see `catalogue`)."""
    import json

    return json.loads(CATALOGUE.read_text())


@dataclass
class Source:
    """A stage command's input argument."""

    help: str
    many: bool = False  # several paths (ingest's sources)
    optional: bool = False  # evaluate: a model, or --recommendations/--truth instead


@dataclass
class Spec:
    """What a command file declares about its command; everything else comes from the config."""

    name: str  # the stage
    summary: str  # --help's text
    examples: str
    source: Source | None = None
    flags: dict[str, str] = field(default_factory=dict)  # option -> flag, where they differ (--churn)
    shortcuts: dict[str, str] = field(default_factory=dict)  # flag -> nested setting (--worlds)
    set_prefix: str = ""  # where --set keys land (train: params.)
    set_example: str = "KEY=VALUE, e.g. --set seed=1"
    config_default: str | None = None  # a config file used when --config is not given
    config_help: str = "TOML file of this command's settings (flags override it)."
    out_required: bool = True
    after: str | None = None  # printed after the result, e.g. where the files are
    skip: tuple[str, ...] = ()  # options not offered on the command line
    progress: str | None = None  # a line printed for each progress call (the stage's arguments in {})


def _flag(option: str, spec: Spec) -> str:
    return spec.flags.get(option, "--" + option.replace("_", "-"))


def _option(param: str, flag: str, entry: dict[str, Any]) -> inspect.Parameter:
    """One config setting as a typer option: None when not given (the config's default holds)."""
    kind = entry["kind"]
    if kind == "switch":
        negated = entry["default"] is True
        name = flag if not negated or flag.startswith("--no-") else "--no-" + flag.removeprefix("--")
        option = typer.Option(None, name, metavar="", help=entry["text"])
        annotation: Any = bool | None
    elif kind in ("list", "map"):
        metavar = "KEY=VALUE" if kind == "map" else f"{entry['type'].upper()}[,...]"
        suffix = " Repeatable." if kind == "map" else " Comma-separated or repeated."
        option = typer.Option(None, flag, metavar=metavar, help=entry["text"] + suffix)
        annotation = list[str] | None
    else:
        annotation = TYPES[entry["type"]] | None
        # a value out of its bounds is the config's to refuse (exit 3, as from Python)
        option = typer.Option(None, flag, help=entry["text"], metavar=entry["type"].upper())
    return inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def _value(entry: dict[str, Any], given: Any, flag: str) -> Any:
    """A given option as the config takes it."""
    kind = entry["kind"]
    if kind == "switch":
        return (not entry["default"]) if given else None
    if kind == "list":
        parts = [part.strip() for item in given for part in item.split(",") if part.strip()]
        if entry["type"] in ("int", "float"):
            kind_of = int if entry["type"] == "int" else float
            try:
                return [kind_of(part) for part in parts]
            except ValueError:
                what, example = ("integers", "5,10,20") if kind_of is int else ("numbers", "0.1,0.5")
                raise ConfigError(
                    f"{flag} {','.join(given)!r}: expected comma-separated {what} such as {example}"
                ) from None
        return parts
    if kind == "map":
        if entry["type"] in ("int", "float"):
            return key_values(given, flag, "NAME=NUMBER, e.g. purchase=5", number)
        return key_values(given, flag, "NAME=VALUE", str if entry["type"] in ("str", "path") else toml_value)
    return given


COMMON = [
    ("config", "--config", Path | None, "config_help"),
    ("sets", "--set", list[str] | None, "Any setting as KEY=VALUE (dotted keys reach into tables). Repeatable."),
    (
        "floors",
        "--min",
        list[str] | None,
        "Quality gate NAME=FLOOR: exit 1 when the result's NAME is below. Repeatable.",
    ),
    ("ceilings", "--max", list[str] | None, "Quality gate NAME=CEILING: exit 1 when above. Repeatable."),
    ("force", "--force", bool, "Replace the output directory if persotool wrote it."),
    ("as_json", "--json", bool, "Print the result as JSON on stdout."),
    ("no_track", "--no-track", bool, "Do not record an MLflow run."),
    (
        "experiment",
        "--experiment",
        str | None,
        "MLflow experiment name (default: $MLFLOW_EXPERIMENT_NAME or 'persotool').",
    ),
]


Entries = dict[str, tuple[str, dict[str, Any], str]]  # param -> (flag, catalogue entry, keyword it sets)


def signature(spec: Spec, entries: Entries) -> list[inspect.Parameter]:
    """The command's parameters: input, output, the stage's options, then the common ones."""
    params = []
    if spec.source is not None:
        kind = list[str] if spec.source.many else Path
        annotation = kind | None if spec.source.optional else kind
        default = typer.Argument(None if spec.source.optional else ..., help=spec.source.help, show_default=False)
        params.append(
            inspect.Parameter("source", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)
        )
    out_help = "Output directory (created atomically)." if spec.out_required else "Write the output directory here too."
    out = typer.Option(... if spec.out_required else None, "--out", "-o", help=out_help, show_default=False)
    params.append(
        inspect.Parameter(
            "out", inspect.Parameter.KEYWORD_ONLY, default=out, annotation=Path if spec.out_required else Path | None
        )
    )
    for param, (flag, entry, _) in entries.items():
        params.append(_option(param, flag, entry))
    for name, flag, annotation, text in COMMON:
        text = getattr(spec, text) if text == "config_help" else text
        if name == "config" and spec.config_default:
            text += f" Default: {spec.config_default}."
        if annotation is bool:
            option = typer.Option(False, flag, metavar="", help=text)
        else:
            option = typer.Option(None, flag, help=text, metavar="PATH" if name == "config" else None)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return params


def entries_of(spec: Spec) -> Entries:
    """Every stage option the command offers: its flag, its catalogue entry, and the keyword of the
    stage's call it sets (the option's own name, or a shortcut's dotted setting)."""
    stage = catalogue()[spec.name]
    entries = {}
    for option, entry in stage["options"].items():
        if entry["kind"] == "nested" or option in spec.skip:
            continue
        entries[f"opt_{option}"] = (_flag(option, spec), entry, option)
    for flag, path in spec.shortcuts.items():
        entries[f"set_{path.replace('.', '__')}"] = (flag, stage["settings"][path], path)
    return entries


def register(
    app: typer.Typer, spec: Spec, *, parent: typer.Typer | None = None, command_name: str | None = None
) -> None:
    """Add the stage's command to `app` (or to the group `parent`)."""
    entries = entries_of(spec)

    def command(**kwargs) -> None:
        execute(spec, entries, kwargs)

    params = signature(spec, entries)
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = spec.summary
    (parent or app).command(command_name or spec.name, epilog=spec.examples, cls=Command)(command)


def execute(spec: Spec, entries: Entries, given: dict[str, Any]) -> None:
    """What every stage command does: options to config keywords, gates checked for typos before any
    work, the workflow call, the result shown, then the gates."""
    from persotool import stages, workflow
    from persotool.errors import UsageError

    options: dict[str, Any] = {}
    for param, (flag, entry, keyword) in entries.items():
        value = None if given[param] is None else _value(entry, given[param], flag)
        if value is not None:
            options[keyword] = value
    sets = key_values(given["sets"], "--set", f"{spec.set_example}")
    options |= {spec.set_prefix + key: value for key, value in sets.items()}
    floors = key_values(given["floors"], "--min", "METRIC=FLOOR, e.g. ndcg@10=0.05", number, UsageError)
    ceilings = key_values(given["ceilings"], "--max", "METRIC=CEILING, e.g. misfits=0", number, UsageError)
    config = given["config"] or (Path(spec.config_default) if spec.config_default else None)
    source = given.get("source")
    if spec.source is not None and spec.source.many and source is not None:
        source = [str(s) for s in source]
    stage = stages.get(spec.name)
    if floors or ceilings:
        _check_gate_names(stage, workflow.configure(spec.name, config, source, **options), {**floors, **ceilings})
    if spec.progress and not given["as_json"]:
        options["progress"] = _progress(spec.progress)
    tracking = workflow.tracker(given["experiment"], enabled=not given["no_track"])
    result = workflow.run(spec.name, source, config, given["out"], force=given["force"], track=tracking, **options)
    show(result, given["as_json"], after=spec.after.format(out=given["out"]) if spec.after else None)
    if floors or ceilings:
        result.require(floors, ceilings=ceilings)


def _progress(line: str):
    from persotool.cli.options import console

    c = console()

    def hear(*args) -> None:
        c.print(f"[dim]{line.format(*args)}[/dim]")

    return hear


def _check_gate_names(stage, cfg, gates: dict[str, float]) -> None:
    """A gate on a figure this run will not measure is a typo (exit 2), found before any work."""
    from persotool.errors import UsageError

    known = getattr(stage.result_class, "gate_names", None)
    names = known(cfg) if known is not None else None
    if names is None:
        return
    for name in gates:
        if name not in names:
            raise UsageError(f"gate {name!r}: this {stage.name} computes no {name!r}; it computes {', '.join(names)}")
