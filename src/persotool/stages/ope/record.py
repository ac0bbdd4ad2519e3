"""What an ope run's MLflow run records: the config, every estimate, the diagnostics, the plots
and the estimates table."""

from persotool.kernels.runspec import RunSpec, flatten


def run_spec(result) -> RunSpec:
    m, out = result.manifest, result.path
    metrics = result.measures() | {"impressions": m.impressions, "seconds": m.seconds}
    metrics |= {f"reward_model.{k}": v for k, v in m.reward_model.items() if isinstance(v, int | float)}
    return RunSpec(
        name=f"{out.name} · ope",
        command="ope",
        output=out,
        params=flatten({k: v for k, v in m.config.items() if k != "policies"})
        | {"policies": ",".join(p["name"] for p in m.policies), "propensities": m.propensities},
        metrics=metrics,
        tags={"persotool.dataset_digest": m.dataset.digest, "persotool.output": str(out.resolve())},
        artifacts=[
            (out / name, None)
            for name in ("manifest.json", "estimates.csv", "forest.png", "weights.png", "report.html")
        ],
    )
