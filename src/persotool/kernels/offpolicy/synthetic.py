"""A contextual world of impressions whose policy values are known: contexts x ~ N(0, I_d); the
click chance is additive on the logit in the context, the item and the position (so the reward
model of `reward_model` is well specified); the logger and the targets are softmax policies over
linear scores of the context. The value of a target, the expected click chance of an impression
it would fill at a position drawn like the log's, is computed from 400,000 fresh contexts (Monte
Carlo standard error about 2e-4), far below any replicate's."""

from __future__ import annotations

import numpy as np

from persotool.kernels.offpolicy.estimators import Logged


class ImpressionWorld:
    def __init__(self, items: int = 8, positions: int = 2, d: int = 4, seed: int = 11) -> None:
        rng = np.random.default_rng(seed)
        self.items, self.positions, self.d = items, positions, d
        self.beta = rng.normal(0, 0.5, d)
        self.b_item = rng.normal(-2.0, 0.8, items)
        self.c_pos = -0.7 * np.arange(positions)
        logger = rng.normal(0, 0.5, (d, items))
        self.theta = {
            "logger": (logger, np.zeros(items)),
            "near": (logger + rng.normal(0, 0.2, (d, items)), np.zeros(items)),  # a small change of the logger
            "far": (rng.normal(0, 1.5, (d, items)), self.b_item),  # leans to the items that are clicked more
        }
        x = rng.normal(size=(400_000, d))
        pos = rng.integers(0, positions, len(x))
        sums = dict.fromkeys(self.theta, 0.0)
        for start in range(0, len(x), 20_000):  # chunks: 20,000 contexts x items at a time
            for name in self.theta:
                sums[name] += float(self.expected(name, x[start : start + 20_000], pos[start : start + 20_000]).sum())
        self.value = {name: total / len(x) for name, total in sums.items()}

    def policy(self, name: str, x: np.ndarray) -> np.ndarray:
        theta, bias = self.theta[name]
        s = x @ theta + bias
        p = np.exp(s - s.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    def click(self, x: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """(n, items): each context's click chance of every item at its position."""
        s = (x @ self.beta)[:, None] + self.b_item[None, :] + self.c_pos[pos][:, None]
        return 1 / (1 + np.exp(-s))

    def expected(self, name: str, x: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return (self.policy(name, x) * self.click(x, pos)).sum(axis=1)

    def log(self, n: int, rng: np.random.Generator, targets=("near", "far")):
        """(contexts, the logger's impressions with exact propensities, each target's action_dist)."""
        x = rng.normal(size=(n, self.d))
        pos = rng.integers(0, self.positions, n)
        pi_b = self.policy("logger", x)
        item = (pi_b.cumsum(axis=1) > rng.random(n)[:, None]).argmax(axis=1)
        reward = (rng.random(n) < self.click(x, pos)[np.arange(n), item]).astype(float)
        logged = Logged(item, pos, reward, pi_b[np.arange(n), item])
        dists = {name: np.repeat(self.policy(name, x)[:, :, None], self.positions, axis=2) for name in targets}
        return x, logged, dists

    def slates(self, n: int, rng: np.random.Generator, targets=("near", "far")):
        """n slates filling every position, each position's item drawn independently by the logger
        for the slate's context (repeats allowed), clicks independent given item and position: the
        setting where IIPS, RIPS and SIPS are all unbiased. Returns (Logged, slate ids, dists)."""
        x = np.repeat(rng.normal(size=(n, self.d)), self.positions, axis=0)
        pos = np.tile(np.arange(self.positions), n)
        pi_b = self.policy("logger", x)
        item = (pi_b.cumsum(axis=1) > rng.random(len(x))[:, None]).argmax(axis=1)
        reward = (rng.random(len(x)) < self.click(x, pos)[np.arange(len(x)), item]).astype(float)
        logged = Logged(item, pos, reward, pi_b[np.arange(len(x)), item])
        dists = {name: np.repeat(self.policy(name, x)[:, :, None], self.positions, axis=2) for name in targets}
        return logged, np.repeat(np.arange(n), self.positions), dists
