"""How much two models' top-k lists for the same users differ: per user, the Jaccard similarity of
the two sets and the rank-biased overlap of the two rankings (Webber, Moffat and Zobel 2010, the
extrapolated RBO of their equation 32, persistence p: 1 for identical lists, 0 for disjoint ones)."""

from __future__ import annotations

import numpy as np

RBO_PERSISTENCE = 0.9


def jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, |A & B| / |A | B| of the items in each row (-1 marks no item)."""
    out = np.empty(len(a))
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        s, t = set(x[x >= 0].tolist()), set(y[y >= 0].tolist())
        union = len(s | t)
        out[i] = len(s & t) / union if union else 1.0
    return out


def rbo(a: np.ndarray, b: np.ndarray, p: float = RBO_PERSISTENCE) -> np.ndarray:
    """Per row, the extrapolated rank-biased overlap of two rankings of equal depth k:
    RBO = (X_k / k) p^k + (1 - p) / p * sum_{d=1..k} (X_d / d) p^d, with X_d the overlap of the two
    top-d prefixes."""
    k = a.shape[1]
    depths = np.arange(1, k + 1)
    weights = (1 - p) / p * p**depths
    out = np.empty(len(a))
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        seen_x: set[int] = set()
        seen_y: set[int] = set()
        overlap, agreement = 0, np.empty(k)
        for d in range(k):
            u, v = int(x[d]), int(y[d])
            if u == v:
                overlap += 1 if u >= 0 else 0
            else:
                overlap += (u in seen_y) + (v in seen_x)
            seen_x.add(u)
            seen_y.add(v)
            agreement[d] = overlap / (d + 1)
        out[i] = agreement[-1] * p**k + float(weights @ agreement)
    return out
