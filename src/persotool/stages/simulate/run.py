"""One simulated A/B test end to end, as a library call: build the world, run the arms, analyse,
and write the experiment directory."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from persotool.kernels.simulation import build, engine, world
from persotool.kernels.simulation.impressions import ImpressionLog
from persotool.kernels.simulation.spec import SimulationConfig
from persotool.stages.ingest.result import Dataset
from persotool.stages.simulate import fidelity, impressions, segments
from persotool.stages.simulate.analysis import Analysis, analyse, balance_warnings
from persotool.stages.simulate.retrain import retrainer


@dataclass
class Outcome:
    config: SimulationConfig
    world: world.SimulatedWorld
    simulation: engine.Simulation
    analysis: Analysis
    manifest: dict[str, Any]
    fidelity: fidelity.Fidelity
    robustness: pl.DataFrame | None = None  # per world, arm and metric
    robust: pl.DataFrame | None = None  # combined over the worlds
    impressions: dict[str, ImpressionLog] | None = None  # each arm's log (impressions.epsilon)


def check_memory(cfg: SimulationConfig) -> None:
    """Refuse, before any work, a population this machine cannot hold, saying what it needs."""
    import os

    from persotool.errors import ConfigError

    users = cfg.world.population
    if not users:
        return
    needed = cfg.memory_bytes(users)
    try:
        available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return
    if needed > 0.8 * available:
        per_user = needed / users
        raise ConfigError(
            f"`world.population` {users:,} needs about {needed / 2**30:,.1f} GiB "
            f"({per_user:,.0f} bytes per simulated user with {len(cfg.arms)} arms, a lineup of "
            f"{cfg.slate_size + cfg.candidates} items and {cfg.pre_days + cfg.days} days); this machine has "
            f"{available / 2**30:,.1f} GiB: simulate at most {int(0.8 * available / per_user):,} users"
        )


def inputs_of(dataset: Path, cfg: SimulationConfig) -> list[Path]:
    """What a simulation reads: the dataset, the arms' model directories, the world directory
    and the synthetic ground truth. The output may replace none of them."""
    paths = [Path(dataset), *(Path(arm.model) for arm in cfg.arms if arm.model is not None)]
    if cfg.world.world_dir is not None:
        paths.append(cfg.world.world_dir)
    if cfg.world.ground_truth is not None:
        paths.append(Path(cfg.world.ground_truth))
    return paths


def run(dataset, cfg: SimulationConfig, out: Path, *, force: bool = False):
    """A simulated A/B/n test of `cfg`'s arms on a world calibrated from `dataset`, written to `out`."""
    from persotool.stages.simulate.result import Experiment

    simulate(Path(getattr(dataset, "path", dataset)), cfg, Path(out), force=force)
    return Experiment(out)


def simulate(dataset: Path, cfg: SimulationConfig, out: Path | None, *, force: bool = False) -> Outcome:
    """The experiment in memory (and written to `out` unless None)."""
    check_memory(cfg)
    from persotool.kernels import storage as artifacts

    started = time.perf_counter()
    if out is not None:
        artifacts.check_output(out, force=force, inputs=inputs_of(dataset, cfg))
    dataset_manifest = artifacts.read_artifact(dataset, "dataset")
    Dataset(dataset).require_times("simulate (visits and fidelity are measured in days)")
    built = build.build(dataset, cfg)
    world_seconds = time.perf_counter() - started
    recorder = impressions.recorder(built, cfg)
    sim = engine.run_days(
        built, cfg, dataset_manifest["dataset_digest"], retrain=retrainer(cfg, Path(dataset)), recorder=recorder
    )
    t = time.perf_counter()
    result = analyse(sim, built, cfg, segments=segments.labels(Path(dataset), built, cfg.analysis))
    table, real, simulated = fidelity.report(sim, built, cfg)
    seconds = {
        "world": round(world_seconds, 3),
        **{k: round(v, 3) for k, v in sim.seconds.items()},
        "analysis": round(time.perf_counter() - t, 3),
    }
    manifest = artifacts.new_manifest(
        "simulation",
        2,
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
        warnings=world.truth_overlap(cfg)
        + build.engagement_notes(built)
        + balance_warnings(result.balance, cfg.control),
    )
    experiment = Outcome(cfg, built, sim, result, manifest, fidelity.Fidelity(table, real, simulated))
    if recorder is not None:
        experiment.impressions = recorder.finish()
    if cfg.robustness.worlds:
        from persotool.stages.simulate import robustness

        t = time.perf_counter()
        weights = built.calibration.get("truth_weights")
        experiment.robustness = robustness.run_worlds(Path(dataset), cfg, weights=weights)
        experiment.robust = robustness.combine(
            experiment.robustness, cfg.analysis.alpha, cfg.robustness.sign_probability
        )
        manifest["seconds"]["robustness"] = round(time.perf_counter() - t, 3)
        manifest["robustness"] = {
            "worlds": cfg.robustness.worlds,
            "robust": [
                f"{r['arm']}:{r['metric']}" for r in experiment.robust.filter(pl.col("robust")).iter_rows(named=True)
            ],
        }
    if out is not None:
        write(experiment, out, force=force)
    return experiment


