"""Arms as epsilon-mixtures of whole slates, and each arm's impression log with exact propensities.

With `impressions.epsilon` > 0, every arm serves at each visit, with chance epsilon, a uniformly
random ordered slate of the items the user can still be served (not in their logged history, not
consumed yet), and its own slate otherwise. Lineups then span the whole catalog, so "the items the
user can still be served" is the same set m for every arm and the probability of every logged item
at its position is exact: (1 - epsilon) x [the arm's own slate has it there] + epsilon / m. The
exploration draws (who explores, and the random keys that order the items) are common to all arms,
like every other daily draw.

The recorder keeps, for the users assigned to each arm, every shown item (one row per item and
position, slates in visit order) with its reward (an engagement) and propensity, and for every arm
X the action distribution X's epsilon-mixture would have used on that visit, in the logging arm's
state: X's own slate is its first items that the user can still be served there. When a position's
reward depends on nothing but the item there and the visit (examination by position, no slate
similarity penalty), each row's expected reward under X is exact: exam(position) x sum over items of
X's probability x the engagement probability in that state. Their mean over the log's rows is X's
true value per impression on the logging arm's visits, the quantity an off-policy estimate of X
from that log aims at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from persotool.errors import ConfigError

MAX_BYTES = 4 * 2**30  # action distributions kept in memory, over all logs and targets


@dataclass
class Served:
    """One arm's visits on one day, taken before its state moves on."""

    rows: np.ndarray  # (R,) visiting simulated users
    own: np.ndarray  # (R, k) lineup positions of the arm's own slate (-1: none)
    pos: np.ndarray  # (R, k) lineup positions of the served slate (-1: none)
    engaged: np.ndarray  # (R, k) bool
    available: np.ndarray  # (R, C) bool: lineup positions the user can still be served
    logit: np.ndarray  # (R, C) engagement logit of every lineup position, fatigue included, no slate similarity


def explore(
    items: np.ndarray, available: np.ndarray, own: np.ndarray, chance: np.ndarray, keys: np.ndarray, epsilon: float
) -> np.ndarray:
    """The served slate's lineup positions: `own` (R, k), or, where chance < epsilon, the
    available positions with the k smallest keys (the user's day keys of their items), in key
    order: a uniformly random ordered slate of what the user can still be served."""
    pos = own.copy()
    rows = np.flatnonzero(chance < epsilon)
    if not len(rows):
        return pos
    k = own.shape[1]
    key = np.take_along_axis(keys[rows], np.maximum(items[rows], 0), axis=1)
    key = np.where(available[rows], key, np.inf)
    width = min(k, key.shape[1])
    first = np.argpartition(key, width - 1, axis=1)[:, :width] if width < key.shape[1] else np.argsort(key, axis=1)
    order = np.argsort(np.take_along_axis(key, first, axis=1), axis=1)
    chosen = np.take_along_axis(first, order, axis=1)
    chosen = np.where(np.isfinite(np.take_along_axis(key, chosen, axis=1)), chosen, -1)
    pos[rows] = -1
    pos[rows, :width] = chosen
    return pos


def exam_chances(k: int) -> np.ndarray:
    """The log-discount examination chance of each slate position."""
    return 1 / np.log2(np.arange(k) + 2)


@dataclass
class _Log:
    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)
    dists: dict[str, list[np.ndarray]] = field(default_factory=dict)
    values: dict[str, list[np.ndarray]] = field(default_factory=dict)
    slates: int = 0

    def add(self, key: str, value: np.ndarray, into: dict | None = None) -> None:
        (self.parts if into is None else into).setdefault(key, []).append(value)


@dataclass
class ImpressionLog:
    """One arm's log: a row per shown item, slates in visit order."""

    user: np.ndarray  # simulated user index
    day: np.ndarray
    slate: np.ndarray  # visit number within the log
    item: np.ndarray  # world item index
    position: np.ndarray  # 0-based
    reward: np.ndarray  # 1 when engaged
    propensity: np.ndarray  # the logging arm's exact probability of the item at the position
    dists: dict[str, np.ndarray]  # target arm -> (rows, n_items, k) float32 action distribution
    values: dict[str, np.ndarray]  # target arm -> (rows,) expected reward (exact when `exact`)

    def __len__(self) -> int:
        return len(self.item)


