"""What an explain run's MLflow run records: the model, the user and the explanations table."""

from persotool.kernels.runspec import RunSpec, flatten


def run_spec(explanations) -> RunSpec:
    m, out = explanations.manifest, explanations.path
    return RunSpec(
        name=f"{m.model.name} · explain",
        command="explain",
        output=None if explanations.scratch is not None else out,
        params=flatten(m.config) | {"model": m.model.path},
        metrics={"items": m.items, "seconds": m.seconds},
        tags={"persotool.model_digest": m.model.digest},
        artifacts=[(out / "explanations.parquet", "explanations"), (out / "manifest.json", "explanations")],
    )
