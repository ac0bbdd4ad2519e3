"""Calibration of a world from a dataset's logs (the calibrate stage keeps one as a world directory).

A calibration window runs from the log's first day to a cutoff (`until`: a date, a fraction of the
log's time range, or the end). On it are fitted the visit-and-return model (`visit_model.py`) and
the targets the engagement model is matched to when a simulation builds its world: the logs'
interactions per active day. The directory holds the fitted parameters and their covariance, the
fit diagnostics, the window, and a per-user table of what the model concludes about each user;
`simulate` loads it with `[world] source = "WORLD_DIR"`. The histories themselves are recomputed
from the dataset (checked against its digest), so the directory stays small.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from persotool.errors import ConfigError, DataError
from persotool.kernels.simulation import visit_model as cal

MIN_RETURNING = 5  # users active on two days or more: fewer, and nothing is learnt about returning
MODEL = "two-state visit model (active/dormant, Beta heterogeneity; BG/BB with returns)"
ENGAGEMENT_CAP = 200  # interactions per active day counted exactly up to this; beyond, pooled


@dataclass
class Window:
    start: datetime  # midnight (UTC) before the log's first timestamp; day 0 starts here
    cutoff_day: int  # days before this one are in the window
    log_days: int  # days the whole log spans

    @property
    def until(self) -> datetime:
        from datetime import timedelta

        return self.start + timedelta(days=self.cutoff_day)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "until": self.until.isoformat(),
            "cutoff_day": self.cutoff_day,
            "days": self.cutoff_day,
            "log_days": self.log_days,
            "held_out_days": self.log_days - self.cutoff_day,
        }


def window(frame: pl.DataFrame, until: str | float | None, *, option: str = "until") -> Window:
    """The calibration window of a log: `until` is None (the whole log), a fraction in (0, 1] of
    its time range, or an ISO date; the window ends at the start of the day it falls in."""
    first, end = frame["timestamp"].min(), frame["timestamp"].max()
    start = first.replace(hour=0, minute=0, second=0, microsecond=0)  # days are calendar days (UTC)
    log_days = int((end - start).total_seconds() // 86400) + 1
    if until is None:
        return Window(start, log_days, log_days)
    fraction = _fraction(until)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ConfigError(f"`{option}` {until!r} is a fraction of the log's time range; expected one in (0, 1]")
        moment = first + (end - first) * fraction
    else:
        try:
            moment = datetime.fromisoformat(str(until))
        except ValueError:
            raise ConfigError(f"`{option}` {until!r} is neither a fraction in (0, 1] nor an ISO date") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    day = int((moment - start).total_seconds() // 86400)
    if day < 2:
        raise ConfigError(
            f"`{option}` {until!r} leaves fewer than 2 days of logs to calibrate on (the log runs from "
            f"{first:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC; days are counted from midnight)"
        )
    return Window(start, min(day, log_days), log_days)


def _fraction(value: str | float) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except ValueError:
        return None


@dataclass
class Calibration:
    """A fitted calibration: the window, the histories it saw, the fit and its grid likelihoods."""

    window: Window
    histories: cal.Histories
    grid: cal.Grid
    likelihood: cal.Likelihood
    fit: cal.Fit
    engagement: dict[str, Any]  # interactions per active day: histogram and mean
    diagnostics: dict[str, Any]
    seconds: float
    truth: dict[str, Any] = field(default_factory=dict)  # an auto truth's weights, from `calibrate`

    def draw(self, rows: np.ndarray, rng: np.random.Generator, *, fresh: bool, fit: cal.Fit | None = None):
        """Per-clone posterior draws for history rows `rows` (see `calibration.draw`)."""
        return cal.draw(fit or self.fit, self.histories, self.likelihood, self.grid, rows, rng, fresh=fresh)

    def users_table(self, horizon: int = 30) -> pl.DataFrame:
        """What the model concludes about each user at the cutoff."""
        h = self.histories
        rows = h.history
        post = cal.node_posterior(self.fit, self.likelihood, self.grid)
        return pl.DataFrame(
            {
                "user_idx": h.user_idx,
                "first_day": h.first,
                "last_day": h.last,
                "active_days": h.active_days,
                "active_probability": (post * self.likelihood.active).sum(axis=1)[rows],
                "visit_chance": (post @ self.grid.p)[rows],
                "leaving_chance": (post @ self.grid.theta)[rows],
                "return_chance": (post @ self.grid.r)[rows],
                f"return_probability_{horizon}d": cal.return_probability(
                    self.fit, self.likelihood, self.grid, horizon, post=post
                )[rows],
                f"expected_active_days_{horizon}d": cal.expected_active_days(
                    self.fit, self.likelihood, self.grid, horizon, post=post
                )[rows],
            }
        )


MIN_LATER_DAYS = 200  # fewer active days after users' first: engagement targets use every active day


def per_active_day(frame: pl.DataFrame) -> np.ndarray:
    """Interactions on each active day (a user's calendar day, UTC, with at least one) after the
    user's first. A first day is onboarding (a new MovieLens user rates 15 movies before seeing a
    recommendation; in the bundled log, capped at 10, first days average 9.8 interactions and later
    days 3.4), and the visit model conditions on it: simulated visits stand for the days after it.
    Every active day when fewer than MIN_LATER_DAYS follow a first."""
    day = pl.col("timestamp").dt.truncate("1d").alias("day")
    days = frame.group_by("user_idx", day).len()
    later = days.filter(pl.col("day") > pl.col("day").min().over("user_idx"))
    return (later if later.height >= MIN_LATER_DAYS else days)["len"].to_numpy()


def engagement_targets(frame: pl.DataFrame, until: datetime) -> dict[str, Any]:
    """Interactions per active day (after users' first, see `per_active_day`) before `until`: a
    histogram up to ENGAGEMENT_CAP (the last bin pools the rest), its mean, and the share of active
    days with exactly one."""
    per_day = per_active_day(frame.filter(pl.col("timestamp") < until))
    counts = np.minimum(per_day, ENGAGEMENT_CAP)
    histogram = np.bincount(counts, minlength=ENGAGEMENT_CAP + 1)[1:]
    return {
        "per_active_day": histogram.tolist(),  # index i: active days with i + 1 interactions
        "mean": float(per_day.mean()),
        "single_share": float((counts == 1).mean()),
        "active_days": len(per_day),
    }


def calibrate_frame(
    frame: pl.DataFrame, until: str | float | None, *, seed: int = 0, option: str = "until"
) -> Calibration:
    """Fit the calibration on an interactions frame (user_idx, timestamp)."""
    started = time.perf_counter()
    win = window(frame, until, option=option)
    first, last = frame["timestamp"].min(), frame["timestamp"].max()
    span = f"the log runs from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"
    if win.cutoff_day < 2:
        raise DataError(
            f"{span}: the visit model learns how users come back from day to day, and needs at least 2 days "
            "(calibrate on a longer log)"
        )
    h = cal.histories(frame, win.start, win.cutoff_day)
    if len(h) < 10:
        raise DataError(f"only {len(h)} users are active before {win.until.date()}; calibration needs at least 10")
    returning = int((h.active_days > 1).sum())
    if returning < MIN_RETURNING:
        raise DataError(
            f"only {returning} of {len(h):,} users were active on more than one day before {win.until.date()} "
            f"({span}): with nobody seen coming back, the fit would be its starting values; calibration needs "
            f"at least {MIN_RETURNING}"
        )
    grid = cal.Grid.default()
    lik = cal.node_likelihood(h, grid)
    fit = cal.fit(h, grid, lik)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 41]))
    diagnostics = {"active_days": cal.active_day_check(fit, h, rng, replicates=20)}
    return Calibration(
        window=win,
        histories=h,
        grid=grid,
        likelihood=lik,
        fit=fit,
        engagement=engagement_targets(frame, win.until),
        diagnostics=diagnostics,
        seconds=time.perf_counter() - started,
    )


def interactions(dataset: Path, *extra: str) -> pl.DataFrame:
    """The dataset's interactions (user, item, time, and the `extra` columns asked for), the frame
    every calibration starts from."""
    frame = pl.read_parquet(dataset / "interactions.parquet", columns=["user_idx", "item_idx", "timestamp", *extra])
    if frame.is_empty():
        raise DataError("has no interactions to calibrate a world from", where=str(dataset))
    return frame


class WindowRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    cutoff_day: int = Field(ge=2, le=100_000)
    days: int = Field(ge=2, le=100_000)


class GridRecord(BaseModel):
    sizes: list[int] = Field(min_length=3, max_length=3)

    @field_validator("sizes")
    @classmethod
    def _small(cls, sizes: list[int]) -> list[int]:
        if any(not 2 <= n <= MAX_GRID_SIDE for n in sizes):
            raise ValueError(f"each side must be from 2 to {MAX_GRID_SIDE} nodes")
        return sizes


class FitRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    params: dict[str, float]
    log_cov: list[list[float]]
    log_likelihood: float
    users: int = Field(ge=1)
    converged: bool

    @field_validator("params")
    @classmethod
    def _beta(cls, params: dict[str, float]) -> dict[str, float]:
        missing = [name for name in cal.PARAMS if name not in params]
        if missing:
            raise ValueError(f"no {missing[0]!r}")
        for name in cal.PARAMS:
            if not (math.isfinite(params[name]) and params[name] > 0):
                raise ValueError(f"{name} = {params[name]!r}: a Beta parameter is a finite number above 0")
        return params

    @field_validator("log_cov")
    @classmethod
    def _square(cls, cov: list[list[float]]) -> list[list[float]]:
        n = len(cal.PARAMS)
        if len(cov) != n or any(len(row) != n for row in cov) or not all(math.isfinite(v) for r in cov for v in r):
            raise ValueError(f"must be a {n} x {n} matrix of finite numbers")
        return cov


class TruthRecord(BaseModel):
    """An auto truth's family weights as a world directory keeps them."""

    model_config = ConfigDict(extra="allow")

    weights: dict[Literal["als", "ease", "itemknn", "lightfm"], float] = Field(min_length=1)

    @field_validator("weights")
    @classmethod
    def _weights(cls, weights: dict[str, float]) -> dict[str, float]:
        if not all(math.isfinite(w) and w >= 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("must be finite weights >= 0 with a positive sum")
        return weights


class WorldFile(BaseModel):
    """What a world directory's manifest must hold for a simulation to load it, with bounds: an
    edited manifest (a cutoff out of range, no fit, a grid of 600^3 nodes, a Beta parameter that is
    NaN or 0) is refused with the field's name, never an overflow or a simulation of NaN."""

    model_config = ConfigDict(extra="allow")

    window: WindowRecord
    grid: GridRecord
    fit: FitRecord
    engagement: dict[str, Any]
    diagnostics: dict[str, Any]
    seconds: float = Field(ge=0)
    truth: TruthRecord | None = None


MAX_GRID_SIDE = 60  # 60^3 nodes: well beyond the default 24 x 24 x 10, still a few MB per user batch


def load(world_dir: Path, dataset: Path) -> tuple[Calibration, dict[str, Any]]:
    """A world directory's calibration, its histories recomputed from `dataset` (which must be
    the dataset it was fitted on)."""
    from pydantic import ValidationError

    from persotool.kernels import storage as artifacts

    manifest = artifacts.read_artifact(world_dir, "world")
    try:
        WorldFile.model_validate(manifest)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise DataError(
            f"manifest field {field!r}: {first['msg'].removeprefix('Value error, ')}", where=str(world_dir)
        ) from None
    digest = artifacts.read_artifact(dataset, "dataset")["dataset_digest"]
    if manifest["dataset"]["digest"] != digest:
        raise ConfigError(
            f"world {world_dir} was calibrated on dataset {manifest['dataset']['digest']}, "
            f"but the simulation's dataset is {digest}"
        )
    frame = interactions(dataset)
    win = window(frame, None)
    if manifest["window"]["cutoff_day"] > win.log_days:
        raise DataError(
            f"manifest field 'window.cutoff_day': day {manifest['window']['cutoff_day']} is past the end of the "
            f"dataset's log ({win.log_days} days)",
            where=str(world_dir),
        )
    win = Window(win.start, int(manifest["window"]["cutoff_day"]), win.log_days)
    h = cal.histories(frame, win.start, win.cutoff_day)
    grid = cal.Grid.default(tuple(manifest["grid"]["sizes"]))
    calibration = Calibration(
        window=win,
        histories=h,
        grid=grid,
        likelihood=cal.node_likelihood(h, grid),
        fit=cal.Fit.from_dict(manifest["fit"]),
        engagement=manifest["engagement"],
        diagnostics=manifest["diagnostics"],
        seconds=float(manifest["seconds"]),
        truth=manifest.get("truth") or {},
    )
    return calibration, manifest
