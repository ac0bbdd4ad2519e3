"""The recommender protocol and what every model shares: the training matrix, batched top-k with
seen-item masking, a popularity fallback for users and items training never saw, and persistence as
plain arrays (`arrays.npz`, loaded with allow_pickle=False) plus JSON metadata. No pickle anywhere.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import scipy.sparse as sp

from persotool.errors import ModelError
from persotool.kernels.models.hyperparameters import Hyperparameters

FORMAT_VERSION = 1
BATCH_USERS = 1024


def interaction_matrix(train: pl.DataFrame, n_users: int, n_items: int, *, binary: bool = False) -> sp.csr_matrix:
    """Users x items CSR of summed weights (repeat interactions add up); zero weights dropped."""
    positive = train.filter(pl.col("weight") > 0)
    data = np.ones(len(positive), dtype=np.float32) if binary else positive["weight"].to_numpy().astype(np.float32)
    matrix = sp.coo_matrix(
        (data, (positive["user_idx"].to_numpy(), positive["item_idx"].to_numpy())), shape=(n_users, n_items)
    ).tocsr()
    matrix.sum_duplicates()
    if binary:
        matrix.data[:] = 1.0
    return matrix


def seen_matrix(train: pl.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """Every item a user interacted with in training, whatever its weight: excluded from rankings."""
    data = np.ones(len(train), dtype=np.bool_)
    matrix = sp.coo_matrix(
        (data, (train["user_idx"].to_numpy(), train["item_idx"].to_numpy())), shape=(n_users, n_items)
    ).tocsr()
    matrix.sum_duplicates()
    return matrix


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k highest scores per row, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    if k == scores.shape[1]:
        part = np.broadcast_to(np.arange(k), (scores.shape[0], k))
    else:
        # the k largest sit at the end after partitioning at n - k (no negated copy of the scores)
        part = np.argpartition(scores, scores.shape[1] - k, axis=1)[:, scores.shape[1] - k :]
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx.astype(np.int32), np.take_along_axis(values, order, axis=1)


@dataclass
class TrainingContext:
    """What a model may use beside the training matrix and the features.

    `validate(model) -> float` scores the model as it stands on held-out data (higher is better),
    under the name `metric` (e.g. "ndcg@10"); models that train in epochs stop early on it.
    `on_epoch(epoch, metrics)` hears each epoch's measures: "train_loss", and "valid_<metric>"
    when there is validation. `interactions` is the training table, for models that need more
    than the matrix (timestamps, for recent popularity)."""

    validate: Callable[[Recommender], float] | None = None
    metric: str | None = None
    on_epoch: Callable[[int, dict[str, float]], None] | None = None
    interactions: pl.DataFrame | None = None
    validate_each_epoch: bool = False  # models without early stopping also validate every epoch (tuning)

    @property
    def valid_key(self) -> str:
        return f"valid_{self.metric or 'metric'}"

    def epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.on_epoch is not None:
            self.on_epoch(epoch, metrics)


class Recommender(ABC):
    """Base of every model. Subclasses set `name` and `params_model`, take hyperparameters in
    `__init__`, learn in `_fit` (state in attributes ending in `_`) and score known users in
    `_score`."""

    name: ClassVar[str] = "base"
    array_names: ClassVar[tuple[str, ...]] = ()
    params_model: ClassVar[type[Hyperparameters]] = Hyperparameters

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    # -- learning ---------------------------------------------------------------------------
    def fit(
        self,
        train: sp.csr_matrix,
        *,
        seen: sp.csr_matrix | None = None,
        item_features: sp.csr_matrix | None = None,
        user_features: sp.csr_matrix | None = None,
        context: TrainingContext | None = None,
    ) -> Recommender:
        """Learn from a users x items matrix of weights. `seen` (default: train's pattern) is what
        `recommend` excludes; `context` brings validation, an epoch callback and the interactions
        table (see TrainingContext)."""
        if not sp.issparse(train):
            raise ModelError("fit expects a scipy.sparse users x items matrix")
        train = sp.csr_matrix(train, dtype=np.float32)
        self.n_users_, self.n_items_ = train.shape
        self.seen_ = sp.csr_matrix(seen if seen is not None else train, dtype=np.bool_)
        counts = np.asarray((train > 0).sum(axis=0)).ravel().astype(np.float32)
        self.popularity_ = counts
        self.known_users_ = np.asarray(train.getnnz(axis=1) > 0)
        self._fit(train, item_features, user_features, context or TrainingContext())
        bad = [name for name in self.array_names if not finite(getattr(self, name, None))]
        if bad:
            raise ModelError(
                f"{self.name} training produced non-finite values (NaN or inf) in {bad[0]}: it diverged; "
                "lower the learning rate or raise the regularisation"
            )
        return self

    @abstractmethod
    def _fit(
        self,
        train: sp.csr_matrix,
        item_features: sp.csr_matrix | None,
        user_features: sp.csr_matrix | None,
        context: TrainingContext,
    ) -> None:
        """Learn from `train` (float32 CSR); n_users_, n_items_, seen_, popularity_ are set."""

    # -- scoring ----------------------------------------------------------------------------
    @abstractmethod
    def _score(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for known users (len(users) x n_items)."""

    def _fallback(self, n: int) -> np.ndarray:
        """Scores for users training never saw: item popularity, slightly favouring lower indices
        only to break ties deterministically."""
        return np.broadcast_to(self.popularity_, (n, self.n_items_)).astype(np.float32)

    def score(self, users) -> np.ndarray:
        """Scores of all items for the given users (len(users) x n_items, float32); users unseen in
        training (or beyond the training matrix) get the popularity fallback."""
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        out = np.empty((len(users), self.n_items_), dtype=np.float32)
        inside = (users >= 0) & (users < self.n_users_)
        known = np.zeros(len(users), dtype=bool)
        known[inside] = self.known_users_[users[inside]]
        if known.any():
            out[known] = self._score(users[known])
        if (~known).any():
            out[~known] = self._fallback(int((~known).sum()))
        return out

    def recommend(self, users, k: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items and scores for one user or a batch (one code path): arrays of shape
        (n, k), or (k,) for a single user."""
        single = np.ndim(users) == 0
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if k < 1:
            raise ModelError(f"k must be at least 1, got {k}")
        items = np.empty((len(users), min(k, self.n_items_)), dtype=np.int32)
        values = np.empty(items.shape, dtype=np.float32)
        for start in range(0, len(users), BATCH_USERS):
            batch = users[start : start + BATCH_USERS]
            scores = self.score(batch)
            if exclude_seen:
                mask_seen(scores, self.seen_, batch)
            items[start : start + len(batch)], values[start : start + len(batch)] = top_k(scores, k)
        return (items[0], values[0]) if single else (items, values)

    # -- persistence ------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in ("popularity_", "known_users_", *self.array_names)}
        seen = self.seen_.tocsr()
        arrays |= {"seen_indptr": seen.indptr, "seen_indices": seen.indices}
        for name, value in list(arrays.items()):
            if sp.issparse(value):
                csr = value.tocsr()
                arrays.pop(name)
                arrays |= {
                    f"{name}__data": csr.data,
                    f"{name}__indices": csr.indices,
                    f"{name}__indptr": csr.indptr,
                    f"{name}__shape": np.array(csr.shape),
                }
        arrays = {name: np.asarray(value) for name, value in arrays.items()}
        np.savez(path / "arrays.npz", **arrays)
        # no writer's version here: a model is the same model whichever release saved it (its
        # manifest says which did), so its digest does not change with the version label
        meta = {
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "params": self.params(),
            "n_users": self.n_users_,
            "n_items": self.n_items_,
            # What `load` accepts, member by member, before it allocates anything.
            "arrays": {name: {"dtype": value.dtype.str, "shape": list(value.shape)} for name, value in arrays.items()},
        }
        (path / "model.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")

    def check_loaded(self) -> None:
        """Raise ModelError when loaded arrays do not fit this model's users and items."""
        for name, shape in self.expected_shapes().items():
            actual = getattr(self, name).shape
            fits = len(actual) == len(shape) and all(
                want is None or got == want for got, want in zip(actual, shape, strict=True)
            )
            if not fits:
                shown = tuple("any" if s is None else s for s in shape)
                raise ModelError(f"array {name} has shape {actual}, expected {shown} for this model")

    def expected_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """The shape of each learned array (None: any length), given n_users_ and n_items_."""
        return {}

    @classmethod
    def _restore(cls, params: dict[str, Any]) -> Recommender:
        from pydantic import ValidationError

        try:
            checked = cls.params_model.model_validate(params)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"]))
            raise ModelError(f"model.json has invalid parameters ({where}: {first['msg']})") from None
        return cls(**checked.model_dump())


def mask_seen(scores: np.ndarray, seen: sp.csr_matrix, users: np.ndarray) -> None:
    """Set the scores of each user's training items to -inf, in place."""
    inside = users < seen.shape[0]
    rows = np.flatnonzero(inside)
    sub = seen[users[inside]]
    row_of = np.repeat(rows, np.diff(sub.indptr))
    scores[row_of, sub.indices] = -np.inf


def finite(value) -> bool:
    """No NaN or inf in a float array (or a sparse matrix's values); True for anything else."""
    if sp.issparse(value):
        value = value.data
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fc":
        return True
    return bool(np.isfinite(value).all())


def expected_members(cls: type[Recommender], stored: dict[str, Any]) -> set[str]:
    """The npz members a model of this class writes: its declared arrays (a sparse one as four)."""
    names = {"popularity_", "known_users_", "seen_indptr", "seen_indices"}
    for name in cls.array_names:
        sparse = {f"{name}__{part}" for part in ("data", "indices", "indptr", "shape")}
        names |= sparse if sparse <= set(stored) else {name}
    return names


def read_members(path: Path, declared: dict[str, Any], where: str) -> dict[str, np.ndarray]:
    """The members of arrays.npz, each checked against its declared dtype and shape from its .npy
    header (and the header against the member's size) before its data is read: a forged header
    cannot make numpy allocate more than the file holds."""
    import zipfile

    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path / "arrays.npz") as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            if set(members) != set(declared):
                extra = sorted(set(members) ^ set(declared))
                raise ModelError(f"arrays.npz does not hold the arrays model.json declares ({extra[0]!r})", where=where)
            for name, info in members.items():
                spec = declared[name]
                with archive.open(info) as handle:
                    version = np.lib.format.read_magic(handle)
                    if version not in ((1, 0), (2, 0), (3, 0)):
                        raise ValueError(f"unknown .npy version {version}")
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else (np.lib.format.read_array_header_2_0)
                    )
                    shape, fortran, dtype = read_header(handle)
                    if dtype.hasobject or dtype.str != spec["dtype"] or list(shape) != list(spec["shape"]):
                        raise ModelError(
                            f"array {name} is {dtype.str} {list(shape)} in arrays.npz, but model.json declares "
                            f"{spec['dtype']} {spec['shape']}",
                            where=where,
                        )
                    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                    if size > info.file_size:
                        raise ModelError(f"array {name} claims more data than arrays.npz holds", where=where)
                    data = handle.read(size)
                if len(data) != size:
                    raise ModelError(f"array {name} is truncated in arrays.npz", where=where)
                array = np.frombuffer(data, dtype=dtype).copy()
                arrays[name] = array.reshape(shape, order="F" if fortran else "C")
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read arrays.npz ({exc})", where=where) from None
    return arrays


def verify_files(path: Path, where: str) -> None:
    """The model's files match the digests its manifest recorded when it was trained."""
    from persotool.kernels import storage as artifacts

    manifest_path = path / artifacts.MANIFEST
    if not manifest_path.is_file():
        return  # saved by the library alone, with no manifest: nothing recorded to compare
    try:
        recorded = json.loads(manifest_path.read_text()).get("files") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise ModelError("manifest.json is not valid JSON", where=where) from None
    for name in ("model.json", "arrays.npz"):
        if name not in recorded:
            raise ModelError(f"manifest.json records no digest for {name}", where=where)
        if not (path / name).is_file() or artifacts.file_sha256(path / name) != recorded[name]:
            raise ModelError(
                f"{name} does not match the digest recorded when the model was trained: it was changed or "
                "damaged; train the model again",
                where=where,
            )
