"""Options exist once, in the stage's config: every command's flags are made from its config's
fields (through the generated catalogue), the catalogue matches the configs, and every setting a
user may set has a flag, or `--set` for nested ones."""

import json

import pytest

from persotool import stages
from persotool.cli import app
from persotool.stages import catalogue


def _command(name: str):
    import typer.main

    group = typer.main.get_command(app)
    if name == "synth":
        return group.commands["datasets"].commands["synth"]
    return group.commands[name]


def test_the_catalogue_the_command_line_is_built_from_matches_the_configs() -> None:
    assert json.loads(catalogue.FILE.read_text()) == json.loads(json.dumps(catalogue.build())), (
        "the option catalogue is stale: run `make flags`"
    )


@pytest.mark.parametrize("name", stages.STAGES)
def test_every_setting_has_a_flag_and_every_flag_a_setting(name: str) -> None:
    stage = stages.get(name)
    config = stage.config_class
    module = stage.module("config")
    flat = getattr(module, "OPTIONS", None)
    settable = set(flat) if flat is not None else set(config.model_fields)
    extra = getattr(module, "EXTRA_OPTIONS", None)
    if extra is not None:
        settable |= {info.alias or field for field, info in extra.model_fields.items()}
    entries = catalogue.build()[name]["options"]
    nested = {option for option, entry in entries.items() if entry["kind"] == "nested"}
    command = _command(name)
    offered = {p.name.removeprefix("opt_") for p in command.params if p.name.startswith("opt_")}
    skipped = settable - offered - nested
    # a skipped option must still be reachable: train's params through --set (params.KEY)
    assert skipped <= {"params"}, f"settings of {name} without a flag: {sorted(skipped)}"
    assert offered <= settable, f"flags of {name} that set nothing: {sorted(offered - settable)}"
    assert "sets" in {p.name for p in command.params}, "nested settings need --set"


def test_a_flags_help_and_default_come_from_its_field() -> None:
    """Change a field's description or default and the flag follows: both read the config."""
    from persotool.stages.split.config import SplitConfig

    field = SplitConfig.model_fields["leave_last"]
    option = next(p for p in _command("split").params if p.name == "opt_leave_last")
    assert field.description[1:] in option.help and f"default {field.default}" in option.help
    switch = next(p for p in _command("tune").params if p.name == "opt_prune")
    assert switch.opts == ["--no-prune"] and "never stop a trial early" in switch.help.lower()


def test_dotted_shortcuts_set_nested_settings() -> None:
    """`simulate --worlds 3` is `--set robustness.worlds=3`: same setting, same help."""
    worlds = next(p for p in _command("simulate").params if p.opts == ["--worlds"])
    assert worlds.name == "set_robustness__worlds"
