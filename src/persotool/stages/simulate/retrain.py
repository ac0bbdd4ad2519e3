"""The feedback loop's retraining, which the simulate stage hands the day loop as a callback: an
arm whose policy learns from data (a trained model, or most popular) is refitted on what its own
simulated users engaged with so far (see `kernels.simulation.feedback`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from persotool.kernels.simulation.feedback import Retrain, Scorer
from persotool.kernels.simulation.policies import same_for_everyone
from persotool.kernels.simulation.spec import ArmSpec, FeedbackSpec, SimulationConfig
from persotool.kernels.simulation.world import SimulatedWorld


def retrainer(cfg: SimulationConfig, dataset: Path | None) -> Retrain:
    """The callback the day loop calls to refit an arm; `dataset` gives retrained models their
    features."""

    def retrain(arm: ArmSpec, world: SimulatedWorld, matrix: sp.csr_matrix) -> Scorer:
        return refit(arm, world, matrix, cfg.feedback, dataset)[0]

    return retrain


def refit(
    arm: ArmSpec, world: SimulatedWorld, matrix: sp.csr_matrix, spec: FeedbackSpec, dataset: Path | None
) -> tuple[Scorer, dict[str, int]]:
    """The arm's policy refitted on `matrix`: a scorer of simulated users and what it trained."""
    if arm.policy == "popular":
        return same_for_everyone(np.asarray(matrix.sum(axis=0)).ravel(), world.n_items), {}
    from persotool.kernels.models.features import feature_matrix
    from persotool.kernels.models.registry import build
    from persotool.kernels.storage import read_artifact

    manifest = read_artifact(arm.model, "model")
    params = dict(manifest["params"])
    info: dict[str, int] = {}
    if "epochs" in params:
        params["epochs"] = spec.epochs or int(manifest.get("epochs_kept") or params["epochs"])
        info["epochs"] = params["epochs"]
    model = build(manifest["model"], params)
    item_features = user_features = None
    if params.get("use_features") and dataset is not None:
        item_features, _ = feature_matrix(dataset, "item", world.n_items)
        user_features, _ = feature_matrix(dataset, "user", matrix.shape[0])
    model.fit(matrix, item_features=item_features, user_features=user_features)
    return lambda users: model.score(world.source_user[users]), info
