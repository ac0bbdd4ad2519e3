"""`train`: fit a model on a split and save it as a model directory (model.json + arrays.npz +
manifest.json), every file's digest recorded so loading can verify them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from persotool.kernels import storage
from persotool.kernels.models.base import Recommender
from persotool.kernels.models.registry import build
from persotool.stages.split.result import Split
from persotool.stages.train.config import TrainConfig
from persotool.stages.train.result import TrainedModel


def run(split, cfg: TrainConfig, out: Path, *, force: bool = False) -> TrainedModel:
    """Fit `cfg.model` on the split's training part, with early stopping on its validation part,
    and save it at `out`."""
    from persotool.kernels import training

    split = split if isinstance(split, Split) else Split(split)
    out = Path(out)
    storage.check_output(out, force=force, inputs=[split.path])
    build(cfg.model, cfg.params)  # a bad hyperparameter is refused before anything is read
    fitted, info = training.train(split, cfg.model, cfg.params, valid_k=cfg.valid_k, use_features=cfg.use_features)
    save(fitted, out, split, info, force=force)
    return TrainedModel(out)


def save(model: Recommender, out: Path, split: Split, info: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
    """A model directory; its digest covers the split's digest, the model and its parameters."""
    with storage.atomic_directory(out, force=force, inputs=[split.path]) as tmp:
        model.save(tmp)
        files = {p.name: storage.file_sha256(p) for p in sorted(tmp.iterdir())}
        manifest = storage.new_manifest(
            TrainedModel.kind,
            TrainedModel.schema_version,
            name=Path(out).name,
            model=info["model"],
            params=info["params"],
            model_digest=storage.lineage_digest(
                files,
                parents={"split": split.digest},
                config={"model": info["model"], "params": info["params"]},
            ),
            split={"path": str(split.path.resolve()), "digest": split.digest},
            dataset=split.manifest.dataset.model_dump(),
            fit_seconds=info["fit_seconds"],
            item_features=info["item_features"],
            epochs_kept=info.get("epochs_kept"),
            valid_metric=info.get("valid_metric"),
            history=info.get("history", {}),
            files=files,
        )
        storage.write_json_atomic(tmp / storage.MANIFEST, manifest)
    return manifest
