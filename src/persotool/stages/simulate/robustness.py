"""Effects that survive the world's assumptions (`simulate --worlds N`).

The experiment is rerun in N worlds, each drawn from what the calibration does not pin down:
- the logged users the population is resampled from (a bootstrap of the calibration's users);
- the visit model's parameters (a draw from the fit's approximate posterior);
- the family of the true affinities (cycled over `robustness.truths`);
- the seed (assignment, the world's noise and the day loop's uniforms).
Each world's analysis gives every (arm, metric) an effect and a standard error. Rubin's rules
combine them: the combined effect is the mean over worlds, its variance the mean within-world
variance plus (1 + 1/N) times the between-world variance, with Rubin's degrees of freedom, so the
interval holds both assignment noise and the uncertainty of the world. A metric's effect is
"robust" only when its sign agrees in at least `sign_agreement` of the worlds and the combined
interval excludes zero. Worlds run in parallel processes (`workers`).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from persotool.errors import ConfigError
from persotool.kernels.simulation.spec import SimulationConfig
from persotool.stages.simulate.retrain import retrainer


def plan(cfg: SimulationConfig) -> list[dict[str, Any]]:
    """Each world's number, truth family and seed."""
    spec = cfg.robustness
    seeds = np.random.SeedSequence([cfg.seed, 97]).generate_state(spec.worlds)
    return [{"world": w, "truth": spec.truths[w % len(spec.truths)], "seed": int(seeds[w])} for w in range(spec.worlds)]


@lru_cache(maxsize=2)
def _calibration(dataset: str, source: str):
    from persotool.kernels.simulation import calibration as fitted

    if source != "calibrated":
        return fitted.load(Path(source), Path(dataset))[0]
    frame = fitted.interactions(Path(dataset)).select("user_idx", "timestamp")
    return fitted.calibrate_frame(frame, None)


def one_world(dataset: str, config: dict[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The experiment in one drawn world: every (arm, metric)'s effect, standard error and truth."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from persotool.kernels.simulation import engine, world
    from persotool.kernels.simulation.build import build
    from persotool.kernels.storage import read_artifact
    from persotool.stages.simulate.analysis import analyse

    cfg = SimulationConfig.model_validate(config)
    calibration = _calibration(dataset, cfg.world.source)
    rng = np.random.default_rng(np.random.SeedSequence([entry["seed"], 3]))
    spec = cfg.robustness
    known = len(calibration.histories)
    population = cfg.world.population or known
    rows = rng.integers(0, known, population) if spec.bootstrap_users else None
    fit = calibration.fit.draw(rng) if spec.posterior else None
    cfg_w = cfg.model_copy(
        update={"seed": entry["seed"], "world": cfg.world.model_copy(update={"truth": entry["truth"]})}
    )
    built = build(Path(dataset), cfg_w, calibration=calibration, variant=world.Variant(rows=rows, fit=fit))
    digest = read_artifact(Path(dataset), "dataset")["dataset_digest"]
    sim = engine.run_days(built, cfg_w, digest, retrain=retrainer(cfg_w, Path(dataset)))
    result = analyse(sim, built, cfg_w, light=True)
    z = stats.norm.ppf(1 - cfg.analysis.alpha / 2)
    out = []
    for row in result.results.iter_rows(named=True):
        if row["ci_low"] is None or row["ci_high"] is None:
            continue
        out.append(
            {
                "world": entry["world"],
                "truth": entry["truth"],
                "seed": entry["seed"],
                "arm": row["arm"],
                "metric": row["metric"],
                "family": row["family"],
                "effect": row["effect"],
                "se": (row["ci_high"] - row["ci_low"]) / (2 * z),
                "p_value": row["p_value"],
                "true_effect": row["true_effect"],
            }
        )
    return out


def run_worlds(dataset: Path, cfg: SimulationConfig, progress=None) -> pl.DataFrame:
    """Every world's effects (one row per world, arm and metric)."""
    if cfg.world.source == "synthetic":
        raise ConfigError("--worlds draws worlds from a fitted calibration; a synthetic world has none to draw from")
    entries = plan(cfg)
    config = cfg.model_dump(mode="json", exclude_unset=True)  # what was set stays set (and the rest calibrated)
    rows: list[dict[str, Any]] = []
    workers = min(cfg.robustness.workers, len(entries))
    if workers <= 1:
        for entry in entries:
            rows += one_world(str(dataset), config, entry)
            if progress:
                progress(entry["world"])
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(one_world, str(dataset), config, entry) for entry in entries]
            for entry, future in zip(entries, futures, strict=True):
                rows += future.result()
                if progress:
                    progress(entry["world"])
    return pl.DataFrame(rows, infer_schema_length=None).sort("world", "arm", "metric")


def combine(per_world: pl.DataFrame, alpha: float, agreement: float) -> pl.DataFrame:
    """Per (arm, metric): Rubin's combined effect and interval, the share of worlds agreeing on its
    sign, the true effect's range over worlds, and the verdict."""
    out = []
    for (arm, metric), group in per_world.group_by("arm", "metric", maintain_order=True):
        effects = group["effect"].to_numpy().astype(np.float64)
        se = group["se"].to_numpy().astype(np.float64)
        m = len(effects)
        mean = float(effects.mean())
        within = float((se**2).mean())
        between = float(effects.var(ddof=1)) if m > 1 else 0.0
        total = within + (1 + 1 / m) * between
        if between > 0 and m > 1:
            df = (m - 1) * (1 + within / ((1 + 1 / m) * between)) ** 2
            t = float(stats.t.ppf(1 - alpha / 2, df))
        else:
            df, t = float("inf"), float(stats.norm.ppf(1 - alpha / 2))
        half = t * np.sqrt(total)
        low, high = mean - half, mean + half
        positive = float((effects > 0).mean())
        sign_share = max(positive, float((effects < 0).mean()))
        excludes = low > 0 or high < 0
        if sign_share >= agreement and excludes:
            verdict = "robust"
        elif sign_share < agreement:
            verdict = f"not robust: the sign agrees in {sign_share:.0%} of worlds"
        else:
            verdict = "not robust: the combined interval holds zero"
        truth = group["true_effect"].to_numpy().astype(np.float64)
        out.append(
            {
                "arm": arm,
                "metric": metric,
                "family": group["family"][0],
                "worlds": m,
                "effect": mean,
                "ci_low": float(low),
                "ci_high": float(high),
                "within_variance": within,
                "between_variance": between,
                "df": float(df),
                "sign_agreement": sign_share,
                "true_effect_min": float(np.nanmin(truth)),
                "true_effect_max": float(np.nanmax(truth)),
                "robust": verdict == "robust",
                "verdict": verdict,
            }
        )
    return pl.DataFrame(out, infer_schema_length=None)
