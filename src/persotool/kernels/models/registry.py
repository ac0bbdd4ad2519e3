"""The models by the names configs and the command line use, how to build one from its name and
hyperparameters, and how to load a saved one (which needs to know every model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from persotool import __version__
from persotool.errors import ConfigError, ModelError
from persotool.kernels.models.base import (
    FORMAT_VERSION,
    Recommender,
    expected_members,
    finite,
    read_members,
    verify_files,
)
from persotool.kernels.models.factorization import ALS, BPR, LightFMModel
from persotool.kernels.models.neighbors import EASE, ItemKNN
from persotool.kernels.models.popularity import MostPopular, RandomModel

MODELS: dict[str, type[Recommender]] = {
    model.name: model for model in (RandomModel, MostPopular, ItemKNN, EASE, ALS, BPR, LightFMModel)
}


def build(name: str, params: dict[str, Any]) -> Recommender:
    """A model from its registry name and hyperparameters, with one clear line for a bad one."""
    from persotool.kernels.config import validate

    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    cls = MODELS[name]
    accepted = set(cls.params_model.model_fields)
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(f"{name} has no parameter {unknown[0]!r}; its parameters: {', '.join(sorted(accepted))}")
    checked = validate(cls.params_model, params, where=f"{name} parameters")
    return cls(**checked.model_dump())


def load(path: Path) -> Recommender:
    """Load a model directory written by `Recommender.save` (arrays only, never pickle). The files
    must match the digests in its manifest, and arrays.npz must hold exactly the arrays model.json
    declares, with their dtypes and shapes, all finite."""
    path = Path(path)
    where = str(path)
    meta_path = path / "model.json"
    if not meta_path.is_file():
        raise ModelError("is not a model directory (no model.json)", where=where)
    verify_files(path, where)
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"model.json is not valid JSON ({exc})", where=where) from None
    if not isinstance(meta, dict):
        raise ModelError("model.json is not a JSON object", where=where)
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"was saved in model format {version}; this persotool ({__version__}) reads format "
            f"{FORMAT_VERSION}: train it again",
            where=where,
        )
    name = meta.get("model")
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})", where=where)
    cls = MODELS[name]
    n_users, n_items, declared = meta.get("n_users"), meta.get("n_items"), meta.get("arrays")
    if not all(isinstance(n, int) and n >= 0 for n in (n_users, n_items)) or not isinstance(declared, dict):
        raise ModelError("model.json lacks n_users, n_items or its array declarations; train it again", where=where)
    try:
        model = cls._restore(meta.get("params") or {})
    except ModelError as exc:
        raise ModelError(exc.message, where=where) from None
    expected = expected_members(cls, declared)
    if set(declared) != expected:
        odd = sorted(set(declared) ^ expected)[0]
        raise ModelError(f"model.json declares arrays a {name} model does not have ({odd!r})", where=where)
    arrays = read_members(path, declared, where)
    model.n_users_, model.n_items_ = n_users, n_items
    shapes = {
        "popularity_": (n_items,),
        "known_users_": (n_users,),
        "seen_indptr": (n_users + 1,),
    }
    for key, shape in shapes.items():
        if arrays[key].shape != shape:
            raise ModelError(f"array {key} has shape {arrays[key].shape}, expected {shape}", where=where)
    try:
        for key in [k for k in arrays if k.endswith("__shape")]:
            base = key.removesuffix("__shape")
            arrays[base] = sp.csr_matrix(
                (arrays.pop(f"{base}__data"), arrays.pop(f"{base}__indices"), arrays.pop(f"{base}__indptr")),
                shape=tuple(int(n) for n in arrays.pop(key)),
            )
        indptr, indices = arrays.pop("seen_indptr"), arrays.pop("seen_indices")
        model.seen_ = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.bool_), indices, indptr), shape=(model.n_users_, model.n_items_)
        )
        for value in [model.seen_, *(v for v in arrays.values() if sp.issparse(v))]:
            value.check_format(full_check=True)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"arrays.npz holds an inconsistent sparse matrix ({exc})", where=where) from None
    for key, value in arrays.items():
        if not finite(value):
            raise ModelError(f"array {key} holds NaN or inf values", where=where)
        setattr(model, key, value)
    try:
        model.check_loaded()
    except ModelError as exc:
        raise ModelError(exc.message, where=where) from None
    return model
