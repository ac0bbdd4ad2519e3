"""Values no run could use are refused before any work, in one line naming the option: an output
path beside which nothing can be written, a population this machine cannot hold, an event weight
that would overflow 32-bit training, a negative seed."""

from pathlib import Path

import pytest

import persotool as pt
from tests.conftest import MOVIELENS, run_cli


@pytest.mark.parametrize("out", ["/proc/persotool-out", "/sys/persotool-out"])
def test_an_output_where_no_lock_can_be_written_is_an_output_error(tmp_path: Path, out: str) -> None:
    made = run_cli("ingest", MOVIELENS / "ratings.csv", "--preset", "movielens", "-o", out, "--no-track")
    assert made.exit_code == 7 and "cannot write beside the output" in made.stderr, made.stderr
    assert made.stderr.count("\n") == 1


def test_a_population_this_machine_cannot_hold_says_what_it_needs(tmp_path: Path) -> None:
    from persotool.errors import ConfigError
    from persotool.stages.simulate.run import check_memory

    config = pt.SimulationConfig(
        name="big",
        world={"population": 49_000_000},
        arms=[{"name": "a", "policy": "popular", "share": 0.5}, {"name": "b", "policy": "random", "share": 0.5}],
    )
    assert config.memory_bytes(1000) == pytest.approx(1000 * config.memory_bytes(1), rel=1e-6)
    with pytest.raises(ConfigError, match=r"needs about [\d,.]+ GiB .* this machine has .* simulate at most"):
        check_memory(config)
    with pytest.raises(ConfigError, match=r"world\.population.*less than or equal to 50000000"):
        pt.SimulationConfig.resolve(config, {"world.population": 1e10})


def test_an_event_weight_that_would_overflow_training_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("u,i,t,e\na,1,1700000000,view\nb,2,1700000100,buy\n")
    made = run_cli(
        "ingest", log, "--user-col", "u", "--item-col", "i", "--time-col", "t", "--event-col", "e",
        "--event-weight", "view=1", "--event-weight", "buy=1e308", "-o", tmp_path / "ds", "--no-track",
    )  # fmt: skip
    assert made.exit_code == 3 and "event weight for 'buy' must be from 0 to 1e+06" in made.stderr
    assert not (tmp_path / "ds").exists()


def test_calibrate_refuses_a_negative_seed(tmp_path: Path) -> None:
    made = run_cli("calibrate", tmp_path, "--seed", "-1", "-o", tmp_path / "w", "--no-track")
    assert made.exit_code == 3 and "--seed: Input should be greater than or equal to 0" in made.stderr
