"""`calibrate`: fit the simulator's user model on a dataset's logs up to a cutoff and keep it as a
world directory: the fitted parameters and their covariance, the fit diagnostics, the window, the
engagement targets and a per-user table of what the model concludes about each user. The
histories are recomputed from the dataset when a simulation loads it (checked against its
digest), so the directory stays small."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from persotool.kernels import storage as artifacts
from persotool.kernels.simulation import return_link
from persotool.kernels.simulation.calibration import MODEL, Calibration, calibrate_frame, interactions
from persotool.stages.calibrate.config import CalibrateConfig
from persotool.stages.calibrate.result import World
from persotool.stages.ingest.result import Dataset


def run(dataset, cfg: CalibrateConfig, out: Path, *, force: bool = False) -> World:
    """Fit the visit model on `dataset`'s logs up to `cfg.until` and write the world directory
    `out`, which `simulate` loads with `[world] source = "OUT"`."""
    dataset, out = Path(getattr(dataset, "path", dataset)), Path(out)
    calibrate(dataset, cfg.until, out, seed=cfg.seed, force=force, families=cfg.truth_mixture)
    return World(out)


def calibrate(
    dataset: Path,
    until: str | float | None,
    out: Path,
    *,
    seed: int = 0,
    force: bool = False,
    families: list[str] | None = None,
) -> Calibration:
    """Fit the calibration on `dataset` up to `until` and write the world directory `out`; with
    `families`, weigh those truth families by held-out fit inside the window (`truth_fit`)."""
    artifacts.check_output(out, force=force, inputs=[dataset])
    manifest = artifacts.read_artifact(dataset, "dataset")
    Dataset(dataset).require_times("calibrate (the visit model is fitted on active days)")
    frame = interactions(dataset, "value")  # the value (a rating) is for the return link
    calibration = calibrate_frame(frame, until, seed=seed)
    if families:
        calibration.truth = _truth(frame, calibration, manifest["counts"], families, seed)
    link = return_link.fit(frame, calibration.window.until)
    payload = artifacts.new_manifest(
        World.kind,
        World.schema_version,
        name=out.name,
        dataset={"path": str(Path(dataset).resolve()), "digest": manifest["dataset_digest"]},
        window=calibration.window.to_dict(),
        model=MODEL,
        fit=calibration.fit.to_dict(),
        grid={"sizes": [24, 24, 10]},
        engagement=calibration.engagement,
        diagnostics=calibration.diagnostics,
        seed=seed,
        users=len(calibration.histories),
        seconds=round(calibration.seconds, 3),
        **({"truth": calibration.truth} if calibration.truth else {}),
        return_link=link,
    )
    with artifacts.atomic_directory(out, force=force, inputs=[dataset]) as tmp:
        calibration.users_table().write_parquet(tmp / "users.parquet")
        _plot(calibration, tmp / "active_days.png")
        (tmp / artifacts.MANIFEST).write_text(json.dumps(artifacts.finite_json(payload), indent=2) + "\n")
    return calibration


def _truth(frame, calibration: Calibration, counts: dict[str, int], families: list[str], seed: int) -> dict:
    """An auto truth's weights over `families`, fitted on the window's own time split, and the
    families' scores there."""
    from persotool.kernels.simulation.spec import BehaviourSpec, WorldSpec
    from persotool.kernels.simulation.truth_fit import auto_weights

    spec = WorldSpec(truth="auto", truth_mixture=families)
    window = frame.filter(pl.col("timestamp") < calibration.window.until)
    weight = BehaviourSpec().affinity_weight
    weights, info = auto_weights(window, spec, counts["n_users"], counts["n_items"], seed, families, weight)
    return {"weights": weights, **info, "affinity_weight": weight}


def _plot(calibration: Calibration, path: Path) -> None:
    """Users by active days after the first: observed against the fitted model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check = calibration.diagnostics["active_days"]
    x = np.arange(len(check["bins"]))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(x - 0.2, check["observed"], 0.4, label="logs")
    ax.bar(x + 0.2, check["expected"], 0.4, label="fitted model")
    ax.set_xticks(x, check["bins"])
    ax.set_xlabel("active days after the first, within the window")
    ax.set_ylabel("users")
    ax.set_title(f"In-sample check: chi-square p = {check['p_value']:.3g}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
