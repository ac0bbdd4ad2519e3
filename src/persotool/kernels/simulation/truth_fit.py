"""Which truth family does held-out behaviour support? Each family (ALS, EASE, ItemKNN, LightFM) is
fitted on the interactions before a cutoff and scored on what users consumed after it, among the
items they had not consumed before:

- AUC: the chance a held-out item is ranked above an item the user did not consume, per user,
  averaged over users; NDCG@10 of the held-out items;
- predictive log-likelihood: a conditional logit of which item a held-out engagement went to, on
  the family's standardised affinity and log item popularity (the simulator's engagement model at
  a low engagement rate, where sigmoid(x) is close to exp(x), with the logged-like policy's
  exposure proportional to a power of popularity), fitted by maximum likelihood on the held-out
  engagements. Reported as the gain in nats per engagement over popularity alone, with the
  affinity coefficient the data supports (`beta`: the simulator's `affinity_weight` is the same
  quantity) and the gain at the simulator's own `affinity_weight`.

The mixture's weights (`truth = "auto"`) maximise that likelihood with every family's affinity as
a feature: the coefficients are kept >= 0 and normalised to sum to one, so the world's affinity
is the weighted sum of the families' standardised affinities. The likelihood is convex in the
coefficients (a conditional logit), so the weights are the unique maximum (up to ties between
families that score identically). Fitting them on a time split inside the calibration window
(`auto_weights`) keeps the back-test's held-out period unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from persotool.errors import ConfigError
from persotool.kernels.simulation.world import combine, family_factors, too_large

MAX_CELLS = 30_000_000  # users x items x features held for the likelihood fit
MAX_FEATURES = 5  # four families and log popularity
MIN_USERS = 20  # fewer held-out users: too few to weigh the families
NDCG_K = 10


@dataclass
class HeldOut:
    """The pairs of a time split: `history` (users x items, bool) before the cutoff and, for a sample
    of the users known before it, the items each consumed after it and not before."""

    history: sp.csr_matrix
    users: np.ndarray  # (U,) user_idx with held-out items
    pairs: sp.csr_matrix  # (U, items) bool: held-out items of each of `users`
    popularity: np.ndarray  # (items,) interactions before the cutoff

    @property
    def engagements(self) -> int:
        return int(self.pairs.nnz)

    @cached_property
    def seen(self) -> np.ndarray:
        """(U, items) bool, dense: what each held-out user consumed before the cutoff."""
        return self.history[self.users].toarray()

    @cached_property
    def positive(self) -> np.ndarray:
        """(U, items), dense: each held-out user's held-out items (counts, if the pairs repeat)."""
        return self.pairs.toarray()


