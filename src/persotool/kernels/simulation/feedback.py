"""The feedback loop and its homogenization measures.

Every `feedback.every` days each arm whose policy learns from data (a trained model, or most
popular) is refitted on what its own simulated users engaged with so far, then lines up new
candidates. It is the ecosystem in which that arm is fully deployed: all simulated users feed the
arm's model, as in a real rollout, while the experiment still compares arms on its random
assignment. Models know a simulated user as the logged user they were drawn from (as the arm's
original model does), so a retrained model has one row per logged user: their logs (unless
`with_logs = false`) plus everything the simulated users drawn from them engaged with in the
pre-period and under this arm. It keeps its original hyperparameters and trains for the epochs its
original training kept (no validation set exists inside the simulation) unless `feedback.epochs`
says otherwise.

Homogenization: the mean Jaccard similarity of the consumed sets (engagements since the test
began) over pairs of a fixed sample of simulated users who consumed something, beside catalog
coverage and the Gini coefficient of exposure, per day.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from persotool.kernels.simulation.world import SimulatedWorld

LEARNING = ("model", "popular")

Scorer = Callable[[np.ndarray], np.ndarray]
# (arm, world, logged users x items matrix to fit on) -> the arm's refitted scorer of simulated
# users; the simulate stage supplies it, so the day loop never imports model training
Retrain = Callable[[Any, Any, sp.csr_matrix], Scorer]


def training_matrix(world: SimulatedWorld, users: np.ndarray, items: np.ndarray, *, with_logs: bool) -> sp.csr_matrix:
    """Logged users x items, 1 where a simulated user drawn from the logged user engaged with the
    item in the simulation (`users`, `items`), or where the logs have it (`with_logs`)."""
    n, m = world.history.shape
    rows = [world.source_user[np.asarray(users, dtype=np.int64)].astype(np.int64)]
    cols = [np.asarray(items, dtype=np.int64)]
    if with_logs:
        logged = world.history.tocoo()
        rows.append(logged.row.astype(np.int64))
        cols.append(logged.col.astype(np.int64))
    r, c = np.concatenate(rows), np.concatenate(cols)
    matrix = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n, m))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def mean_jaccard(users: np.ndarray, items: np.ndarray, sample: np.ndarray, n_items: int) -> float:
    """Mean Jaccard similarity of consumed sets over pairs of `sample` users who consumed
    something; (users, items) are consumption pairs, repeats allowed. NaN with fewer than two."""
    where = np.full(int(max(users.max(initial=-1), sample.max(initial=-1))) + 1, -1, dtype=np.int64)
    where[sample] = np.arange(len(sample))
    row = where[users] if len(users) else np.empty(0, dtype=np.int64)
    keep = row >= 0
    matrix = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (row[keep], items[keep])), shape=(len(sample), n_items)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    matrix = matrix[matrix.getnnz(axis=1) > 0]
    n = matrix.shape[0]
    if n < 2:
        return float("nan")
    size = matrix.getnnz(axis=1).astype(np.float64)
    shared = (matrix @ matrix.T).tocoo()  # only pairs with something in common have a non-zero Jaccard
    jaccard = shared.data / (size[shared.row] + size[shared.col] - shared.data)
    return float((jaccard.sum() - n) / (n * (n - 1)))  # each pair twice; the diagonal is n ones


def sample_users(world: SimulatedWorld, size: int, seed: int) -> np.ndarray:
    """The fixed users whose consumed sets the homogenization measure compares."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 31]))
    if size >= world.n_users:
        return np.arange(world.n_users)
    return np.sort(rng.choice(world.n_users, size=size, replace=False))
