"""Hyperparameters of every model, with their types and bounds: checked before anything trains, and
again when a saved model is loaded, so a NaN, a negative size or a zero thread count never reaches
a learner."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SEED_MAX = 2**32 - 1


class Hyperparameters(BaseModel):
    """Shared by all models: the seed of everything random in training."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seed: int = Field(0, ge=0, le=SEED_MAX, description="seed of everything random in training")


class RandomParams(Hyperparameters):
    pass


class PopularParams(Hyperparameters):
    window_days: float | None = Field(None, gt=0, description="count only the last N days of training (None: all)")


class ItemKNNParams(Hyperparameters):
    neighbors: int = Field(100, ge=1, description="similar items kept per item")
    shrinkage: float = Field(10.0, ge=0, description="shrinks similarities built on few co-occurrences")
    binary: bool = Field(True, description="ignore interaction weights")


class EASEParams(Hyperparameters):
    l2: float = Field(500.0, gt=0, description="L2 regularisation of the item-item weights")
    binary: bool = Field(True, description="ignore interaction weights")


class ALSParams(Hyperparameters):
    factors: int = Field(64, ge=1, le=4096, description="latent dimensions")
    regularization: float = Field(0.05, ge=0, description="L2 regularisation")
    alpha: float = Field(2.0, gt=0, description="confidence scaling of the interaction weights")
    iterations: int = Field(15, ge=1, le=10_000, description="alternating least-squares sweeps")
    num_threads: int = Field(1, ge=1, le=1024, description="threads (one gives reproducible results)")


class BPRParams(Hyperparameters):
    factors: int = Field(64, ge=1, le=4096, description="latent dimensions")
    learning_rate: float = Field(0.05, gt=0, description="SGD step size")
    regularization: float = Field(0.01, ge=0, description="L2 regularisation")
    iterations: int = Field(100, ge=1, le=100_000, description="SGD epochs")
    num_threads: int = Field(1, ge=1, le=1024, description="threads (one gives reproducible results)")


class LightFMParams(Hyperparameters):
    loss: Literal["warp", "bpr", "logistic", "warp-kos"] = Field("warp", description="training loss")
    components: int = Field(64, ge=1, le=4096, description="latent dimensions")
    learning_rate: float = Field(0.05, gt=0, le=10, description="SGD step size")
    item_alpha: float = Field(1e-6, ge=0, description="L2 penalty on item features")
    user_alpha: float = Field(1e-6, ge=0, description="L2 penalty on user features")
    max_sampled: int = Field(10, ge=1, description="negatives tried per positive (warp losses)")
    epochs: int = Field(30, ge=1, le=100_000, description="training epochs (early stopping may keep fewer)")
    k: int = Field(5, ge=1, description="k of the warp-kos loss")
    patience: int = Field(5, ge=1, description="epochs without validation gain before stopping")
    use_features: bool = Field(True, description="use user/item features beside the identity columns")
    num_threads: int = Field(1, ge=1, le=1024, description="threads (one gives reproducible results)")
