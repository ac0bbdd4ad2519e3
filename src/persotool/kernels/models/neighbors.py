"""Item-based collaborative filtering: ItemKNN (sparse cosine with shrinkage) and EASE."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from persotool.errors import ModelError
from persotool.kernels.models.base import Recommender, TrainingContext
from persotool.kernels.models.hyperparameters import EASEParams, ItemKNNParams


class ItemKNN(Recommender):
    """score(u, j) = sum over items i of u of sim(i, j), where sim is the cosine similarity of the
    item columns shrunk towards zero, sim(i, j) = <x_i, x_j> / (|x_i| |x_j| + shrinkage), and only
    the `neighbors` most similar items j are kept for each item i."""

    name: ClassVar[str] = "itemknn"
    params_model = ItemKNNParams
    array_names: ClassVar[tuple[str, ...]] = ("similarity_", "history_")

    def expected_shapes(self) -> dict[str, tuple[int | None, ...]]:
        return {"similarity_": (self.n_items_, self.n_items_), "history_": (self.n_users_, self.n_items_)}

    def __init__(self, neighbors: int = 100, shrinkage: float = 10.0, binary: bool = True, seed: int = 0) -> None:
        super().__init__(seed)
        if neighbors < 1 or shrinkage < 0:
            raise ModelError("itemknn needs neighbors >= 1 and shrinkage >= 0")
        self.neighbors = neighbors
        self.shrinkage = shrinkage
        self.binary = binary

    def _fit(self, train: sp.csr_matrix, item_features, user_features, context: TrainingContext) -> None:
        x = _history(train, self.binary)
        self.history_ = x
        xc = x.tocsc().astype(np.float64)
        norms = np.sqrt(np.asarray(xc.multiply(xc).sum(axis=0)).ravel())
        gram = (xc.T @ xc).tocoo()
        off = gram.row != gram.col
        rows, cols, dots = gram.row[off], gram.col[off], gram.data[off]
        sims = dots / (norms[rows] * norms[cols] + self.shrinkage + 1e-12)
        sim = sp.csr_matrix((sims, (rows, cols)), shape=gram.shape)
        self.similarity_ = _keep_top_per_row(sim, self.neighbors).astype(np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self.history_[users] @ self.similarity_).todense(), dtype=np.float32)


def _history(train: sp.csr_matrix, binary: bool) -> sp.csr_matrix:
    """The users' training items these models score from: weights, or 1 per item when binary."""
    x = sp.csr_matrix(train, dtype=np.float32, copy=True)
    if binary:
        x.data[:] = 1.0
    return x


def _keep_top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    matrix = matrix.tocsr()
    matrix.sort_indices()
    lengths = np.diff(matrix.indptr)
    if lengths.max(initial=0) <= k:
        return matrix
    keep = np.ones(matrix.nnz, dtype=bool)
    for row in np.flatnonzero(lengths > k):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        values = matrix.data[lo:hi]
        drop = np.argpartition(-values, k)[k:]
        keep[lo + drop] = False
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)
    return sp.csr_matrix((matrix.data[keep], (rows[keep], matrix.indices[keep])), shape=matrix.shape)


class EASE(Recommender):
    """Embarrassingly Shallow Autoencoder (Steck, 2019): B = I - P diagMat(1/diag(P)) with
    P = (X^T X + l2 I)^-1 and a zero diagonal; score(u) = x_u B. B is computed and stored for the
    items that occur in training only (the others have zero rows and columns); memory grows with
    their number squared."""

    name: ClassVar[str] = "ease"
    params_model = EASEParams
    array_names: ClassVar[tuple[str, ...]] = ("weights_", "active_", "history_")

    def expected_shapes(self) -> dict[str, tuple[int | None, ...]]:
        active = len(self.active_)
        if active and not (self.active_.min() >= 0 and self.active_.max() < self.n_items_):
            raise ModelError("array active_ holds item indices outside the model's items")
        return {"weights_": (active, active), "active_": (active,), "history_": (self.n_users_, self.n_items_)}

    max_items: ClassVar[int] = 30_000

    def __init__(self, l2: float = 500.0, binary: bool = True, seed: int = 0) -> None:
        super().__init__(seed)
        if l2 <= 0:
            raise ModelError("ease needs l2 > 0")
        self.l2 = l2
        self.binary = binary

    def _fit(self, train: sp.csr_matrix, item_features, user_features, context: TrainingContext) -> None:
        x = _history(train, self.binary)
        self.history_ = x
        # Items never seen in training have empty columns: their rows and columns of B are zero,
        # so only the active items need the (cubic) inversion.
        active = np.flatnonzero(x.getnnz(axis=0) > 0)
        n_active = len(active)
        if n_active > self.max_items:
            gib = n_active**2 * 8 / 2**30
            raise ModelError(
                f"ease needs a dense {n_active} x {n_active} matrix (~{gib:.0f} GiB); keep fewer items "
                "(split with a higher minimum of interactions per item) or use itemknn"
            )
        sub = x[:, active]
        gram = (sub.T @ sub).toarray().astype(np.float64)
        gram[np.diag_indices(n_active)] += self.l2
        inverse = np.linalg.inv(gram)
        block = -inverse / np.diag(inverse)
        block[np.diag_indices(n_active)] = 0.0
        self.weights_ = block.astype(np.float32)
        self.active_ = active

    def _score(self, users: np.ndarray) -> np.ndarray:
        out = np.zeros((len(users), self.n_items_), dtype=np.float32)
        out[:, self.active_] = self.history_[users][:, self.active_] @ self.weights_
        return out