class Recorder:
    """Collects each arm's impression log while the days run (see the module doc)."""

    def __init__(self, n_items: int, k: int, epsilon: float, keep: dict[str, np.ndarray], exact: bool):
        self.n_items, self.k, self.epsilon, self.keep, self.exact = n_items, k, epsilon, keep, exact
        self.logs = {name: _Log() for name in keep}

    def record(self, name: str, served: Served, day: int, lineups: dict[str, np.ndarray]) -> None:
        """Arm `name`'s visits of the day; `lineups` are every arm's current item lineups (N, C)."""
        keep = self.keep[name][served.rows]
        if not keep.any():
            return
        rows = served.rows[keep]
        pos, own, engaged = served.pos[keep], served.own[keep], served.engaged[keep]
        items, available = lineups[name][rows], served.available[keep]
        n, k, eps = self.n_items, self.k, self.epsilon
        rr, cc = np.nonzero(items >= 0)
        can = np.zeros((len(rows), n), dtype=bool)  # by item: can still be served
        can[rr, items[rr, cc]] = available[rr, cc]
        chance = np.zeros((len(rows), n), dtype=np.float64)  # by item: engagement chance if examined
        sigmoid = 1 / (1 + np.exp(-served.logit[keep][rr, cc].astype(np.float64)))
        chance[rr, items[rr, cc]] = np.where(available[rr, cc], sigmoid, 0.0)
        m = can.sum(axis=1)
        shown = np.where(pos >= 0, np.take_along_axis(items, np.maximum(pos, 0), axis=1), -1)
        mine = np.where(own >= 0, np.take_along_axis(items, np.maximum(own, 0), axis=1), -1)
        at_r, at_j = np.nonzero(shown >= 0)  # row-major: slates in visit order, positions ascending
        log = self.logs[name]
        log.add("user", rows[at_r])
        log.add("day", np.full(len(at_r), day, dtype=np.int32))
        log.add("slate", log.slates + at_r)
        log.add("item", shown[at_r, at_j])
        log.add("position", at_j)
        log.add("reward", engaged[at_r, at_j])
        uniform = eps / np.maximum(m, 1)
        log.add("propensity", (1 - eps) * (mine[at_r, at_j] == shown[at_r, at_j]) + uniform[at_r])
        log.slates += len(rows)
        exam = exam_chances(k)
        mass = chance.sum(axis=1)  # engagement chances summed over what can be served (0 elsewhere)
        for target, lineup in lineups.items():
            items_of = lineup[rows]
            servable = (items_of >= 0) & np.take_along_axis(can, np.maximum(items_of, 0), axis=1)
            slate = first_k(items_of, servable, k)
            dist = np.repeat((can * uniform[:, None])[:, :, None], k, axis=2).astype(np.float32)
            j, c = np.nonzero(slate >= 0)
            dist[j, slate[j, c], c] += 1 - eps
            for j in range(k):  # positions beyond what the user can be served: uniform (never logged)
                empty = slate[:, j] < 0
                if empty.any():
                    dist[empty, :, j] = can[empty] / np.maximum(m[empty], 1)[:, None]
            log.add(target, dist[at_r], log.dists)
            own_chance = np.where(slate >= 0, np.take_along_axis(chance, np.maximum(slate, 0), axis=1), 0)
            value = exam[None, :] * ((1 - eps) * own_chance + uniform[:, None] * mass[:, None])
            log.add(target, value[at_r, at_j], log.values)

    def finish(self) -> dict[str, ImpressionLog]:
        out = {}
        for name, log in self.logs.items():
            p = log.parts

            def cat(key: str, dtype, p=p) -> np.ndarray:
                return np.concatenate(p[key]).astype(dtype) if key in p else np.empty(0, dtype=dtype)

            out[name] = ImpressionLog(
                user=cat("user", np.int64),
                day=cat("day", np.int32),
                slate=cat("slate", np.int64),
                item=cat("item", np.int64),
                position=cat("position", np.int64),
                reward=cat("reward", np.int8),
                propensity=cat("propensity", np.float64),
                dists={
                    t: np.concatenate(v) if v else np.zeros((0, self.n_items, self.k), np.float32)
                    for t, v in log.dists.items()
                },
                values={t: np.concatenate(v) for t, v in log.values.items()},
            )
        return out


def first_k(items: np.ndarray, ok: np.ndarray, k: int) -> np.ndarray:
    """(R, k) item ids: each row's first k items where `ok`, in lineup order (-1 beyond)."""
    rank = np.cumsum(ok, axis=1)
    out = np.full((len(items), k), -1, dtype=np.int64)
    r, c = np.nonzero(ok & (rank <= k))
    out[r, rank[r, c] - 1] = items[r, c]
    return out


def check_size(expected_rows: float, n_items: int, k: int, arms: int, users: int = 0) -> None:
    """Refuse before the days run when the logs' action distributions, or the whole-catalog
    lineups (item, logit, consumed and exposure: 10 bytes per user, item and arm, the pre-period
    counting as one more arm, plus the day's 4-byte exploration keys), would not fit in memory."""
    needed = expected_rows * n_items * k * 4 * arms
    if needed > MAX_BYTES:
        raise ConfigError(
            f"impressions.epsilon: the logs' action distributions would take about {needed / 2**30:,.1f} GiB "
            f"(about {expected_rows:,.0f} logged impressions x {n_items:,} items x {k} positions x {arms} arms, "
            f"4 bytes each), more than {MAX_BYTES / 2**30:.0f} GiB: simulate fewer users or days, a smaller slate, "
            "or a catalog with fewer items"
        )
    lineups = users * n_items * (10 * (arms + 1) + 4)
    if lineups > 2 * MAX_BYTES:
        raise ConfigError(
            f"impressions.epsilon: whole-catalog lineups of {users:,} simulated users x {n_items:,} items x "
            f"{arms} arms would take about {lineups / 2**30:,.1f} GiB, more than {2 * MAX_BYTES / 2**30:.0f} GiB: "
            "simulate fewer users (world.population) or a catalog with fewer items"
        )
