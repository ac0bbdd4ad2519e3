"""What an ingest's MLflow run records: the resolved config as parameters, counts and timings as
metrics, the manifest and an overview plot as artifacts, and the dataset (with its digest) as the
run's input."""

import json
import tempfile
from pathlib import Path

from persotool.kernels.runspec import RunSpec

TYPES = {"Int32": "integer", "Int64": "long", "String": "string", "Float64": "double"}


def _colspec(dataset) -> list[dict]:
    if dataset.impressions:
        import polars as pl

        schema = pl.read_parquet_schema(dataset.path / "impressions.parquet")
    else:
        from persotool.stages.ingest.run import INTERACTION_SCHEMA as schema
    return [{"name": n, "type": TYPES.get(str(d).split("(")[0], "datetime")} for n, d in schema.items()]


def run_spec(dataset) -> RunSpec:
    from persotool.stages.ingest.overview import plot_overview

    m, out = dataset.manifest, dataset.path
    counts = m.counts
    metrics = {k: v for k, v in counts.items() if isinstance(v, int | float)}
    metrics |= {f"rejected.{k}": v for k, v in counts["rejected_by_reason"].items()}
    metrics["seconds"] = m.seconds
    metrics |= {f"seconds.{phase}": value for phase, value in (getattr(m, "phase_seconds", None) or {}).items()}
    scratch = Path(tempfile.mkdtemp(prefix="persotool-ingest-"))
    plot = scratch / "overview.png"
    if not dataset.impressions:  # the overview plots interactions per user, item and day
        plot_overview(out, plot)
    return RunSpec(
        name=f"{m.name} · ingest",
        command="ingest",
        output=out,
        params={"config": m.config, "sources": len(m.sources), "config_hash": m.config_hash},
        metrics=metrics,
        tags={"persotool.dataset_digest": m.dataset_digest, "persotool.output": str(out.resolve())},
        artifacts=[(out / "manifest.json", None), *([(plot, None)] if plot.is_file() else [])],
        dataset={
            "name": m.name,
            "digest": m.dataset_digest,
            "source": json.dumps({"uri": str(out.resolve())}),
            "profile": json.dumps(
                {"num_rows": counts["rows_kept"], "n_users": counts["n_users"], "n_items": counts["n_items"]}
            ),
            "schema": json.dumps({"mlflow_colspec": _colspec(dataset)}),
            "context": "ingest",
        },
        scratch=[scratch],
    )
