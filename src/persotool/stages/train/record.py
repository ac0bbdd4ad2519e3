"""What a training's MLflow run records: the hyperparameters, the per-epoch training loss and
validation metric as metric history, the model files as artifacts."""

from persotool.kernels.runspec import RunSpec


def run_spec(model) -> RunSpec:
    m, out = model.manifest, model.path
    return RunSpec(
        name=f"{m.model} · train",
        command="train",
        output=out,
        params={"model": m.model, **{f"params.{k}": v for k, v in m.params.items()}, "split": m.split.path},
        metrics={"fit_seconds": m.fit_seconds, "item_features": m.item_features},
        metric_history=m.history or {},
        tags={
            "persotool.model_digest": m.model_digest,
            "persotool.split_digest": m.split.digest,
            "persotool.dataset_digest": m.dataset.digest,
        },
        artifacts=[(out, "model")],
        model=(out, m.dataset.path),
    )
