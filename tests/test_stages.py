"""The stage registry: every stage is one folder with its config, run, result and record, found
through one line in `persotool.stages.STAGES`; the flat API, `persotool track` and the recorder
reach it from there."""

import importlib

import pytest

import persotool as pt
from persotool import stages


@pytest.mark.parametrize("name", stages.STAGES)
def test_a_stage_is_one_folder_with_its_four_parts(name: str) -> None:
    stage = stages.get(name)
    for part in ("config", "run", "result", "record"):
        assert importlib.import_module(f"persotool.stages.{name}.{part}"), part
    assert stage.result_class.kind == stage.kind
    assert callable(stage.module("record").run_spec) and callable(stage.module("run").run)
    assert stages.by_kind(stage.kind) is stage
    assert getattr(pt, name).__name__ == name  # the verb
    assert getattr(pt, stage.config) is stage.config_class and getattr(pt, stage.result) is stage.result_class


def test_a_verb_names_its_output_argument_when_called_the_old_way(tmp_path) -> None:
    """pt.split(dataset, "out") (the order before 0.2) says where the output goes instead of failing
    on a missing config file."""
    from persotool.errors import ConfigError

    with pytest.raises(ConfigError, match="the output directory is `out`"):
        pt.split(tmp_path, str(tmp_path / "split"))


def test_the_generic_digest_covers_files_and_config(tmp_path) -> None:
    """Kinds without a recorded digest get one made from their manifest: files, parents, config."""
    small = {"users": 20, "items": 15, "events": 300, "days": 5}
    one = pt.synth(out=tmp_path / "a", seed=1, **small)
    again = pt.synth(out=tmp_path / "b", seed=1, **small)
    other = pt.synth(out=tmp_path / "c", seed=2, **small)
    assert one.digest == again.digest != other.digest
