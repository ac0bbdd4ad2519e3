"""The fitted visit model: its likelihood against a hand computation, parameter recovery on
histories drawn from the model itself and on `datasets synth` logs, closed forms against a Monte
Carlo of the same chain, and the world directory that `simulate` loads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from persotool.kernels.simulation import calibration as fitted
from persotool.kernels.simulation import visit_model as cal


def _frame(days_per_user: list[np.ndarray]) -> pl.DataFrame:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    users = np.concatenate([np.full(len(d), u) for u, d in enumerate(days_per_user)])
    days = np.concatenate(days_per_user)
    return pl.DataFrame({"user_idx": users, "timestamp": [start + timedelta(days=int(d), hours=12) for d in days]})


def _one_node(p: float, theta: float, r: float) -> cal.Grid:
    return cal.Grid(np.array([p]), np.array([theta]), np.array([r]), np.zeros(1))


def test_likelihood_matches_a_hand_computation():
    """Active on day 0 and day 2, silent on days 1 and 3 (cutoff at day 4), at p=0.3, theta=0.1,
    r=0.05. Day 1 silent: active (0.9 x 0.7 = 0.63) or dormant (0.1). Day 2 active: 0.63 x 0.9 x 0.3
    + 0.1 x 0.05 x 0.3 = 0.1716. Day 3 silent from active: 0.9 x 0.7 + 0.1 = 0.73."""
    frame = _frame([np.array([0, 2]), np.array([0, 1, 2, 3])])
    h = cal.histories(frame, datetime(2024, 1, 1, tzinfo=UTC), 4)
    lik = cal.node_likelihood(h, _one_node(0.3, 0.1, 0.05))
    row = h.history[0]
    assert np.exp(lik.log_lik[row, 0]) == pytest.approx(0.1716 * 0.73, rel=1e-9)
    assert lik.active[row, 0] == pytest.approx(0.63 / 0.73, rel=1e-9)
    assert h.x.tolist() == [1, 3]
    # three gaps of one day, no silence: (0.9 x 0.3)^3
    assert np.exp(lik.log_lik[h.history[1], 0]) == pytest.approx(0.27**3, rel=1e-9)


def _chain_histories(params, n_users: int, rng) -> tuple[list[np.ndarray], np.ndarray]:
    """Users drawn from the model itself: first active day 0, followed 60-200 days."""
    a, b, g, d, e, z = params
    p, theta, r = rng.beta(a, b, n_users), rng.beta(g, d, n_users), rng.beta(e, z, n_users)
    length = rng.integers(60, 200, n_users)
    active = np.ones(n_users, dtype=bool)
    days = [[0] for _ in range(n_users)]
    for day in range(1, int(length.max())):
        u = rng.random(n_users)
        active = np.where(active, u >= theta, u < r)
        for user in np.flatnonzero(active & (rng.random(n_users) < p) & (day < length)):
            days[user].append(day)
    return [np.array(x) for x in days], length


def test_fit_recovers_the_parameters_of_histories_drawn_from_the_model():
    rng = np.random.default_rng(3)
    true = (1.2, 2.8, 0.6, 20.0, 0.5, 40.0)
    days, length = _chain_histories(true, 3000, rng)
    # every user's window ends at their own length: shift them so they all end on day 200
    shifted = [d + 200 - n for d, n in zip(days, length, strict=True)]
    frame = _frame(shifted)
    h = cal.histories(frame, datetime(2024, 1, 1, tzinfo=UTC), 200)
    fit = cal.fit(h)
    means = fit.means()
    assert means["visit_chance"] == pytest.approx(1.2 / 4.0, rel=0.08)
    assert means["leaving_chance"] == pytest.approx(0.6 / 20.6, rel=0.25)
    assert means["return_chance"] == pytest.approx(0.5 / 40.5, rel=0.4)
    assert fit.converged
    # the reported uncertainty is honest: the truth lies within 3 standard errors on the log scale
    sd = np.sqrt(np.diag(fit.log_cov))
    assert np.all(np.abs(np.log(fit.vector[:4]) - np.log(true[:4])) < 3 * sd[:4] + 0.05)


def test_closed_forms_agree_with_a_monte_carlo_of_the_chain():
    rng = np.random.default_rng(5)
    days, length = _chain_histories((0.8, 4.0, 0.5, 8.0, 0.3, 60.0), 600, rng)
    frame = _frame([d + 200 - n for d, n in zip(days, length, strict=True)])
    h = cal.histories(frame, datetime(2024, 1, 1, tzinfo=UTC), 200)
    grid = cal.Grid.default()
    lik = cal.node_likelihood(h, grid)
    fit = cal.fit(h, grid, lik)
    horizon, clones = 40, 200
    rows = np.repeat(np.arange(len(h)), clones)
    draws = cal.draw(fit, h, lik, grid, rows, rng)
    active, count, returned = draws.active.copy(), np.zeros(len(rows)), np.zeros(len(rows), dtype=bool)
    for _ in range(horizon):
        u = rng.random(len(rows))
        active = np.where(active, u >= draws.theta, u < draws.r)
        visit = active & (rng.random(len(rows)) < draws.p)
        count += visit
        returned |= visit
    expected = cal.expected_active_days(fit, lik, grid, horizon)[h.history]
    chance = cal.return_probability(fit, lik, grid, horizon)[h.history]
    # jitter within grid cells moves the draws a little from the node values the closed forms use
    assert count.mean() == pytest.approx(expected.mean(), rel=0.06)
    assert returned.mean() == pytest.approx(chance.mean(), abs=0.015)
    per_user = count.reshape(len(h), clones).mean(axis=1)
    assert np.corrcoef(per_user, expected)[0, 1] > 0.97


def test_npmle_reaches_the_nonparametric_optimum_and_beats_the_beta_fit():
    """Two kinds of users no pair of Beta distributions describes: half visit every other day and
    stay for months, half leave for good after their first day. The EM mixing distribution is at
    the nonparametric optimum (Lindsay's condition: no node's gradient exceeds 1), fits at least as
    well as the Beta prior, and forecasts the returns of a continuation of the same chain."""
    rng = np.random.default_rng(11)
    n, horizon = 2000, 30
    stayer = rng.random(n) < 0.5
    p = np.where(stayer, 0.5, 0.3)
    theta = np.where(stayer, 0.005, 0.95)
    r = np.full(n, 1e-5)
    length = rng.integers(60, 200, n)
    active = np.ones(n, dtype=bool)
    days = [[0] for _ in range(n)]
    returned = np.zeros(n, dtype=bool)
    for day in range(1, int(length.max()) + horizon):
        u = rng.random(n)
        active = np.where(active, u >= theta, u < r)
        visit = active & (rng.random(n) < p)
        for user in np.flatnonzero(visit & (day < length)):
            days[user].append(day)
        returned |= visit & (day >= length) & (day < length + horizon)
    frame = _frame([np.array(d) + 200 - m for d, m in zip(days, length, strict=True)])
    h = cal.histories(frame, datetime(2024, 1, 1, tzinfo=UTC), 200)
    grid = cal.Grid.default()
    lik = cal.node_likelihood(h, grid)
    fit = cal.fit(h, grid, lik)
    log_prior, log_lik = cal.npmle(fit, h, lik, grid, iterations=1000, tol=0)
    assert log_lik >= fit.log_likelihood
    counts = np.bincount(h.history).astype(np.float64)
    joint = np.exp(lik.log_lik + log_prior[None])
    gradient = (counts / joint.sum(axis=1)) @ np.exp(lik.log_lik) / counts.sum()
    assert gradient.max() < 1.01
    assert np.exp(log_prior).sum() == pytest.approx(1.0)
    forecast = cal.return_probability(fit, lik, grid, horizon, log_prior)[h.history]
    assert forecast.mean() == pytest.approx(returned.mean(), abs=0.03)


def test_posterior_state_follows_recency():
    """Two users with the same activity (every other day for 100 days), one silent for the last
    day before the cutoff, one for the last 102: the first is likely still active, the second not."""
    recent = np.arange(0, 100, 2)
    frame = _frame([recent + 100, recent] + [np.array([0, 5])] * 40)
    h = cal.histories(frame, datetime(2024, 1, 1, tzinfo=UTC), 200)
    grid = cal.Grid.default()
    lik = cal.node_likelihood(h, grid)
    fit = cal.fit(h, grid, lik)
    post = cal.node_posterior(fit, lik, grid)
    active = (post * lik.active).sum(axis=1)[h.history]
    assert active[0] > 0.7
    assert active[1] < 0.05


def test_window_reads_fractions_and_dates_and_rejects_the_rest():
    frame = _frame([np.array([0, 99])])
    assert fitted.window(frame, 0.5).cutoff_day == 50  # 49.5 days after noon of day 0
    assert fitted.window(frame, "2024-01-11").cutoff_day == 10
    assert fitted.window(frame, None).cutoff_day == 100
    with pytest.raises(Exception, match="neither a fraction"):
        fitted.window(frame, "last tuesday")
    with pytest.raises(Exception, match=r"in \(0, 1\]"):
        fitted.window(frame, 1.5)
