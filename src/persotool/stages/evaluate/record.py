"""What an evaluation's MLflow run records: what was evaluated, every metric, and the per-user and
per-segment tables. An evaluation written nowhere (no `out`) is recorded without an output."""

import re

from persotool.kernels.runspec import RunSpec


def run_spec(evaluation) -> RunSpec:
    out, context = evaluation.path, evaluation.context
    label = context.get("model", "lists")
    return RunSpec(
        name=f"{label} · evaluate",
        command="evaluate",
        output=None if evaluation.scratch is not None else out,
        params={k: v for k, v in context.items() if k not in ("config", "cold", "exposure", "accuracy_gap")}
        | {"config": context.get("config", {})},
        metrics={
            **evaluation.summary,
            **{f"cold.{k}": v for k, v in (context.get("cold") or {}).items()},
            **{
                "exposure_ratio." + re.sub(r"[^A-Za-z0-9_.\- /]", "_", g["group"]): g["ratio"]
                for g in (context.get("exposure") or {}).get("groups", [])
            },
            **{f"accuracy_gap.{g['metric']}": g["gap"] for g in context.get("accuracy_gap") or []},
        },
        tags={k: str(v) for k, v in context.items() if k.endswith("digest")},
        artifacts=[(out / f"{name}.parquet", "evaluation") for name in ("per_user", "segments")],
    )
