"""Model names as used in configs and on the command line."""

from __future__ import annotations

from persotool.kernels.models.base import Recommender
from persotool.kernels.models.factorization import ALS, BPR, LightFMModel
from persotool.kernels.models.neighbors import EASE, ItemKNN
from persotool.kernels.models.popularity import MostPopular, RandomModel

MODELS: dict[str, type[Recommender]] = {
    model.name: model for model in (RandomModel, MostPopular, ItemKNN, EASE, ALS, BPR, LightFMModel)
}
