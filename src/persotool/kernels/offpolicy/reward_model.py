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
    q_hat: np.ndarray  # (n, items, positions) float32, each impression's from the folds that did not see it
    factual: np.ndarray  # (n,) the prediction for the logged item at the logged position
    calibration: dict


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
) -> RewardModel:
    """Cross-fitted predictions for every impression, item and position; with `strength` None, the
    grid value whose cross-fitted predictions have the smallest held-out loss."""
    n = len(reward)
    binary = bool(np.isin(np.unique(reward), (0, 1)).all())
    design = _design(context, item, position, n_items, n_positions)
    fold = np.random.default_rng(seed).permutation(n) % folds
    best = None
    for c in STRENGTHS if strength is None else (strength,):
        q_hat = _cross_fit(design, context, reward, fold, folds, binary, c, n_items, n_positions)
        factual = q_hat[np.arange(n), item, position].astype(np.float64)
        fit = calibration(reward, factual, binary)
        if best is None or fit["held_out"] < best.calibration["held_out"]:
            best = RewardModel(q_hat, factual, fit | {"strength": c})
    return best


def _cross_fit(design, context, reward, fold, folds, binary, strength, n_items, n_positions) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression, Ridge

    n = len(reward)
    d = 0 if context is None else context.shape[1]
    q_hat = np.empty((n, n_items, n_positions), dtype=np.float32)
    for k in range(folds):
        train, test = fold != k, fold == k
        if binary and len(np.unique(reward[train])) < 2:
            q_hat[test] = float(reward[train].mean())
            continue
        if binary:
            model = LogisticRegression(C=strength, max_iter=1000).fit(design[train], reward[train])
        else:
            model = Ridge(alpha=1 / strength).fit(design[train], reward[train])
        coef = np.ravel(model.coef_)
        intercept = float(np.ravel(model.intercept_)[0])
        base = intercept + (context[test] @ coef[:d] if d else np.zeros(int(test.sum())))
        b_item, c_pos = coef[d : d + n_items], coef[d + n_items :]
        score = base[:, None, None] + b_item[None, :, None] + c_pos[None, None, :]
        q_hat[test] = 1 / (1 + np.exp(-score)) if binary else score
    return q_hat


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
