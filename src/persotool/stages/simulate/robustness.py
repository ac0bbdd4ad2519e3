"""Effects that survive the world's assumptions (`simulate --worlds N`).

The experiment is rerun in N worlds, each drawn from what the logs do not pin down:
- the logged users the population is resampled from (a bootstrap of the calibration's users);
- the visit model's parameters (a draw from the fit's approximate posterior);
- the family of the true affinities: with `truths = ["auto"]` drawn with the weights held-out
  behaviour gives each family (`truth_fit`; systematic sampling, so 20 worlds at weights 0.6/0.4
  hold 12 and 8), or cycled over a list of families;
- behaviour the logs cannot measure (fatigue, slate similarity, position decay, truth noise), each
  drawn uniformly from its range in `robustness.vary`, whose defaults are stated priors (spec.VARY_DEFAULTS);
- the seed (assignment, the world's noise and the day loop's uniforms).
In each world the simulator knows the true effect T_w of every (arm, metric) exactly (common random
numbers: every user's outcome under every arm), and the analysis gives the standard error s_w of
an experiment of the configured size. The prediction of what that experiment would estimate in a
world drawn like these: centred on the mean true effect, with variance (1 + 1/N) var(T_w) + mean
(s_w^2) (the spread of the true effects across worlds, with the mean's own uncertainty, plus the
assignment noise of one experiment; the world-to-world spread of the *estimates* would count the
assignment noise twice) and Student's t with Satterthwaite's degrees of freedom, (N - 1) V^2 /
((1 + 1/N) var(T_w))^2, since only the true effects' spread is estimated from N worlds. With a
handful of worlds a plain mixture of the N worlds' normals covers a new world too rarely (86-88%
for a 95% interval from 10 worlds in the validation).
The verdict: P(sign), the probability that the true effect has the sign of the predicted effect,
estimated from the k of n worlds whose true effect has it by the rule of succession, (k + 1) / (n +
2) (the posterior mean under a uniform prior: few worlds cannot make it certain); "robust" when it
is at least `sign_probability` (90%), which takes 10 of 10 worlds, 19 of 20 or 28 of 30. When the
true effect's sign is a coin toss in every world, 10 worlds call it robust with chance 2 / 2^10.
Power: the mixture's chance that the experiment's test rejects.
Worlds run in parallel processes (`workers`).
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


def plan(cfg: SimulationConfig, weights: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Each world's number, truth family, seed and drawn behaviour. `weights`: the truth families'
    held-out weights, which `truths = ["auto"]` draws from."""
    spec = cfg.robustness
    n = spec.worlds
    seeds = np.random.SeedSequence([cfg.seed, 97]).generate_state(n)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 101]))
    if spec.truths == ["auto"]:
        if not weights:
            raise ConfigError("robustness.truths = ['auto'] needs the truth families' weights (world.truth = 'auto')")
        families = list(weights)
        cumulative = np.cumsum([weights[f] for f in families]) / sum(weights.values())
        picks = np.minimum(
            np.searchsorted(cumulative, (rng.random() + np.arange(n)) / n, side="right"), len(families) - 1
        )
        rng.shuffle(picks)
        truths = [families[i] for i in picks]
    else:
        truths = [spec.truths[w % len(spec.truths)] for w in range(n)]
    draws = {name: rng.uniform(low, high, n) for name, (low, high) in sorted(spec.vary.items())}
    return [
        {
            "world": w,
            "truth": truths[w],
            "seed": int(seeds[w]),
            "behaviour": {name: float(values[w]) for name, values in draws.items()},
        }
        for w in range(n)
    ]


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
    drawn = dict(entry.get("behaviour", {}))
    world_update = {"truth": entry["truth"]} | (
        {"truth_noise": drawn.pop("truth_noise")} if "truth_noise" in drawn else {}
    )
    cfg_w = cfg.model_copy(
        update={
            "seed": entry["seed"],
            "world": cfg.world.model_copy(update=world_update),
            "behaviour": cfg.behaviour.model_copy(update=drawn),
        }
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
                **entry.get("behaviour", {}),
            }
        )
    return out


def run_worlds(
    dataset: Path, cfg: SimulationConfig, progress=None, weights: dict[str, float] | None = None
) -> pl.DataFrame:
    """Every world's effects (one row per world, arm and metric). `weights`: the main world's truth
    weights (fitted here when `truths = ["auto"]` needs them and the main world has none)."""
    if cfg.world.source == "synthetic":
        raise ConfigError("--worlds draws worlds from a fitted calibration; a synthetic world has none to draw from")
    if cfg.robustness.truths == ["auto"] and not weights:
        weights = _weights(dataset, cfg)
    entries = plan(cfg, weights)
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


