"""The reward model of the model-based estimators (DM, DR and its variants): q_hat(x, a, p), the
expected reward of item a at position p in context x, fitted with cross-fitting so that no
impression's prediction comes from a model that saw it (Chernozhukov et al. 2018; OBP's
`fit_predict(n_folds=...)`).

The model is additive on the logit (binary rewards: a logistic regression) or on the reward itself
(other rewards: ridge regression): logit q = x . beta + b_item + c_position, with L2 regularisation
whose strength is chosen from a grid by the cross-fitted loss (`strength=None`; a sparse log, 40
clicks in 10,000 impressions, needs far more than a rich one).
Additivity means predictions for every (impression, item, position) come from three small pieces,
without a design row per combination. Its held-out calibration is reported: log loss (or squared
error) against the base rate's, and a reliability table of predicted against observed reward in ten
bins of the prediction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RewardModel:
    """Cross-fitted predictions kept as their additive pieces: q(x, a, p) for impression i is
    link(base_i + b_item[fold_i, a] + c_pos[fold_i, p]), where base_i (intercept + context score)
    and the item and position terms come from the fold that did not see i. `q(rows)` builds the
    predictions of a block of impressions on demand, so no (impressions, items, positions) array
    need exist."""

    base: np.ndarray  # (n,)
    b_item: np.ndarray  # (folds, items)
    c_pos: np.ndarray  # (folds, positions)
    fold: np.ndarray  # (n,)
    binary: bool
    factual: np.ndarray  # (n,) the prediction for the logged item at the logged position
    calibration: dict

    def q(self, rows) -> np.ndarray:
        """(len(rows), items, positions) predictions of these impressions (a slice or indices)."""
        f = self.fold[rows]
        score = self.base[rows][:, None, None] + self.b_item[f][:, :, None] + self.c_pos[f][:, None, :]
        return 1 / (1 + np.exp(-score)) if self.binary else score

    @property
    def q_hat(self) -> np.ndarray:
        """Every prediction at once (small logs; float32)."""
        return self.q(slice(None)).astype(np.float32)


SELECT_ROWS = 200_000  # the strength is chosen on a sample of this many impressions, then refitted on all


def _design(context: np.ndarray | None, item: np.ndarray, position: np.ndarray, n_items: int, n_pos: int):
    from scipy import sparse

    n = len(item)
    rows = np.arange(n)
    parts = [
        sparse.csr_matrix((np.ones(n), (rows, item)), shape=(n, n_items)),
        sparse.csr_matrix((np.ones(n), (rows, position)), shape=(n, n_pos)),
    ]
    if context is not None and context.shape[1]:
        parts.insert(0, sparse.csr_matrix(context))
    return sparse.hstack(parts, format="csr")


def features(table, columns: list[str]) -> np.ndarray | None:
    """The context columns of an impression table (polars) as the model's features: numeric ones
    standardised (missing values at the mean), text ones one-hot (missing as its own category)."""
    import polars as pl

    if not columns:
        return None
    parts = []
    for c in columns:
        col = table[c]
        if col.dtype == pl.String:
            parts.append(col.fill_null("(missing)").to_frame().to_dummies().to_numpy().astype(np.float64))
        else:
            x = col.fill_null(col.mean()).to_numpy().astype(np.float64)
            sd = x.std()
            parts.append(((x - x.mean()) / (sd if sd > 0 else 1.0))[:, None])
    return np.hstack(parts)


STRENGTHS = (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0)  # inverse regularisation (sklearn's C) tried when none is given


def fit_predict(
    context: np.ndarray | None,
    item: np.ndarray,
    position: np.ndarray,
    reward: np.ndarray,
    n_items: int,
    n_positions: int,
    *,
    folds: int = 3,
    seed: int = 0,
    strength: float | None = None,
    select_rows: int = SELECT_ROWS,
) -> RewardModel:
    """Cross-fitted predictions for every impression, item and position; with `strength` None, the
    grid value whose cross-fitted predictions have the smallest held-out loss (chosen on a sample
    of `select_rows` impressions when the log is larger, then refitted on all of it)."""
    n = len(reward)
    binary = bool(np.isin(np.unique(reward), (0, 1)).all())
    rng = np.random.default_rng(seed)
    if strength is None:
        sample = np.sort(rng.choice(n, select_rows, replace=False)) if n > select_rows else np.arange(n)
        ctx = None if context is None else context[sample]
        best_loss = np.inf
        for c in STRENGTHS:
            fit = _cross_fit(
                ctx, item[sample], position[sample], reward[sample], n_items, n_positions, folds, seed, binary, c
            )
            if fit.calibration["held_out"] < best_loss:
                best_loss, strength, best = fit.calibration["held_out"], c, fit
        if len(sample) == n:
            return best
    return _cross_fit(context, item, position, reward, n_items, n_positions, folds, seed, binary, strength)


def _cross_fit(context, item, position, reward, n_items, n_positions, folds, seed, binary, strength) -> RewardModel:
    from sklearn.linear_model import LogisticRegression, Ridge

    n = len(reward)
    design = _design(context, item, position, n_items, n_positions)
    fold = np.random.default_rng(seed).permutation(n) % folds
    d = 0 if context is None else context.shape[1]
    base = np.empty(n)
    b_item, c_pos = np.zeros((folds, n_items)), np.zeros((folds, n_positions))
    for k in range(folds):
        train, test = fold != k, fold == k
        if binary and len(np.unique(reward[train])) < 2:
            rate = min(max(float(reward[train].mean()), 1e-12), 1 - 1e-12)
            base[test] = np.log(rate / (1 - rate))
            continue
        if binary:
            model = LogisticRegression(C=strength, max_iter=1000).fit(design[train], reward[train])
        else:
            model = Ridge(alpha=1 / strength).fit(design[train], reward[train])
        coef = np.ravel(model.coef_)
        base[test] = float(np.ravel(model.intercept_)[0]) + (context[test] @ coef[:d] if d else 0.0)
        b_item[k], c_pos[k] = coef[d : d + n_items], coef[d + n_items :]
    score = base + b_item[fold, item] + c_pos[fold, position]
    factual = 1 / (1 + np.exp(-score)) if binary else score
    fit = calibration(reward, factual, binary) | {"strength": strength}
    return RewardModel(base, b_item, c_pos, fold, binary, factual, fit)


def calibration(reward: np.ndarray, predicted: np.ndarray, binary: bool, bins: int = 10) -> dict:
    """Held-out fit: loss against the base rate's, and predicted against observed by bins of the
    prediction (quantile bins; ties kept together)."""
    reward = reward.astype(np.float64)
    base = reward.mean()
    if binary:
        p = np.clip(predicted, 1e-12, 1 - 1e-12)
        b = np.clip(base, 1e-12, 1 - 1e-12)
        loss = float(-np.mean(reward * np.log(p) + (1 - reward) * np.log(1 - p)))
        base_loss = float(-np.mean(reward * np.log(b) + (1 - reward) * np.log(1 - b)))
        kind = "log loss"
    else:
        loss = float(np.mean((reward - predicted) ** 2))
        base_loss = float(np.mean((reward - base) ** 2))
        kind = "squared error"
    edges = np.unique(np.quantile(predicted, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, predicted, side="right") - 1, 0, max(len(edges) - 2, 0))
    table = []
    for b_ in range(max(len(edges) - 1, 1)):
        inside = which == b_
        if inside.any():
            table.append(
                {
                    "bin": b_ + 1,
                    "impressions": int(inside.sum()),
                    "predicted": float(predicted[inside].mean()),
                    "observed": float(reward[inside].mean()),
                }
            )
    return {"loss": kind, "held_out": loss, "base_rate": base_loss, "gain": base_loss - loss, "reliability": table}
