"""A study's MLflow tree: one parent run per study (found by the study's storage and name, so every
worker's trials land under it) and one nested run per finished trial, with its parameters,
objective(s), per-epoch validation history and state."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from persotool.kernels.runspec import RunSpec, flatten, metric_key


def run_spec(tuning) -> RunSpec:
    import polars as pl

    m, out = tuning.manifest, tuning.path
    trials = tuning.trials if (out / "trials.parquet").is_file() else pl.DataFrame()
    metrics = m.config["metrics"]
    best = m.best or {}
    tags = {
        "persotool.study": m.study,
        "persotool.split_digest": m.split.digest,
        "persotool.trials": str(m.trials),
        **{f"best.{name}": str(value) for name, value in (best.get("params") or {}).items()},
        **{f"best.{metric_key(name)}": f"{value:.6g}" for name, value in (best.get("values") or {}).items()},
    }
    files = ["manifest.json", "trials.parquet", "best.toml", "pareto.parquet", *getattr(m, "plots", [])]
    history = _trial_histories(out)
    children = []
    finished = trials.filter(pl.col("state").is_in(["complete", "pruned", "fail", "stale"])) if len(trials) else trials
    for row in finished.iter_rows(named=True):
        params = {k.removeprefix("param."): v for k, v in row.items() if k.startswith("param.") and v is not None}
        values = {name: row[name] for name in metrics if row.get(name) is not None}
        extra = {k.removeprefix("valid."): v for k, v in row.items() if k.startswith("valid.") and v is not None}
        children.append(
            RunSpec(
                name=f"trial {row['number']} · tune",
                command="tune",
                params={"trial": row["number"], **params},
                metrics={**{f"valid_{k}": v for k, v in extra.items()}, **values, "seconds": row["seconds"]},
                metric_history=history.get(row["number"], {}),
                tags={
                    "persotool.trial_state": row["state"],
                    "persotool.default_config": str(row["default"]).lower(),
                    **_ran_by(row.get("worker")),
                    **({"persotool.error": str(row["error"])[:250]} if row.get("error") else {}),
                },
                leaf=str(row["number"]),
            )
        )
    return RunSpec(
        name=f"{m.study} · tune",
        command="tune",
        output=out,
        params=flatten(_resolved(m)),
        tags=tags,
        metrics={f"best_{name}": value for name, value in (best.get("values") or {}).items()} | {"trials": m.trials},
        artifacts=[(out / f, "tuning") for f in files if (out / f).is_file()],
        children=children,
        tree=hashlib.sha256(f"{m.storage}\x1f{m.study}".encode()).hexdigest()[:24],
    )


def _ran_by(worker: str | None) -> dict[str, str]:
    """The worker (host:pid) that ran a trial, which need not be the one recording it."""
    if not worker:
        return {}
    host, _, pid = str(worker).rpartition(":")
    return {"persotool.worker": str(worker), "persotool.host": host, "persotool.pid": pid}


def _resolved(m) -> dict:
    """The study's settings as they were used: the model the space names and the directions the
    metrics imply where the config left them unset; settings never given are left out (the search
    space itself is in the manifest, logged whole as an artifact)."""
    given = {key: value for key, value in m.config.items() if value is not None}
    return {**given, "model": m.model, "study": m.study, "directions": ",".join(m.directions)}


def _trial_histories(out: Path) -> dict[int, dict[str, list[float]]]:
    """Per-epoch validation of every trial, from the study (kept as trial attributes)."""
    path = out / "histories.json"
    if not path.is_file():
        return {}
    return {int(k): v for k, v in json.loads(path.read_text()).items()}
