"""What a simulated A/B test's MLflow runs record: a parent run with every tested effect, its
adjusted p-value and its true effect (and, with several worlds, the robust effects and verdicts),
the report and tables, segment effects; one nested run per arm with its daily metrics."""

import re

from persotool.kernels.runspec import RunSpec, flatten


def run_spec(experiment) -> RunSpec:
    from persotool.stages.simulate.report import PLOTS
    from persotool.stages.simulate.run import per_arm_metrics

    m, out, cfg = experiment.manifest, experiment.path, experiment.config
    per_day, results, summary = experiment.per_day, experiment.results, experiment.summary
    per_arm = per_arm_metrics(experiment.per_user)
    children = []
    for arm in cfg.arms:
        daily = per_day.filter(per_day["arm"] == arm.name)
        children.append(
            RunSpec(
                name=f"{arm.name} · simulate",
                command="simulate",
                params={"arm": arm.name, "policy": arm.policy, "model": str(arm.model or ""), "share": arm.share},
                metrics=per_arm.get(arm.name, {}),
                metric_history={
                    "daily_engagements_per_visitor": daily["engagements_per_visitor"].to_list(),
                    "daily_ctr": daily["ctr"].to_list(),
                    "daily_visitors": daily["visitors"].to_list(),
                    "daily_coverage": daily["coverage"].to_list(),
                    "daily_gini": daily["gini"].to_list(),
                    "daily_jaccard": daily["jaccard"].fill_nan(None).fill_null(0.0).to_list(),
                },
                tags={"persotool.simulation_role": "arm"},
            )
        )
    metrics = {"srm_p": m.srm_p, "user_days_per_second": getattr(m, "user_days_per_second", None)}
    for arm, h in summary["homogenization"].items():
        metrics |= {f"{arm}.{key}_final": h[key] for key in ("jaccard", "coverage", "gini")}
        metrics[f"{arm}.retrains"] = len(h["retrained_on_days"])
        for row in h.get("retrain_stability") or []:
            metrics[f"{arm}.retrain_day{row['day']}.jaccard"] = row["jaccard"]
            metrics[f"{arm}.retrain_day{row['day']}.changed"] = row["changed"]
    for row in results.iter_rows(named=True):
        key = f"{row['arm']}.{row['metric']}"
        metrics[f"{key}.effect"] = row["effect"]
        metrics[f"{key}.p_adjusted"] = row["p_adjusted"]
        metrics[f"{key}.true_effect"] = row["true_effect"]
    segments = summary.get("segments")
    if segments:
        metrics["harmed_segments"] = len(segments["harmed"])
        metrics["differential_segments"] = len(segments["differential"])
        for row in segments["rows"]:
            label = re.sub(r"[^A-Za-z0-9_.\- /]", "_", str(row["segment"]))  # MLflow's allowed characters
            key = f"segment.{row['segment_by']}.{label}.{row['arm']}.{row['metric']}"
            metrics[f"{key}.effect"] = row["effect"]
            metrics[f"{key}.true_effect"] = row["true_effect"]
    tags = {"persotool.dataset_digest": m.dataset.digest}
    if m.calibration.get("truth"):
        tags["persotool.truth"] = m.calibration["truth"]
    metrics |= {f"truth_weight.{f}": w for f, w in (m.calibration.get("truth_weights") or {}).items()}
    robust = summary.get("robustness")
    if robust:
        metrics["robustness.worlds"] = robust["worlds"]
        for row in robust["combined"]:
            key = f"{row['arm']}.{row['metric']}"
            metrics[f"{key}.robust_effect"] = row["effect"]
            metrics[f"{key}.robust_ci_low"] = row["ci"][0]
            metrics[f"{key}.robust_ci_high"] = row["ci"][1]
            metrics[f"{key}.sign_probability"] = row["sign_probability"]
            metrics[f"{key}.robust_power"] = row["power"]
            tags[f"robustness.{key}"] = row["verdict"]
    files = ["results.csv", "results.json", "fidelity.csv", "report.html", "manifest.json", *PLOTS]
    files += [f for f in ("robustness.csv", "robustness_worlds.csv", "segments.csv") if (out / f).is_file()]
    return RunSpec(
        name=f"{cfg.name} · simulate",
        command="simulate",
        output=out,
        params=flatten(cfg.model_dump(mode="json", exclude={"arms"}))
        | {"arms": ",".join(f"{x.name}:{x.policy}" for x in cfg.arms)},
        metrics=metrics,
        tags=tags,
        artifacts=[(out / f, "simulation") for f in files],
        children=children,
    )
