"""One simulated A/B test end to end, as a library call: build the world, run the arms, analyse,
and write the experiment directory."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from persotool.simulation import engine, fidelity, world
from persotool.simulation.analysis import Analysis, analyse
from persotool.simulation.config import SimulationConfig


@dataclass
class Experiment:
    config: SimulationConfig
    world: world.World
    simulation: engine.Simulation
    analysis: Analysis
    manifest: dict[str, Any]
    fidelity: fidelity.Fidelity


def run(dataset: Path, cfg: SimulationConfig, out: Path | None, *, force: bool = False) -> Experiment:
    from persotool.data import artifacts

    started = time.perf_counter()
    if out is not None:
        artifacts.check_output(out, force=force, inputs=[dataset])
    dataset_manifest = artifacts.read_artifact(dataset, "dataset")
    built = world.build(dataset, cfg)
    world_seconds = time.perf_counter() - started
    sim = engine.run(built, cfg, dataset_manifest["dataset_digest"], Path(dataset))
    t = time.perf_counter()
    result = analyse(sim, built, cfg)
    table, real, simulated = fidelity.report(sim, built, cfg)
    seconds = {
        "world": round(world_seconds, 3),
        **{k: round(v, 3) for k, v in sim.seconds.items()},
        "analysis": round(time.perf_counter() - t, 3),
    }
    manifest = artifacts.new_manifest(
        "simulation",
        name=cfg.name,
        config=cfg.model_dump(mode="json"),
        config_hash=artifacts.config_hash(cfg.model_dump(mode="json")),
        dataset={"path": str(Path(dataset).resolve()), "digest": dataset_manifest["dataset_digest"]},
        calibration=built.calibration,
        arm_sizes=result.arm_sizes,
        srm_p=result.srm_p,
        retrained_on_days={arm: state.retrained for arm, state in sim.arms.items() if state.retrained},
        user_days=sim.user_days,
        seconds=seconds,
        user_days_per_second=round(sim.user_days / max(sim.seconds["days"], 1e-9)),
        fidelity={row["distribution"]: row["ks_distance"] for row in table.iter_rows(named=True)},
    )
    experiment = Experiment(cfg, built, sim, result, manifest, fidelity.Fidelity(table, real, simulated))
    if out is not None:
        write(experiment, out, force=force)
    return experiment


def write(experiment: Experiment, out: Path, *, force: bool = False) -> None:
    from persotool.data import artifacts
    from persotool.simulation import report

    a = experiment.analysis
    inputs = [Path(experiment.manifest["dataset"]["path"])]
    with artifacts.atomic_directory(out, force=force, inputs=inputs) as tmp:
        a.results.write_csv(tmp / "results.csv")
        (tmp / "results.json").write_text(json.dumps(summary(experiment), indent=2, default=str) + "\n")
        a.per_user.write_parquet(tmp / "per_user.parquet")
        a.per_day.write_parquet(tmp / "per_day.parquet")
        a.sequential.write_parquet(tmp / "sequential.parquet")
        report.survival_table(a).write_parquet(tmp / "retention_curves.parquet")
        report.write_all(a, experiment.config, experiment.fidelity, experiment.world.calibration, tmp)
        artifacts.write_json_atomic(tmp / artifacts.MANIFEST, experiment.manifest)


def summary(experiment: Experiment) -> dict[str, Any]:
    """The --json payload: per metric and arm, control and treatment values, absolute and relative
    effect, CI, p-values and the true effect."""
    a, cfg = experiment.analysis, experiment.config
    metrics = []
    for row in a.results.iter_rows(named=True):
        item = {
            "metric": row["metric"],
            "arm": row["arm"],
            "control_arm": cfg.control,
            "control": row["control"],
            "treatment": row["treatment"],
            "effect": row["effect"],
            "relative_effect": row["relative_effect"],
            "ci": [row["ci_low"], row["ci_high"]],
            "p_value": row["p_value"],
            "p_holm": row["p_holm"],
            "significant": row["significant"],
            "true_effect": row["true_effect"],
            "ci_covers_true_effect": row["covers_truth"],
        }
        keys = ("mde", "cuped_effect", "cuped_ci_low", "cuped_ci_high", "cuped_p_value", "logrank_p", "first_stop_day")
        for key in keys:
            if key in row and row[key] is not None:
                item[key] = row[key]
        metrics.append(item)
    return {
        "experiment": cfg.name,
        "control": cfg.control,
        "arm_sizes": a.arm_sizes,
        "sample_ratio_mismatch_p": a.srm_p,
        "days": cfg.days,
        "population": experiment.world.n_users,
        "eligible_users": int(experiment.simulation.eligible.sum()),
        "metrics": metrics,
        "homogenization": a.homogenization,
        "calibration": experiment.world.calibration,
        "seconds": experiment.manifest["seconds"],
    }


def per_arm_metrics(per_user: pl.DataFrame) -> dict[str, dict[str, float]]:
    """Each arm's own numbers over its assigned users (the per-user table), for its MLflow run."""
    out: dict[str, dict[str, float]] = {}
    observed = per_user.filter(pl.col("eligible"))
    for arm, group in observed.group_by("arm"):
        name = arm[0]
        impressions = max(float(group["impressions"].sum()), 1.0)
        out[name] = {
            "users": float(len(group)),
            "engagements_per_user": float(group["engagements"].mean()),
            "visits_per_user": float(group["visits"].mean()),
            "slates_per_user": float(group["slates"].mean()),
            "ctr": float(group["engagements"].sum()) / impressions,
            "churned": float(group["churned"].mean()),
            **{
                c: float(group[c].mean())
                for c in group.columns
                if c.startswith("retention_") and group[c].dtype.is_numeric()
            },
        }
    return out
