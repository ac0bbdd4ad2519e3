"""Why a model recommends an item to a user: the reasons each model can honestly give, as
contributions that add up to the score they explain.

- popular: the item's popularity (its score is its training count), and its rank;
- itemknn, ease: score(u, i) = sum over the user's history items j of history(u, j) x W(j, i), W
  the item-item similarity (itemknn) or weight matrix (ease): each history item's term, exactly;
- als: the user's factors refolded by ALS's closed-form user solve from their history,
  x_u = (Y'Y + sum_j (c_uj - 1) y_j y_j' + lambda I)^-1 sum_j c_uj y_j with confidence
  c_uj = alpha x weight (implicit's), so the refolded score sum_j c_uj y_j' W_u y_i splits into one
  term per history item (the stored factors come from implicit's conjugate-gradient steps before
  the last item update, so the explained score differs somewhat from the model's: both are
  reported);
- bpr, lightfm: the user's factors projected on their history items' factors (ridge least
  squares); each history item's term a_j (y_j . y_i), the item's bias, and what the history does not
  explain (the remainder), which together add up to the model's score exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

PROJECTION_RIDGE = 1e-3  # relative to the mean squared norm of the history items' factors


@dataclass
class Explanation:
    item: int
    score: float  # the model's score
    explained: float  # the sum of the reasons' contributions (equal to score unless said)
    reasons: list[dict]  # {"kind", "item" (history item index or None), "contribution"}, largest first


def explain(model, user: int, items: np.ndarray, *, history: sp.csr_matrix | None = None, top: int = 5):
    """Explanations of `items` for `user` (indices of the model's dataset). `history` is the
    training matrix with weights (ALS needs the weights; others use the model's own history)."""
    name = getattr(model, "name", type(model).__name__)
    scores = model.score(np.array([user]))[0]
    if name == "popular":
        order = np.argsort(-model.counts_, kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(1, len(order) + 1)
        return [
            Explanation(
                int(i),
                float(scores[i]),
                float(scores[i]),
                [
                    {
                        "kind": f"popularity: rank {rank[i]:,} of {len(rank):,}",
                        "item": None,
                        "contribution": float(scores[i]),
                    }
                ],
            )
            for i in items
        ]
    if name in ("itemknn", "ease"):
        return [_neighbour(model, name, user, int(i), float(scores[i]), top) for i in items]
    if name == "random":
        return [
            Explanation(
                int(i),
                float(scores[i]),
                float(scores[i]),
                [{"kind": "a random order: no reason", "item": None, "contribution": float(scores[i])}],
            )
            for i in items
        ]
    if name == "als":
        if history is None:
            raise ValueError("als explanations need the training matrix (its weights set the confidence)")
        return _als(model, user, items, scores, history, top)
    return _projected(model, user, items, scores, top)


def _top(terms: dict[int, float], top: int) -> list[dict]:
    ordered = sorted(terms.items(), key=lambda kv: -abs(kv[1]))
    return [{"kind": "history item", "item": int(j), "contribution": float(c)} for j, c in ordered[:top]]


def _neighbour(model, name: str, user: int, item: int, score: float, top: int) -> Explanation:
    row = model.history_[user]
    hist, weight = row.indices, row.data.astype(np.float64)
    if name == "itemknn":
        column = np.asarray(model.similarity_[:, item].todense()).ravel()
        terms = weight * column[hist]
    else:
        where = np.searchsorted(model.active_, item)
        terms = np.zeros(len(hist))
        if where < len(model.active_) and model.active_[where] == item:
            at = np.searchsorted(model.active_, hist)
            inside = (at < len(model.active_)) & (model.active_[np.minimum(at, len(model.active_) - 1)] == hist)
            terms[inside] = weight[inside] * model.weights_[at[inside], where]
    contributions = {int(j): float(t) for j, t in zip(hist, terms, strict=True) if t != 0}
    reasons = _top(contributions, top)
    rest = float(terms.sum()) - sum(r["contribution"] for r in reasons)
    if len(contributions) > top:
        reasons.append({"kind": f"{len(contributions) - top} more history items", "item": None, "contribution": rest})
    return Explanation(item, score, float(terms.sum()), reasons)


def als_user_solve(model, hist: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(W_u, c_u): ALS's closed-form user solve from a history (items, weights)."""
    y = model.item_factors_.astype(np.float64)
    c = model.alpha * weight  # implicit's confidence: alpha x the training weight
    yh = y[hist]
    gram = y.T @ y + (yh * (c - 1.0)[:, None]).T @ yh + model.regularization * np.eye(y.shape[1])
    return np.linalg.inv(gram), c


def _als(model, user, items, scores, history: sp.csr_matrix, top: int) -> list[Explanation]:
    row = history[user]
    hist, weight = row.indices, row.data.astype(np.float64)
    inverse, c = als_user_solve(model, hist, weight)
    y = model.item_factors_.astype(np.float64)
    out = []
    for i in items:
        terms = c * (y[hist] @ (inverse @ y[i]))
        reasons = _top({int(j): float(t) for j, t in zip(hist, terms, strict=True)}, top)
        if len(hist) > top:
            rest = float(terms.sum()) - sum(r["contribution"] for r in reasons)
            reasons.append({"kind": f"{len(hist) - top} more history items", "item": None, "contribution": rest})
        out.append(Explanation(int(i), float(scores[i]), float(terms.sum() + model.item_bias_[i]), reasons))
    return out


def _projected(model, user, items, scores, top: int) -> list[Explanation]:
    x = model.user_factors_[user].astype(np.float64)
    y = model.item_factors_.astype(np.float64)
    hist = model.seen_[user].indices
    yh = y[hist]
    if len(hist):
        ridge = PROJECTION_RIDGE * float((yh * yh).sum(axis=1).mean())
        a = np.linalg.solve(yh @ yh.T + ridge * np.eye(len(hist)), yh @ x)
    else:
        a = np.zeros(0)
    out = []
    for i in items:
        terms = a * (yh @ y[i])
        reasons = _top({int(j): float(t) for j, t in zip(hist, terms, strict=True)}, top)
        if len(hist) > top:
            rest = float(terms.sum()) - sum(r["contribution"] for r in reasons)
            reasons.append({"kind": f"{len(hist) - top} more history items", "item": None, "contribution": rest})
        bias = float(model.item_bias_[i])
        if bias:
            reasons.append({"kind": "item bias", "item": None, "contribution": bias})
        remainder = float(scores[i]) - float(terms.sum()) - bias
        reasons.append({"kind": "not explained by the history", "item": None, "contribution": remainder})
        out.append(Explanation(int(i), float(scores[i]), float(scores[i]), reasons))
    return out
