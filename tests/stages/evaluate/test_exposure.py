"""Exposure fairness in `evaluate`: each item group's share of the top-k exposure against its share
of the catalogue, by hand on a tiny case and through the command (popularity tiers by default),
with bootstrap intervals over users and the Gini of exposure within each group."""

from __future__ import annotations

import json

import numpy as np
import pytest

from persotool.kernels.metrics.exposure import exposure_table, popularity_tiers
from tests.conftest import run_cli
from tests.stages.evaluate.test_segments import model  # noqa: F401  (the module's fixture)


def test_exposure_by_hand() -> None:
    # 4 items in two groups (0, 1 | 2, 3); two users' top-2 lists: [0, 2] and [0, 1]
    recs = np.array([[0, 2, 3], [0, 1, -1]])
    rows = exposure_table(recs, np.array([0, 0, 1, 1]), ["a", "b"], k=2, resamples=200)
    a, b = rows
    assert a["catalogue_share"] == b["catalogue_share"] == 0.5
    assert a["exposure_share"] == pytest.approx(3 / 4) and b["exposure_share"] == pytest.approx(1 / 4)
    assert a["ratio"] == pytest.approx(1.5) and b["ratio"] == pytest.approx(0.5)
    # within a: item 0 shown twice, item 1 once: Gini of (1, 2) = (2*1-3)*1 + (2*2-3)*2 = 1 over 2 * 3
    assert a["gini_within"] == pytest.approx(1 / 6) and b["gini_within"] == pytest.approx(0.5)
    assert a["ci_low"] <= a["exposure_share"] <= a["ci_high"]


def test_popularity_tiers_are_quartiles_of_the_catalogue() -> None:
    tiers, names = popularity_tiers(np.array([5, 0, 9, 1, 7, 3, 2, 8]))
    assert tiers.tolist() == [2, 0, 3, 0, 2, 1, 1, 3] and len(names) == 4


def test_the_command_reports_exposure_by_popularity_tier(model) -> None:  # noqa: F811
    done = run_cli("evaluate", model, "--k", "10", "--json", "--no-track")
    assert done.exit_code == 0, done.stderr
    exposure = json.loads(done.stdout)["exposure"]
    assert exposure["by"] == "popularity" and exposure["k"] == 10
    groups = exposure["groups"]
    assert groups[0]["group"] == "popularity Q1 least"
    assert sum(g["exposure_share"] for g in groups) == pytest.approx(1)
    assert sum(g["catalogue_share"] for g in groups) == pytest.approx(1)
    assert max(g["items"] for g in groups) - min(g["items"] for g in groups) <= 1  # quarters of the catalogue
    for g in groups:
        assert g["ratio"] == pytest.approx(g["exposure_share"] / g["catalogue_share"])
    assert groups[-1]["ratio"] > groups[0]["ratio"]  # EASE, like most models, favours the popular quarter
    table = run_cli("evaluate", model, "--k", "10", "--no-track")
    assert "Exposure by popularity (top 10)" in table.stdout
