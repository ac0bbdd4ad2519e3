"""How closely the simulated control behaviour matches the logs it was calibrated from: four
distributions, real against simulated, each with the two-sample Kolmogorov-Smirnov distance
(scipy `ks_2samp`). The simulated side is the control arm over the pre-period and the test.

- visits per user: real active days within the first H days of each user's activity, against
  simulated visit days over H = pre_days + days (users with at least one visit on both sides);
- gap between visits: days between consecutive active days (real gaps longer than H are left out,
  the simulation cannot produce them);
- engagements per session: real interactions per session capped at the slate size, against
  simulated engagements per visit on visits with at least one engagement (a log only records
  sessions where something happened);
- item popularity: each item's engagements relative to the mean item, on a log scale, items with
  at least one engagement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from persotool.kernels.simulation.engine import Simulation
from persotool.kernels.simulation.spec import SimulationConfig
from persotool.kernels.simulation.world import SimulatedWorld


@dataclass
class Fidelity:
    """How the simulated world compares with the logs: KS distances per distribution (table) and
    the distributions themselves (real, simulated)."""

    table: pl.DataFrame
    real: dict[str, Any]
    simulated: dict[str, Any]


def simulated_samples(sim: Simulation, cfg: SimulationConfig) -> dict[str, np.ndarray]:
    control = sim.arms[cfg.control]
    visits = control.daily_visits
    engagements = control.daily_engagements
    item_engagement = control.item_engagement
    if sim.pre is not None:
        visits = np.concatenate([sim.pre.daily_visits, visits], axis=1)
        engagements = np.concatenate([sim.pre.daily_engagements, engagements], axis=1)
    per_user = visits.sum(axis=1)
    users, days = np.nonzero(visits)
    same_user = users[1:] == users[:-1]
    gaps = np.diff(days)[same_user]
    per_visit = engagements[visits]
    return {
        "visits_per_user": per_user[per_user > 0].astype(np.float64),
        "gap_days": gaps.astype(np.float64),
        "engagements_per_session": per_visit[per_visit > 0].astype(np.float64),
        "item_popularity": _relative(item_engagement),
    }


def _relative(counts: np.ndarray) -> np.ndarray:
    positive = counts[counts > 0].astype(np.float64)
    return np.log(positive / positive.mean()) if len(positive) else positive


def real_samples(world: SimulatedWorld, cfg: SimulationConfig) -> dict[str, np.ndarray]:
    logs = world.logs
    horizon = cfg.pre_days + cfg.days
    return {
        "visits_per_user": logs.first_window_days[logs.first_window_days > 0],
        "gap_days": logs.gaps[logs.gaps <= horizon],
        "engagements_per_session": np.minimum(logs.session_lengths, cfg.slate_size),
        "item_popularity": _relative(logs.item_counts),
    }


def report(sim: Simulation, world: SimulatedWorld, cfg: SimulationConfig) -> tuple[pl.DataFrame, dict, dict]:
    """(table, real samples, simulated samples); the table has one row per distribution."""
    real, simulated = real_samples(world, cfg), simulated_samples(sim, cfg)
    rows = []
    for name in real:
        r, s = real[name], simulated[name]
        if len(r) and len(s):
            ks = stats.ks_2samp(r, s)
            distance, p = float(ks.statistic), float(ks.pvalue)
        else:
            distance, p = float("nan"), float("nan")
        rows.append(
            {
                "distribution": name,
                "real_mean": float(r.mean()) if len(r) else float("nan"),
                "simulated_mean": float(s.mean()) if len(s) else float("nan"),
                "real_median": float(np.median(r)) if len(r) else float("nan"),
                "simulated_median": float(np.median(s)) if len(s) else float("nan"),
                "ks_distance": distance,
                "ks_p": p,
                "real_n": len(r),
                "simulated_n": len(s),
            }
        )
    return pl.DataFrame(rows), real, simulated
