"""The strongest naive forecast of who returns: recency and frequency.

A logistic regression of returning (and a Poisson regression of active days) on the days since a
user's last active day and their active days so far, both log(1 + x), fitted on a time split inside
the calibration window: features at an inner cutoff one held-out period before the real cutoff
(half the window when that is shorter), the outcome what each user did between the two; then applied
to the users' features at the real cutoff. Untuned, customer-base analysis' usual baseline (RFM).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from persotool.kernels.simulation import visit_model as cal

RIDGE = 1e-4  # keeps the fit finite when the outcome separates perfectly (a tiny log)


@dataclass
class RecencyFrequency:
    returns: np.ndarray  # (known users,) chance of an active day within the held-out period
    active_days: np.ndarray  # (known users,) expected active days in the held-out period
    inner_days: int  # the length of the inner split's outcome period
    trained_users: int
    note: str = ""


def _features(last: np.ndarray, active_days: np.ndarray, cutoff_day: int) -> np.ndarray:
    recency = cutoff_day - 1 - last
    return np.column_stack([np.ones(len(last)), np.log1p(recency), np.log1p(active_days)])


def glm(x: np.ndarray, y: np.ndarray, family: str, ridge: float = RIDGE, steps: int = 100) -> np.ndarray:
    """Maximum-likelihood coefficients of a logistic (`binomial`, y in {0, 1}) or log-linear
    (`poisson`, y counts) regression by Newton's method, with a small ridge on the slopes."""
    beta = np.zeros(x.shape[1])
    if family == "poisson":
        beta[0] = np.log(max(y.mean(), 1e-9))
    penalty = np.full(x.shape[1], ridge * len(y))
    penalty[0] = 0.0
    for _ in range(steps):
        eta = np.clip(x @ beta, -30, 30)
        mean = 1 / (1 + np.exp(-eta)) if family == "binomial" else np.exp(eta)
        weight = mean * (1 - mean) if family == "binomial" else mean
        gradient = x.T @ (y - mean) - penalty * beta
        hessian = (x * weight[:, None]).T @ x + np.diag(penalty) + 1e-12 * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def recency_frequency(frame: pl.DataFrame, calibration, horizon: int) -> RecencyFrequency:
    """The forecast for every known user at the cutoff (the rows of `calibration.histories`)."""
    win, h = calibration.window, calibration.histories
    inner_days = max(1, min(horizon, win.cutoff_day // 2))
    inner_cutoff = win.cutoff_day - inner_days
    past = cal.histories(frame, win.start, inner_cutoff)
    days = frame.select("user_idx", cal.day_of(win.start))
    between = (
        days.filter((pl.col("day") >= inner_cutoff) & (pl.col("day") < win.cutoff_day))
        .group_by("user_idx")
        .agg(pl.col("day").n_unique().alias("days"))
    )
    outcome = (
        pl.DataFrame({"user_idx": past.user_idx})
        .join(between, on="user_idx", how="left")
        .fill_null(0)["days"]
        .to_numpy()
        .astype(np.float64)
    )
    now = _features(h.last, h.active_days, win.cutoff_day)
    scale = horizon / inner_days
    if len(outcome) < 10 or outcome.max() == 0 or outcome.min() > 0:
        share = float((outcome > 0).mean()) if len(outcome) else 0.0
        rate = float(outcome.mean()) if len(outcome) else 0.0
        note = (
            f"recency + frequency: {len(outcome)} users before the inner cutoff, "
            f"{int((outcome > 0).sum())} of them active after it: too few to fit, so it forecasts the overall rate"
        )
        return RecencyFrequency(
            np.full(len(h), 1 - (1 - share) ** scale), np.full(len(h), rate * scale), inner_days, len(outcome), note
        )
    x = _features(past.last, past.active_days, inner_cutoff)
    logistic = glm(x, (outcome > 0).astype(np.float64), "binomial")
    poisson = glm(x, outcome, "poisson")
    inner_chance = 1 / (1 + np.exp(-np.clip(now @ logistic, -30, 30)))
    # over a held-out period longer than the inner one, a constant daily hazard stretches the chance
    returns = 1 - (1 - inner_chance) ** scale
    return RecencyFrequency(returns, np.exp(np.clip(now @ poisson, -30, 30)) * scale, inner_days, len(outcome))