def split(frame: pl.DataFrame, cutoff, n_users: int, n_items: int, *, seed: int) -> HeldOut:
    """The held-out engagements of `frame` (user_idx, item_idx, timestamp) from `cutoff` (a datetime) on."""
    from persotool.kernels.models.base import seen_matrix

    before = frame.filter(pl.col("timestamp") < cutoff)
    history = seen_matrix(before, n_users, n_items)
    after = frame.filter(pl.col("timestamp") >= cutoff).unique(["user_idx", "item_idx"])
    u, i = after["user_idx"].to_numpy(), after["item_idx"].to_numpy()
    new = ~np.asarray(history[u, i]).ravel().astype(bool) if len(u) else np.zeros(0, bool)
    known = np.asarray(history.getnnz(axis=1) > 0)[u] if len(u) else np.zeros(0, bool)
    u, i = u[new & known], i[new & known]  # users first seen after the cutoff have no taste to score
    users = np.unique(u)
    cap = max(MIN_USERS, MAX_CELLS // max(n_items * MAX_FEATURES, 1))
    if len(users) > cap:
        users = np.sort(np.random.default_rng(np.random.SeedSequence([seed, 83])).choice(users, cap, replace=False))
    keep = np.isin(u, users)
    rows = np.searchsorted(users, u[keep])
    pairs = sp.csr_matrix((np.ones(keep.sum(), bool), (rows, i[keep])), shape=(len(users), n_items))
    popularity = np.bincount(before["item_idx"].to_numpy(), minlength=n_items).astype(np.float64)
    return HeldOut(history=history, users=users, pairs=pairs, popularity=popularity)


def standardised(user_f: np.ndarray, item_f: np.ndarray, users: np.ndarray, seed: int) -> np.ndarray:
    """(users x items) affinities standardised over random (user, item) pairs of the whole log."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 89]))
    a, b = rng.integers(0, len(user_f), 20_000), rng.integers(0, len(item_f), 20_000)
    sample = np.einsum("nd,nd->n", user_f[a].astype(np.float64), item_f[b].astype(np.float64))
    scores = user_f[users].astype(np.float64) @ item_f.T.astype(np.float64)
    return ((scores - sample.mean()) / (sample.std() or 1.0)).astype(np.float32)


def ranking(scores: np.ndarray, held: HeldOut) -> tuple[float, float]:
    """Mean per-user AUC and NDCG@10 of the held-out items among the items each user had not
    consumed before the cutoff."""
    from scipy.stats import rankdata

    seen, pos = held.seen, held.positive
    s = np.where(seen, -np.inf, scores.astype(np.float64))
    ranks = rankdata(s, axis=1)  # ascending; the seen items take the lowest ranks
    n_seen, n_pos = seen.sum(axis=1), pos.sum(axis=1)
    n_neg = s.shape[1] - n_seen - n_pos
    pos_rank = np.where(pos, ranks - n_seen[:, None], 0).sum(axis=1)
    ok = (n_pos > 0) & (n_neg > 0)
    if not ok.any():
        return float("nan"), float("nan")
    auc = (pos_rank[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    k = min(NDCG_K, s.shape[1])
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, axis=1), axis=1), axis=1)
    gains = np.take_along_axis(pos, order, axis=1) / np.log2(np.arange(2, k + 2))
    ideal = np.array([(1 / np.log2(np.arange(2, min(int(n), k) + 2))).sum() for n in n_pos])
    ndcg = gains.sum(axis=1)[ok] / ideal[ok]
    return float(auc.mean()), float(ndcg.mean())


class ConditionalLogit:
    """Which unseen item a held-out engagement went to: P(j) proportional to exp(x_j . c) over the
    user's unseen items, x = (features..., log(1 + popularity)). The features' coefficients are
    kept >= 0 (affinities can only attract); log popularity's is free."""

    def __init__(self, features: list[np.ndarray], held: HeldOut) -> None:
        log_pop = np.log1p(held.popularity).astype(np.float32)
        self.x = [
            *features,
            np.broadcast_to(log_pop, features[0].shape if features else (len(held.users), len(log_pop))),
        ]
        self.mask = held.seen
        self.pos = held.positive
        self.n = float(self.pos.sum())
        self.observed = np.array([float((x * self.pos).sum()) for x in self.x])

    def nll(self, c: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean negative log-likelihood per engagement and its gradient."""
        logits = sum(ci * x for ci, x in zip(c, self.x, strict=True)).astype(np.float64)
        logits[self.mask] = -np.inf
        top = logits.max(axis=1, keepdims=True)
        w = np.exp(logits - top)
        norm = w.sum(axis=1, keepdims=True)
        lse = (top + np.log(norm)).ravel()
        p = w / norm
        per_user = self.pos.sum(axis=1)
        value = (per_user * lse).sum() - float(c @ self.observed)
        expected = np.array([float((per_user[:, None] * p * x).sum()) for x in self.x])
        return value / self.n, (expected - self.observed) / self.n

    def fit(self, fixed: dict[int, float] | None = None) -> tuple[np.ndarray, float]:
        """The maximum-likelihood coefficients (those in `fixed` held at their value) and the mean
        log-likelihood per engagement."""
        from scipy.optimize import minimize

        k = len(self.x)
        bounds = [(0.0, None)] * (k - 1) + [(None, None)]
        for j, value in (fixed or {}).items():
            bounds[j] = (value, value)
        start = np.array(
            [b[0] if b[0] is not None and b[0] == b[1] else (0.5 if j < k - 1 else 1.0) for j, b in enumerate(bounds)]
        )
        found = minimize(self.nll, start, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 200})
        return found.x, -float(found.fun)


def score_families(
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]],
    held: HeldOut,
    *,
    seed: int,
    affinity_weight: float,
    weights: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """One row per family (and the weighted mixture when `weights` is given, and popularity alone):
    AUC, NDCG@10, the log-likelihood gain per engagement over popularity, the supported affinity
    coefficient and the gain at the simulator's `affinity_weight`."""
    affinities = {f: standardised(u, v, held.users, seed) for f, (u, v) in embeddings.items()}
    if weights:  # standardised over random pairs as the world standardises it
        affinities["weighted mixture"] = standardised(*combine(embeddings, weights, seed), held.users, seed)
    popularity_only = ConditionalLogit([], held)
    _, base = popularity_only.fit()
    pop_auc, pop_ndcg = ranking(np.broadcast_to(held.popularity, held.pairs.shape), held)
    rows = [_row("popularity", pop_auc, pop_ndcg, 0.0, 0.0, 0.0, None)]
    for family, a in affinities.items():
        model = ConditionalLogit([a], held)
        coef, ll = model.fit()
        _, at_sim = model.fit(fixed={0: affinity_weight})
        auc, ndcg = ranking(a, held)
        rows.append(_row(family, auc, ndcg, ll - base, float(coef[0]), at_sim - base, (weights or {}).get(family)))
    return rows


def _row(family, auc, ndcg, gain, beta, gain_at_sim, weight) -> dict[str, Any]:
    return {
        "family": family,
        "auc": auc,
        f"ndcg@{NDCG_K}": ndcg,
        "loglik_gain": gain,
        "beta": beta,
        "loglik_gain_at_simulator": gain_at_sim,
        "weight": weight,
    }


def stack(embeddings: dict[str, tuple[np.ndarray, np.ndarray]], held: HeldOut, *, seed: int) -> dict[str, float]:
    """The families' mixture weights that maximise the held-out log-likelihood (equal weights when
    no family's affinity adds to popularity)."""
    families = list(embeddings)
    features = [standardised(u, v, held.users, seed) for u, v in embeddings.values()]
    coef, _ = ConditionalLogit(features, held).fit()
    c = np.clip(coef[: len(families)], 0, None)
    if c.sum() <= 1e-9:
        return {f: 1 / len(families) for f in families}
    return {f: float(x / c.sum()) for f, x in zip(families, c, strict=True)}


def auto_weights(
    window: pl.DataFrame, spec, n_users: int, n_items: int, seed: int, families: list[str], affinity_weight: float
) -> tuple[dict[str, float], dict[str, Any]]:
    """Mixture weights of `families` fitted on a time split inside the calibration `window` (its
    last 20% of time held out), and what the fit saw: the held-out users and engagements and each
    family's scores there (`score_families`). Too few held-out users, or no timestamps to split on:
    equal weights, with the reason."""
    skipped = {f: why for f in families if (why := too_large(f, n_users, n_items))}
    families = [f for f in families if f not in skipped]
    if not families:
        raise ConfigError("no truth family can be fitted to a log this size: " + "; ".join(skipped.values()))
    weights, info = _auto(window, spec, n_users, n_items, seed, families, affinity_weight)
    return weights, info | ({"skipped": skipped} if skipped else {})


def _auto(window, spec, n_users, n_items, seed, families, affinity_weight):
    equal = {f: 1 / len(families) for f in families}
    if len(families) == 1:
        return {families[0]: 1.0}, {"note": "one family"}
    times = window["timestamp"]
    lo, hi = times.min(), times.max()
    if lo is None or hi is None or hi <= lo:
        return equal, {"note": "the window has no time range to split: equal weights"}
    cut = lo + 0.8 * (hi - lo)
    held = split(window.select("user_idx", "item_idx", "timestamp"), cut, n_users, n_items, seed=seed)
    if len(held.users) < MIN_USERS:
        return equal, {
            "note": f"{len(held.users)} users consumed new items in the window's last 20%; "
            f"{MIN_USERS} or more are needed to weigh the families: equal weights"
        }
    embeddings = {f: family_factors(f, held.history, spec, seed) for f in families}
    weights = stack(embeddings, held, seed=seed)
    rows = score_families(embeddings, held, seed=seed, affinity_weight=affinity_weight, weights=weights)
    return weights, {"users": len(held.users), "engagements": held.engagements, "families": rows}
