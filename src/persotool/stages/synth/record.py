"""What a synthetic log's MLflow run records: its config, size and the ground truth's summary."""

from persotool.kernels.runspec import RunSpec


def run_spec(log) -> RunSpec:
    m, out = log.manifest, log.path
    return RunSpec(
        name=f"{out.name} · synth",
        command="datasets synth",
        output=out,
        params=m.config,
        metrics={"rows": m.rows, "seconds": m.seconds, "sessions": m.truth["sessions"]},
        artifacts=[(out / "manifest.json", None), (out / "ground_truth.json", None), (out / "schema.toml", None)],
        tags={"persotool.output": str(out.resolve())},
    )
