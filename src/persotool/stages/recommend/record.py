"""What a recommend run's MLflow run records: the config, the counts, the manifest (and the lists
themselves when they are small)."""

from persotool.kernels.runspec import RunSpec, flatten

MAX_LOGGED_BYTES = 50_000_000  # larger lists stay in the output directory only


def run_spec(recommendations) -> RunSpec:
    m, out = recommendations.manifest, recommendations.path
    files = [(out / "manifest.json", "recommendations")]
    if (out / "recs.parquet").stat().st_size <= MAX_LOGGED_BYTES:
        files.append((out / "recs.parquet", "recommendations"))
    return RunSpec(
        name=f"{m.model.name} · recommend",
        command="recommend",
        output=out,
        params=flatten(m.config) | {"model": m.model.path},
        metrics={**m.counts, "seconds": m.seconds},
        tags={"persotool.model_digest": m.model.digest, "persotool.dataset_digest": m.dataset.digest},
        artifacts=files,
    )