def _weights(dataset: Path, cfg: SimulationConfig) -> dict[str, float]:
    """The truth families' held-out weights on the calibration window (`truth_fit.auto_weights`)."""
    from persotool.kernels.simulation import calibration as fitted
    from persotool.kernels.simulation.truth_fit import auto_weights
    from persotool.kernels.storage import read_artifact

    counts = read_artifact(dataset, "dataset")["counts"]
    window = fitted.interactions(dataset).filter(
        pl.col("timestamp") < _calibration(str(dataset), cfg.world.source).window.until
    )
    families = list(cfg.world.truth_mixture)
    args = (cfg.world, counts["n_users"], counts["n_items"], cfg.seed, families, cfg.behaviour.affinity_weight)
    return auto_weights(window, *args)[0]


def predictive_interval(truth: np.ndarray, se: np.ndarray, alpha: float) -> tuple[float, float, float, float]:
    """What one more experiment of this size, in one more world, would estimate: centre the mean
    true effect; variance (1 + 1/n) x the variance of the n worlds' true effects (a new world's,
    with the mean's own uncertainty) plus the mean assignment variance; Student's t with
    Satterthwaite's degrees of freedom (only the true effects' variance is estimated from n). Returns
    (low, high, variance, df)."""
    n = len(truth)
    between = (1 + 1 / n) * float(truth.var(ddof=1)) if n > 1 else 0.0
    within = float((se**2).mean())
    total = between + within
    df = (n - 1) * total**2 / between**2 if between > 0 else float("inf")
    half = float(stats.t.ppf(1 - alpha / 2, df)) * np.sqrt(total)
    centre = float(truth.mean())
    return centre - half, centre + half, total, df


def combine(per_world: pl.DataFrame, alpha: float, threshold: float) -> pl.DataFrame:
    """Per (arm, metric): the predicted effect of one experiment of the configured size (the mean
    true effect), its predictive interval (the mixture of N(true effect, assignment se^2) over
    worlds), the share of worlds whose true effect has the predicted sign, the power, and the
    verdict (robust when that share is at least `threshold`)."""
    z = float(stats.norm.ppf(1 - alpha / 2))
    out = []
    for (arm, metric), group in per_world.group_by("arm", "metric", maintain_order=True):
        truth = group["true_effect"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        se = group["se"].to_numpy().astype(np.float64)
        estimates = group["effect"].to_numpy().astype(np.float64)
        known = np.isfinite(truth) & np.isfinite(se)
        row: dict[str, Any] = {"arm": arm, "metric": metric, "family": group["family"][0], "worlds": len(group)}
        row["estimate_mean"] = float(estimates.mean())
        if not known.any():
            out.append(row | _unknown())
            continue
        t, s = truth[known], se[known]
        mean = float(t.mean())
        sign = np.sign(mean)
        agree = int((np.sign(t) == sign).sum()) if sign != 0 else 0
        share = (agree + 1) / (len(t) + 2)  # the rule of succession: k of n worlds agree
        power = float(
            (stats.norm.cdf(t / np.maximum(s, 1e-12) - z) + stats.norm.cdf(-t / np.maximum(s, 1e-12) - z)).mean()
        )
        robust = share >= threshold
        low, high, _, df = predictive_interval(t, s, alpha)
        row |= {
            "effect": mean,
            "ci_low": low,
            "ci_high": high,
            "df": df,
            "true_variance": float(t.var(ddof=1)) if len(t) > 1 else 0.0,
            "assignment_variance": float((s**2).mean()),
            "sign_probability": share,
            "power": power,
            "true_effect_min": float(t.min()),
            "true_effect_max": float(t.max()),
            "robust": robust,
            "verdict": "robust"
            if robust
            else f"not robust: {agree} of {len(t)} worlds have a true effect of the predicted sign (P {share:.0%})",
        }
        out.append(row)
    return pl.DataFrame(out, infer_schema_length=None)


def _unknown() -> dict[str, Any]:
    nan = float("nan")
    return {
        "effect": nan,
        "ci_low": nan,
        "ci_high": nan,
        "df": nan,
        "true_variance": nan,
        "assignment_variance": nan,
        "sign_probability": nan,
        "power": nan,
        "true_effect_min": nan,
        "true_effect_max": nan,
        "robust": False,
        "verdict": "not robust: the simulator has no true effect for this metric",
    }
