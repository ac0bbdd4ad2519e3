"""What a calibration's MLflow run records: the fitted parameters, their standard errors, the
population means, the log-likelihood and the in-sample check."""

from persotool.kernels.runspec import RunSpec


def run_spec(world) -> RunSpec:
    m, out = world.manifest, world.path
    fit = m.fit
    metrics = {f"fit.{k}": v for k, v in fit["params"].items()}
    metrics |= {f"fit.{k}.se": v for k, v in fit["standard_errors"].items()}
    metrics |= {f"mean.{k}": v for k, v in fit["means"].items()}
    metrics |= {
        "log_likelihood": fit["log_likelihood"],
        "users": m.users,
        "seconds": m.seconds,
        "active_days_check_p": m.diagnostics["active_days"]["p_value"],
    }
    return RunSpec(
        name=f"{out.name} · calibrate",
        command="calibrate",
        output=out,
        params={"until": m.window["until"], "days": m.window["days"], "model": m.model},
        metrics=metrics,
        tags={"persotool.dataset_digest": m.dataset.digest, "persotool.output": str(out.resolve())},
        artifacts=[(out / "manifest.json", None), (out / "active_days.png", None)],
    )
