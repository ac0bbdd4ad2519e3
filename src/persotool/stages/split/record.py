"""What a split's MLflow run records: its config, counts and leakage report, the dataset as input."""

import json

from persotool.kernels.runspec import RunSpec


def run_spec(split) -> RunSpec:
    m = split.manifest
    return RunSpec(
        name=f"{split.path.name} · split",
        command="split",
        output=split.path,
        params={"config": m.config},
        metrics={
            **m.counts,
            **{f"leakage.{part}.{k}": v for part, d in m.leakage.items() for k, v in d.items()},
        },
        tags={"persotool.dataset_digest": m.dataset.digest, "persotool.split_digest": m.split_digest},
        artifacts=[(split.path / "manifest.json", None)],
        dataset={
            "name": m.dataset.name or "dataset",
            "digest": m.dataset.digest,
            "source": json.dumps({"uri": m.dataset.path}),
            "context": "split",
        },
    )
