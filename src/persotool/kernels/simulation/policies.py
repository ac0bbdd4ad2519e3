"""Arms' policies as candidate lists: for every simulated user, the ranked items the policy would
serve, computed once in batches (never per user). Each day a user's slate is the first
`slate_size` candidates they have not consumed yet, so a static policy costs nothing per day.

- model: a trained persotool model scores the user the simulated user was drawn from;
- random: a uniformly random order;
- popular: logged popularity (the same order for everyone);
- oracle: the true engagement logit (affinity and quality), the best a greedy policy can do;
- adverse: the items the user's true affinity ranks lowest, a deliberately bad arm (planted harm:
  does the experiment catch a recommender that serves what users dislike?);
- logged: the logged behaviour, approximated as items drawn with probability proportional to
  their logged popularity to a fitted power, independently per user (a stochastic popularity
  policy).
Items in a user's logged history are never served.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from persotool.errors import ConfigError
from persotool.kernels.models.base import mask_seen, top_k
from persotool.kernels.simulation.spec import ArmSpec, BehaviourSpec
from persotool.kernels.simulation.world import SimulatedWorld

BATCH = 2048


@dataclass
class Candidates:
    items: np.ndarray  # (N, C) int32, -1 when the policy ran out of items
    logit: np.ndarray  # (N, C) float32: affinity and quality part of the engagement logit


def same_for_everyone(scores: np.ndarray, n_items: int) -> Callable[[np.ndarray], np.ndarray]:
    """A scorer giving every user the same item scores (e.g. popularity)."""
    scores = scores.astype(np.float32)
    return lambda users: np.broadcast_to(scores, (len(users), n_items)).copy()


def _model_scorer(arm: ArmSpec, world: SimulatedWorld, behaviour: BehaviourSpec, rng, dataset_digest: str):
    """A trained model's scores for the logged user each simulated user was drawn from."""
    from persotool.kernels.models.registry import load
    from persotool.kernels.storage import read_artifact

    manifest = read_artifact(arm.model, "model")
    if manifest["dataset"]["digest"] != dataset_digest:
        raise ConfigError(
            f"arm {arm.name!r}: model {arm.model} was trained on dataset {manifest['dataset']['digest']}, "
            f"but the world is built from dataset {dataset_digest}"
        )
    model = load(Path(arm.model))
    if model.n_items_ != world.n_items:
        raise ConfigError(f"arm {arm.name!r}: model has {model.n_items_} items, the world {world.n_items}")
    return lambda users: model.score(world.source_user[users]).astype(np.float32)


def _popular_scorer(arm, world: SimulatedWorld, behaviour, rng, dataset_digest) -> Callable:
    return same_for_everyone(world.popularity, world.n_items)


def _oracle_scorer(arm, world: SimulatedWorld, behaviour: BehaviourSpec, rng, dataset_digest) -> Callable:
    """The true affinity and quality the simulated users respond to: an upper bound."""
    return lambda users: behaviour.affinity_weight * world.affinity(users) + behaviour.quality_weight * world.quality


def _adverse_scorer(arm, world: SimulatedWorld, behaviour: BehaviourSpec, rng, dataset_digest) -> Callable:
    """The user's least liked items first: a planted harm."""
    return lambda users: -world.affinity(users)


def _random_scorer(arm, world: SimulatedWorld, behaviour, rng, dataset_digest) -> Callable:
    return lambda users: rng.random((len(users), world.n_items), dtype=np.float32)


def _logged_scorer(arm, world: SimulatedWorld, behaviour, rng, dataset_digest) -> Callable:
    """Like the logs: Gumbel top-k of exponent x log-popularity samples items in proportion to
    popularity to the power of the world's fitted exponent."""
    log_pop = (world.logged_exponent * np.log(world.popularity + 0.5)).astype(np.float32)
    return lambda users: log_pop + rng.gumbel(size=(len(users), world.n_items)).astype(np.float32)


# policy name (as in [[arms]] policy = ...) -> maker of the arm's scorer
SCORERS = {
    "model": _model_scorer,
    "popular": _popular_scorer,
    "oracle": _oracle_scorer,
    "adverse": _adverse_scorer,
    "random": _random_scorer,
    "logged": _logged_scorer,
}


def _scorer(arm: ArmSpec, world: SimulatedWorld, behaviour: BehaviourSpec, seed: int, dataset_digest: str):
    """scores(simulated users) -> (len, items) float32, higher served first."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 23, sum(map(ord, arm.name))]))
    return SCORERS[arm.policy](arm, world, behaviour, rng, dataset_digest)


def candidates(
    arm: ArmSpec,
    world: SimulatedWorld,
    behaviour: BehaviourSpec,
    size: int,
    *,
    seed: int,
    dataset_digest: str,
    users: np.ndarray | None = None,
    exclude: Callable[[np.ndarray, np.ndarray], None] | None = None,  # (scores, users): sets -inf in place
    score: Callable[[np.ndarray], np.ndarray] | None = None,  # simulated users -> scores (e.g. a retrained model)
) -> Candidates:
    """The arm's `size` best items for every simulated user (or `users`), logged history excluded."""
    score = score or _scorer(arm, world, behaviour, seed, dataset_digest)
    users = np.arange(world.n_users) if users is None else users
    size = min(size, world.n_items)
    items = np.full((len(users), size), -1, dtype=np.int32)
    logit = np.zeros((len(users), size), dtype=np.float32)
    for start in range(0, len(users), BATCH):
        batch = users[start : start + BATCH]
        scores = np.array(score(batch), dtype=np.float32, copy=True)
        mask_seen(scores, world.history, world.source_user[batch])
        if exclude is not None:
            exclude(scores, batch)
        top, values = top_k(scores, size)
        top = np.where(np.isfinite(values), top, -1)
        items[start : start + len(batch)] = top
        safe = np.maximum(top, 0)
        part = (
            behaviour.affinity_weight * world.affinity(np.repeat(batch[:, None], size, axis=1), safe)
            + behaviour.quality_weight * world.quality[safe]
        )
        logit[start : start + len(batch)] = np.where(top >= 0, part, -np.inf)
    return Candidates(items, logit)
