"""Every stage's options, read off its config: each command-line flag's type, default, bounds,
choices and help text come from the config field it sets, so they are declared once, in the config.

`--help` must stay instant, and importing pydantic and every config costs more than the whole
budget; so the options are kept, as read off the configs, in `cli/options.json`, and the command
line is built from that file. The file is generated, never edited:

    python -m persotool.stages.catalogue     # after changing a config (make flags)

and a test fails when it is stale.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

FILE = Path(__file__).parents[1] / "cli" / "options.json"


def build() -> dict[str, Any]:
    """Read every stage's options off its config (imports every config: for the generator and the
    test, never for `--help`)."""
    from persotool import stages

    catalogue = {}
    for name in stages.STAGES:
        stage = stages.get(name)
        module = stage.module("config")
        config = stage.config_class
        flat = getattr(module, "OPTIONS", None)  # flat option names mapped to nested settings
        if flat is None:
            top = {field: _spec(config, field) for field in config.model_fields}
        else:
            top = {option: _spec(config, path) for option, path in flat.items()}
        extra = getattr(module, "EXTRA_OPTIONS", None)
        if extra is not None:
            for field, info in extra.model_fields.items():
                top[info.alias or field] = _spec(extra, field) | {"path": info.alias or field, "extra": True}
        settings = {path: _spec(config, path) for path in _leaves(config)}
        catalogue[name] = {"options": top, "settings": settings}
    return catalogue


def _spec(model, path: str) -> dict[str, Any]:
    """One setting as an option: how it is given, its type, default, choices and help text."""
    from pydantic_core import PydanticUndefined, to_jsonable_python

    *parents, leaf = path.split(".")
    for part in parents:
        model = _model_of(model.model_fields[part].annotation)
    field = model.model_fields[leaf]
    kind, type_name, choices = _kind(field.annotation)
    if field.default_factory is not None:
        default = field.default_factory()
    else:
        default = None if field.default is PydanticUndefined else field.default
    spec = {
        "path": path,
        "kind": kind,
        "type": type_name,
        "help": field.description or "",
        "default": to_jsonable_python(default),
        "required": field.is_required(),
    }
    if choices:
        spec["choices"] = choices
    bounds = _bounds(field)
    if bounds:
        spec["bounds"] = bounds
    negated = (field.json_schema_extra or {}).get("off") if isinstance(field.json_schema_extra, dict) else None
    if negated:
        spec["off"] = negated
    spec["text"] = _help(spec, negated=kind == "switch" and default is True)
    return spec


def _help(entry: dict[str, Any], negated: bool = False) -> str:
    """A flag's help text: the field's description, its choices, bounds and default (a switch that
    is on by default is offered as --no-..., with the field's `off` text)."""
    text = (entry.get("off") if negated else None) or entry["help"] or entry["path"].replace("_", " ")
    text = text[0].upper() + text[1:]
    if negated:
        return text.rstrip(".") + "." if entry.get("off") else f"Turn off: {text[0].lower() + text[1:]}."
    if "choices" in entry:
        text += f" ({', '.join(str(c) for c in entry['choices'])})"
    bounds = entry.get("bounds", {})
    low = bounds.get("ge", bounds.get("gt"))
    high = bounds.get("le", bounds.get("lt"))
    if low is not None and high is not None and high < 1e9:
        text += f" ({'between' if 'gt' in bounds else 'from'} {low:g} {'and' if 'gt' in bounds else 'to'} {high:g})"
    elif low is not None and (low != 0 or "gt" in bounds):
        text += f" ({'above' if 'gt' in bounds else 'at least'} {low:g})"
    default = entry["default"]
    if entry["kind"] != "switch" and default not in (None, [], {}, ""):
        shown = ",".join(str(v) for v in default) if isinstance(default, list) else default
        text += f"; default {shown}"
    return text.rstrip(".") + "."


def _bounds(field) -> dict[str, float]:
    """A number's limits (ge, gt, le, lt), so the command line refuses a value out of range before
    anything runs, as the config would."""
    found = {}
    for item in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            value = getattr(item, name, None)
            if isinstance(value, int | float):
                found[name] = value
    return found


def _leaves(model, prefix: str = "") -> list[str]:
    """Every setting's dotted path (what `--set` may name)."""
    found = []
    for name, field in model.model_fields.items():
        nested = _model_of(field.annotation)
        if nested is not None and not _is_list(field.annotation):
            found += _leaves(nested, f"{prefix}{name}.")
        else:
            found.append(f"{prefix}{name}")
    return found


def _members(annotation) -> list:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _model_of(annotation):
    from pydantic import BaseModel

    for member in _members(annotation):
        args = typing.get_args(member)
        inner = args[-1] if typing.get_origin(member) in (list, dict) else member
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return None


def _is_list(annotation) -> bool:
    """A list or a table of tables (benchmark models): given in a config file or with --set."""
    return any(typing.get_origin(m) in (list, dict) for m in _members(annotation))


def _kind(annotation) -> tuple[str, str, list | None]:
    """(kind, type, choices): kind is switch (a bool), list (repeatable or comma-separated), map
    (repeatable KEY=VALUE), nested (a table of settings: `--set`), or value."""
    members = _members(annotation)
    if _model_of(annotation) is not None:
        return "nested", "table", None
    if members == [bool]:
        return "switch", "bool", None
    origin = typing.get_origin(members[0])
    if origin is list:
        inner = typing.get_args(members[0])[0]
        return "list", _type_name([inner]), _choices(inner)
    if origin is dict:
        return "map", _type_name([typing.get_args(members[0])[1]]), None
    return "value", _type_name(members), _choices(members[0])


def _choices(annotation) -> list | None:
    return list(typing.get_args(annotation)) if typing.get_origin(annotation) is typing.Literal else None


def _type_name(members: list) -> str:
    if len(members) == 1 and members[0] in (int, float):
        return members[0].__name__
    if len(members) == 1 and members[0] is Path:
        return "path"
    return "str"  # text the config converts (a date or a fraction, a literal choice)


def main() -> int:
    text = json.dumps(build(), indent=1) + "\n"  # in declaration order: --help lists them so
    if "--check" in sys.argv:
        stale = FILE.read_text() != text
        print(f"{FILE} is {'stale: run python -m persotool.stages.catalogue' if stale else 'up to date'}")
        return 1 if stale else 0
    FILE.write_text(text)
    print(f"wrote {FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
