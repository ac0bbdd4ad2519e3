"""Segment effects in `simulate` (`[analysis] segments`): every simulated user carries the segment
of the logged user they were drawn from; each segment's effect is the experiment's own test on
its users, beside the exact true effect in the segment (checked against the potential outcomes),
and against the rest of the users; an arm that harms everyone is caught in every segment; a
segment the dataset cannot give is refused in one line."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from persotool.stages.simulate import segments
from persotool.stages.simulate.analysis import analyse, user_table
from tests.conftest import run_cli
from tests.stages.simulate.conftest import config as _config
from tests.stages.simulate.conftest import simulate as _simulate

BY = ["activity", "tenure", "taste_breadth"]


@pytest.fixture(scope="module")
def harmed(dataset):
    arms = [{"name": "popular", "policy": "popular", "share": 1}, {"name": "adverse", "policy": "adverse", "share": 1}]
    cfg = _config(arms, **{"analysis.segments": BY, "world.population": 4000})
    built, sim = _simulate(dataset, cfg)
    labels = segments.labels(dataset, built, cfg.analysis)
    return cfg, built, sim, labels, analyse(sim, built, cfg, segments=labels)


def test_segments_partition_the_users_and_carry_their_logged_users_segment(harmed) -> None:
    cfg, built, _sim, labels, found = harmed
    frame = found.segments
    overall = found.results.filter(pl.col("metric") == "engagements").row(0, named=True)
    for by in BY:
        assert len(labels[by]) == built.n_users
        rows = frame.filter((pl.col("segment_by") == by) & (pl.col("metric") == "engagements"))
        skipped = [x for x in found.segments_skipped if x["segment_by"] == by]
        assert rows.height + len(skipped) == cfg.analysis.segment_bins  # three quantile bins, tested or listed
        assert all(min(x["users"].values()) < cfg.analysis.min_segment_users for x in skipped)
        untested = sum(sum(x["users"].values()) for x in skipped)
        assert rows["users"].sum() + untested == overall["n_treatment"] + overall["n_control"]
    # clones of one logged user share its segment
    for by in BY:
        for source in np.unique(built.source_user)[:50]:
            assert len(set(labels[by][built.source_user == source])) == 1


def test_true_segment_effects_are_the_potential_outcomes(harmed) -> None:
    cfg, _built, sim, labels, found = harmed
    treat, ctrl = user_table(sim, "adverse", cfg), user_table(sim, "popular", cfg)
    enrolled = (treat["first_exposure"] >= 0) & (ctrl["first_exposure"] >= 0)  # triggered: the same in both arms
    for row in found.segments.filter(pl.col("metric") == "engagements").iter_rows(named=True):
        inside = enrolled & (labels[row["segment_by"]] == row["segment"])
        expected = treat["engagements"][inside].mean() - ctrl["engagements"][inside].mean()
        assert row["true_effect"] == pytest.approx(expected, rel=1e-12)
        rest = enrolled & (labels[row["segment_by"]] != row["segment"])
        assert row["rest_true_effect"] == pytest.approx(
            treat["engagements"][rest].mean() - ctrl["engagements"][rest].mean(), rel=1e-12
        )


def test_an_arm_that_harms_everyone_is_caught_in_every_segment(harmed) -> None:
    *_, found = harmed
    rows = found.segments.filter(pl.col("metric") == "engagements")
    assert rows.height >= 7 and (rows["effect"] < 0).all() and rows["significant"].all()
    assert rows["covers_truth"].mean() >= 0.7  # 95% intervals
    assert found.segments["p_adjusted"].is_not_nan().all()


def test_an_unknown_segment_is_refused_in_one_line(dataset, tmp_path) -> None:
    settings = ("--set", 'analysis.segments=["age"]', "--set", "world.population=500")
    done = run_cli("simulate", dataset, *settings, "-o", tmp_path / "o", "--no-track")
    assert done.exit_code == 3, done.stderr  # a config error
    assert "cannot segment by 'age'; use activity, tenure, taste_breadth" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()


def test_explicit_edges_cut_a_numeric_segment(harmed, dataset) -> None:
    cfg, built, *_ = harmed
    spec = cfg.analysis.model_copy(update={"segments": ["activity"], "segment_edges": {"activity": [50, 200]}})
    labels = segments.labels(dataset, built, spec)["activity"]
    assert set(labels.tolist()) == {"<50", "50 to <200", "200+"}
    logged = pl.read_parquet(dataset / "interactions.parquet").group_by("user_idx").len()
    counts = dict(zip(logged["user_idx"].to_list(), logged["len"].to_list(), strict=True))
    for user in range(0, built.n_users, 97):  # each simulated user's label is their logged user's activity's bin
        n = counts[int(built.source_user[user])]
        assert labels[user] == ("<50" if n < 50 else "50 to <200" if n < 200 else "200+")
