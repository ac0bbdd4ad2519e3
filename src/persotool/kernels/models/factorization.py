"""Matrix factorization through outside learners, kept as plain numpy embeddings (LensKit-style
bridges): ALS and BPR from `implicit`, and LightFM with user and item features."""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from persotool.errors import ModelError
from persotool.kernels.models.base import Recommender, TrainingContext
from persotool.kernels.models.hyperparameters import ALSParams, BPRParams, LightFMParams

LIGHTFM_LOSSES = ("warp", "bpr", "logistic", "warp-kos")


class _Embeddings(Recommender):
    """score(u, i) = user_factors[u] . item_factors[i] + item_bias[i]."""

    array_names: ClassVar[tuple[str, ...]] = ("user_factors_", "item_factors_", "item_bias_")

    def expected_shapes(self) -> dict[str, tuple[int | None, ...]]:
        factors = self.user_factors_.shape[1] if getattr(self, "user_factors_", np.zeros((0, 0))).ndim == 2 else None
        return {
            "user_factors_": (self.n_users_, factors),
            "item_factors_": (self.n_items_, factors),
            "item_bias_": (self.n_items_,),
        }

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors_[users] @ self.item_factors_.T + self.item_bias_

    def _take(self, model) -> None:
        """The factors of an `implicit` model, as this model's arrays."""
        self.user_factors_ = np.array(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.array(model.item_factors, dtype=np.float32)
        self.item_bias_ = np.zeros(self.n_items_, dtype=np.float32)

    def _epoch(self, model, context: TrainingContext, epoch: int, metrics: dict[str, float]) -> None:
        """Tell the context about an `implicit` iteration, validated when it asks for that: at
        most 20 times over the training (each costs a full validation), and after the last one."""
        total = getattr(self, "iterations", 1)
        every = max(1, total // 20)
        due = (epoch + 1) % every == 0 or epoch + 1 == total
        if context.validate is not None and context.validate_each_epoch and due:
            self._take(model)
            metrics[context.valid_key] = float(context.validate(self))
        if metrics:
            context.epoch(epoch, metrics)


def _implicit_threads(num_threads: int) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return max(num_threads, 1)


class ALS(_Embeddings):
    """Implicit-feedback ALS (Hu, Koren and Volinsky 2008) through `implicit`; confidence is
    1 + alpha * weight. Records the training loss of every iteration."""

    name: ClassVar[str] = "als"
    params_model = ALSParams

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        num_threads: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.num_threads = iterations, num_threads

    def _fit(self, train: sp.csr_matrix, item_features, user_features, context: TrainingContext) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            calculate_training_loss=True,
            num_threads=_implicit_threads(self.num_threads),
            random_state=self.seed,
        )

        def record(iteration: int, elapsed: float, loss: float) -> None:
            self._epoch(model, context, iteration, {"train_loss": float(loss)})

        model.fit(train.astype(np.float32), show_progress=False, callback=record)
        self._take(model)


class BPR(_Embeddings):
    """Bayesian Personalized Ranking (Rendle et al. 2009) through `implicit`."""

    name: ClassVar[str] = "bpr"
    params_model = BPRParams

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        num_threads: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        self.factors, self.learning_rate, self.regularization = factors, learning_rate, regularization
        self.iterations, self.num_threads = iterations, num_threads

    def _fit(self, train: sp.csr_matrix, item_features, user_features, context: TrainingContext) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            num_threads=_implicit_threads(self.num_threads),
            random_state=self.seed,
        )
        binary = train.copy()
        binary.data[:] = 1.0

        def record(iteration: int, *_progress) -> None:
            self._epoch(model, context, iteration, {})

        model.fit(binary.astype(np.float32), show_progress=False, callback=record)
        # implicit appends a bias column to the item factors and a constant 1 to the user factors
        self._take(model)