def write(experiment: Outcome, out: Path, *, force: bool = False) -> None:
    from persotool.kernels import storage as artifacts
    from persotool.stages.simulate import report

    a = experiment.analysis
    inputs = inputs_of(Path(experiment.manifest["dataset"]["path"]), experiment.config)
    with artifacts.atomic_directory(out, force=force, inputs=inputs) as tmp:
        a.results.write_csv(tmp / "results.csv")
        payload = summary(experiment)
        (tmp / "results.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
        a.per_user.write_parquet(tmp / "per_user.parquet")
        a.per_day.write_parquet(tmp / "per_day.parquet")
        a.sequential.write_parquet(tmp / "sequential.parquet")
        if len(a.segments):
            a.segments.write_csv(tmp / "segments.csv")
        if experiment.robustness is not None:
            experiment.robustness.write_csv(tmp / "robustness_worlds.csv")
            experiment.robust.write_csv(tmp / "robustness.csv")
        report.survival_table(a).write_parquet(tmp / "retention_curves.parquet")
        report.write_all(a, experiment.config, experiment.fidelity, experiment.world.calibration, tmp, payload)
        if experiment.impressions is not None:
            items = Dataset(Path(experiment.manifest["dataset"]["path"])).items.sort("item_idx")["item_id"].to_list()
            truth, found = impressions.write(experiment.impressions, experiment.world, items, experiment.config, tmp)
            experiment.manifest["warnings"] = [*experiment.manifest["warnings"], *found]
            experiment.manifest["impressions"] = truth
        artifacts.write_json_atomic(tmp / artifacts.MANIFEST, experiment.manifest)


def summary(experiment: Outcome) -> dict[str, Any]:
    """The --json payload: per metric and arm, its family, the tested estimate (CUPED-adjusted where
    `method` says so) with interval, raw and family-adjusted p-values, the users it covers and the
    true effect."""
    a, cfg = experiment.analysis, experiment.config
    metrics = []
    for row in a.results.iter_rows(named=True):
        item = {
            "metric": row["metric"],
            "family": row["family"],
            "method": row["method"],
            "arm": row["arm"],
            "control_arm": cfg.control,
            "control": row["control"],
            "treatment": row["treatment"],
            "effect": row["effect"],
            "relative_effect": row["relative_effect"],
            "ci": [row["ci_low"], row["ci_high"]],
            "p_value": row["p_value"],
            "p_adjusted": row["p_adjusted"],
            "correction": f"{row['correction']} within the {row['family']} family",
            "significant": row["significant"],
            "users": {"control": row["n_control"], "treatment": row["n_treatment"], "left_out": row["left_out"]},
            "true_effect": row["true_effect"],
            "ci_covers_true_effect": row["covers_truth"],
        }
        keys = ("mde", "raw_effect", "raw_ci_low", "raw_ci_high", "raw_p_value", "cuped_variance_reduction")
        for key in (*keys, "logrank_p", "first_stop_day"):
            if key in row and row[key] is not None:
                item[key] = row[key]
        metrics.append(item)
    return {
        "experiment": cfg.name,
        "control": cfg.control,
        "analysed": a.enrollment,
        "arm_sizes": a.arm_sizes,
        "assigned": a.assigned,
        "sample_ratio_mismatch_p": a.srm_p,
        "balance": a.balance,
        "days": cfg.days,
        "population": experiment.world.n_users,
        "families": {
            "primary": cfg.analysis.primary,
            "guardrail": cfg.analysis.guardrails,
            "secondary": [m for m, f in cfg.analysis.family().items() if f == "secondary"],
            "correction": cfg.analysis.correction,
        },
        "metrics": metrics,
        "simulator_truth": simulator_truth(experiment),
        "segments": segment_summary(experiment),
        "homogenization": a.homogenization,
        "calibration": experiment.world.calibration,
        "robustness": robustness_summary(experiment),
        "seconds": experiment.manifest["seconds"],
    }


def segment_summary(experiment: Outcome) -> dict[str, Any] | None:
    """Segment effects for --json and the report: the scope of the correction, the harmed and the
    differential segments, and every row (harmed first)."""
    frame, a = experiment.analysis.segments, experiment.config.analysis
    skipped = experiment.analysis.segments_skipped
    if not len(frame) and not skipped:
        return None
    method = {"holm": "Holm", "bh": "Benjamini-Hochberg"}[a.segment_correction]
    scope = (
        f"{method} over {len(frame):,} segment effects (every segment, metric and arm), and again over their "
        "heterogeneity tests"
    )
    return {
        "by": a.segments,
        "correction": scope,
        "harmed": frame.filter(pl.col("harmed")).select("segment_by", "segment", "arm", "metric").to_dicts()
        if len(frame)
        else [],
        "differential": frame.filter(pl.col("differential"))
        .select("segment_by", "segment", "arm", "metric", "effect", "rest_effect")
        .to_dicts()
        if len(frame)
        else [],
        "rows": frame.to_dicts(),
        "skipped": skipped,
    }


def robustness_summary(experiment: Outcome) -> dict[str, Any] | None:
    """The combined effects over the drawn worlds, with each world's effect, for --json."""
    if experiment.robust is None:
        return None
    cfg = experiment.config.robustness
    per_world = experiment.robustness
    combined = []
    for row in experiment.robust.iter_rows(named=True):
        worlds = per_world.filter((pl.col("arm") == row["arm"]) & (pl.col("metric") == row["metric"]))
        combined.append(
            {
                **{
                    k: row[k]
                    for k in ("arm", "metric", "family", "effect", "sign_probability", "power", "verdict", "robust")
                },
                "ci": [row["ci_low"], row["ci_high"]],
                "variance": {
                    "true_effects": row["true_variance"],
                    "assignment": row["assignment_variance"],
                    "df": row["df"],
                },
                "estimate_mean": row["estimate_mean"],
                "true_effect_range": [row["true_effect_min"], row["true_effect_max"]],
                "per_world": worlds.select(
                    "world", "truth", "effect", "se", "true_effect", *sorted(cfg.vary)
                ).to_dicts(),
            }
        )
    return {
        "worlds": cfg.worlds,
        "truths": cfg.truths,
        "truth_counts": per_world.unique("world")["truth"].value_counts(sort=True).rows(),
        "vary": {k: list(v) for k, v in cfg.vary.items()},
        "bootstrap_users": cfg.bootstrap_users,
        "posterior": cfg.posterior,
        "sign_probability": cfg.sign_probability,
        "combined": combined,
    }


def simulator_truth(experiment: Outcome) -> dict[str, dict[str, float]]:
    """What no experiment observes: each arm's share of users the simulator marked churned (its
    hidden state), over every simulated user, beside the measured churn."""
    out = {}
    for arm, state in experiment.simulation.arms.items():
        out[arm] = {"hidden_churn_share": float((state.churn_day >= 0).mean())}
    return out


def per_arm_metrics(per_user: pl.DataFrame) -> dict[str, dict[str, float]]:
    """Each arm's own numbers over its enrolled users (the per-user table), for its MLflow run."""
    out: dict[str, dict[str, float]] = {}
    observed = per_user.filter(pl.col("enrolled"))
    for arm, group in observed.group_by("arm"):
        name = arm[0]
        impressions = max(float(group["impressions"].sum()), 1.0)
        out[name] = {
            "users": float(len(group)),
            "engagements_per_user": float(group["engagements"].mean()),
            "visits_per_user": float(group["visits"].mean()),
            "ctr": float(group["engagements"].sum()) / impressions,
            **{
                c: float(group[c].drop_nans().mean() or 0.0)
                for c in group.columns
                if (c.startswith("retention_") or c == "churned") and group[c].dtype.is_numeric()
            },
        }
    return out