class LightFMModel(_Embeddings):
    """LightFM (Kula 2015) hybrid factorization with optional user/item features (an identity
    column per user/item is always kept, so features add to, not replace, collaborative signal).

    Trains one epoch at a time; after each epoch it records a sampled pairwise training loss
    (mean softplus(s_neg - s_pos) over a fixed sample of training pairs with random negatives) and,
    with a validation callback, the validation metric, keeping the representations of the best
    epoch and stopping after `patience` epochs without improvement. Items without interactions
    but with features are scored through their features (cold-start items)."""

    name: ClassVar[str] = "lightfm"
    params_model = LightFMParams

    def __init__(
        self,
        loss: str = "warp",
        components: int = 64,
        learning_rate: float = 0.05,
        item_alpha: float = 1e-6,
        user_alpha: float = 1e-6,
        max_sampled: int = 10,
        epochs: int = 30,
        k: int = 5,
        patience: int = 5,
        use_features: bool = True,
        num_threads: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        if loss not in LIGHTFM_LOSSES:
            raise ModelError(f"lightfm loss {loss!r} is not one of {', '.join(LIGHTFM_LOSSES)}")
        self.loss, self.components, self.learning_rate = loss, components, learning_rate
        self.item_alpha, self.user_alpha, self.max_sampled = item_alpha, user_alpha, max_sampled
        self.epochs, self.k, self.patience = epochs, k, patience
        self.use_features, self.num_threads = use_features, num_threads

    @staticmethod
    def _with_identity(features: sp.csr_matrix | None, n: int, use: bool) -> sp.csr_matrix:
        identity = sp.identity(n, format="csr", dtype=np.float32)
        if features is None or not use or features.shape[1] == 0:
            return identity
        if features.shape[0] != n:
            raise ModelError(f"feature matrix has {features.shape[0]} rows, expected {n}")
        extra = sp.csr_matrix(features, dtype=np.float32)
        # LightFM recommends rows that sum to one when features are combined
        combined = sp.hstack([identity, extra]).tocsr()
        sums = np.asarray(combined.sum(axis=1)).ravel()
        return sp.diags(1.0 / np.maximum(sums, 1e-12)).dot(combined).tocsr().astype(np.float32)

    def _fit(self, train: sp.csr_matrix, item_features, user_features, context: TrainingContext) -> None:
        from lightfm import LightFM

        valid = context.validate

        item_x = self._with_identity(item_features, self.n_items_, self.use_features)
        user_x = self._with_identity(user_features, self.n_users_, self.use_features)
        binary = sp.coo_matrix(train)
        binary.data = np.ones_like(binary.data, dtype=np.float32)
        model = LightFM(
            no_components=self.components,
            loss=self.loss,
            learning_rate=self.learning_rate,
            item_alpha=self.item_alpha,
            user_alpha=self.user_alpha,
            max_sampled=self.max_sampled,
            k=self.k,
            random_state=np.random.RandomState(self.seed),
        )
        rng = np.random.default_rng([self.seed, 7])
        sample = rng.choice(binary.nnz, size=min(binary.nnz, 20_000), replace=False)
        pairs = (binary.row[sample], binary.col[sample], rng.integers(0, self.n_items_, size=len(sample)))
        best, best_epoch, waited = -np.inf, -1, 0
        for epoch in range(self.epochs):
            model.fit_partial(
                binary, user_features=user_x, item_features=item_x, epochs=1, num_threads=self.num_threads
            )
            self._take(model, user_x, item_x)
            metrics = {"train_loss": self._pair_loss(*pairs)}
            if valid is not None:
                score = metrics[context.valid_key] = float(valid(self))
                if score > best:
                    best, best_epoch, waited = score, epoch, 0
                    kept = (self.user_factors_.copy(), self.item_factors_.copy(), self.item_bias_.copy())
                else:
                    waited += 1
            context.epoch(epoch, metrics)
            if valid is not None and waited >= self.patience:
                break
        if valid is not None and best_epoch >= 0:
            self.user_factors_, self.item_factors_, self.item_bias_ = kept
        self.best_epoch_ = np.array(best_epoch if valid is not None else self.epochs - 1)

    def _take(self, model, user_x: sp.csr_matrix, item_x: sp.csr_matrix) -> None:
        _, user_emb = model.get_user_representations(user_x)
        item_bias, item_emb = model.get_item_representations(item_x)
        self.user_factors_ = np.asarray(user_emb, dtype=np.float32)
        self.item_factors_ = np.asarray(item_emb, dtype=np.float32)
        self.item_bias_ = np.asarray(item_bias, dtype=np.float32)

    def _pair_loss(self, users: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> float:
        u = self.user_factors_[users]
        pos = (u * self.item_factors_[positives]).sum(axis=1) + self.item_bias_[positives]
        neg = (u * self.item_factors_[negatives]).sum(axis=1) + self.item_bias_[negatives]
        return float(np.mean(np.logaddexp(0.0, neg - pos)))
