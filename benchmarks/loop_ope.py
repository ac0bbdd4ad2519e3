"""Closing the loop: off-policy estimates of one simulated arm from another arm's impression log,
against the simulator's exact values.

A `datasets synth` log (1,000 users, 60 items) calibrates one world; over SEEDS seeds of the
experiment (the same world, new daily draws, assignment and exploration) two arms, most popular
and the oracle, run as epsilon-mixtures of whole slates (`impressions.epsilon`, slates of 3, 14
days, position-based examination, no slate-similarity penalty, so every position's expected reward
is exact). Each arm's log of its own users is the logged data; the other arm is the target. For
each estimator: bias against the target's exact value per impression on the logger's visits (with
its Monte Carlo standard error), RMSE, and how often its 95% interval covers that value (target:
>= 93%), and how often it covers the target's realised value in its own arm (what an A/B test of it
would measure: its users' states move with what it serves, which one step of reweighting cannot see).
The world: clicks at a base rate of 0.3 before position discounting, epsilon 0.5.

Then the coverage grid: worlds from rare to common clicks (base rates 0.05-0.4) and little to much
exploration (epsilon 0.2-0.8), GRID_SEEDS seeds each, both directions; coverage of the exact value
by the effective number of rewards the estimate rests on (ESS x the click rate), the diagnostic
behind `ope`'s warning.

    python benchmarks/loop_ope.py [--seeds 200] [--grid-seeds 25]   # about 10 minutes on 2 cores; run alone
"""

from __future__ import annotations

import argparse
import itertools
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from public_data import synthetic_dataset
from results_file import machine, write_results

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "loop_ope.json"
PAIRS = (("popular", "oracle"), ("oracle", "popular"))


def data(folder: Path) -> Path:
    """The `datasets synth` log the worlds are calibrated on, ingested."""
    return synthetic_dataset(folder, users=1000, items=60, events=20_000, days=60)


def world(ds: Path, epsilon: float, population: int, days: int, base: float):
    from persotool.kernels.config import load_config
    from persotool.kernels.simulation import build
    from persotool.kernels.simulation.spec import SimulationConfig

    settings = {
        "days": days,
        "pre_days": 0,
        "slate_size": 3,
        "world.population": population,
        "behaviour.examination": "log-discount",
        "behaviour.similarity_weight": 0.0,
        "behaviour.base_engagement": base,
        "impressions.epsilon": epsilon,
        "arms": [
            {"name": "popular", "policy": "popular", "share": 1},
            {"name": "oracle", "policy": "oracle", "share": 1},
        ],
    }
    cfg = load_config(SimulationConfig, None, settings)
    return cfg, build.build(ds, cfg)


def replicate(cfg, built, seed: int) -> dict:
    from persotool.kernels.offpolicy import estimators as ope
    from persotool.kernels.offpolicy.reward_model import fit_predict
    from persotool.kernels.simulation import engine
    from persotool.stages.simulate import impressions

    cfg = cfg.model_copy(update={"seed": seed})
    recorder = impressions.recorder(built, cfg)
    engine.run_days(built, cfg, built.calibration["dataset_digest"], recorder=recorder)
    logs = recorder.finish()
    out = {}
    for logger, target in PAIRS:
        log = logs[logger]
        reward = log.reward.astype(np.float64)
        logged = ope.Logged(log.item, log.position, reward, log.propensity)
        model = fit_predict(None, log.item, log.position, reward, built.n_items, cfg.slate_size, seed=seed)
        dist = log.dists[target]
        out[f"{target} from {logger}"] = {
            "value": float(log.values[target].mean()),
            "own_run": float(logs[target].reward.mean()),
            "logger_value": float(reward.mean()),
            "impressions": len(log),
            **{k: v for k, v in ope.diagnostics(logged, dist).items() if k in ("ess", "effective_rewards")},
            "estimates": {e.name: (e.value, e.low, e.high) for e in ope.estimate_all(logged, dist, model)},
            "normal": {
                e.name: (e.value, e.low, e.high) for e in ope.estimate_all(logged, dist, model, interval="normal")
            },
        }
    return out


def summarise(runs: list[dict]) -> dict:
    out = {}
    for key in runs[0]:
        rows = [r[key] for r in runs]
        value = np.array([r["value"] for r in rows])
        own = np.array([r["own_run"] for r in rows])
        table = {}
        for name in rows[0]["estimates"]:
            v = np.array([r["estimates"][name] for r in rows])
            error = v[:, 0] - value
            table[name] = {
                "bias": float(error.mean()),
                "bias_mc_se": float(error.std(ddof=1) / np.sqrt(len(error))),
                "rmse": float(np.sqrt(np.mean(error**2))),
                "coverage": float(np.mean((v[:, 1] <= value) & (value <= v[:, 2]))),
                "covers_own_run": float(np.mean((v[:, 1] <= own) & (own <= v[:, 2]))),
                "coverage_normal": float(
                    np.mean([r["normal"][name][1] <= r["value"] <= r["normal"][name][2] for r in rows])
                ),
                "width": float(np.mean(v[:, 2] - v[:, 1])),
            }
        out[key] = {
            "value": float(value.mean()),
            "own_run": float(own.mean()),
            "logger_value": float(np.mean([r["logger_value"] for r in rows])),
            "impressions": float(np.mean([r["impressions"] for r in rows])),
            "ess": float(np.mean([r["ess"] for r in rows])),
            "effective_rewards": float(np.mean([r["effective_rewards"] for r in rows])),
            "estimators": table,
        }
    return out


BINS = (0, 10, 30, 50, 100, float("inf"))  # effective rewards (ESS x the click rate)
COVERED = ("IPS", "SNIPS", "DR", "SNDR", "DRos")


def grid(ds: Path, bases, epsilons, seeds: int, population: int, days: int) -> dict:
    """Coverage of the exact value by the effective number of rewards an estimate rests on, over
    worlds from rare to common clicks and little to much exploration."""
    rows = []
    for base in bases:
        for epsilon in epsilons:
            cfg, built = world(ds, epsilon, population, days, base)
            for seed in range(seeds):
                for r in replicate(cfg, built, 10_000 + seed).values():
                    rows.append(
                        {
                            "base": base,
                            "epsilon": epsilon,
                            "effective_rewards": r["effective_rewards"],
                            "ess": r["ess"],
                            **{e: r["estimates"][e][1] <= r["value"] <= r["estimates"][e][2] for e in COVERED},
                        }
                    )
    bins = []
    for low, high in itertools.pairwise(BINS):
        inside = [r for r in rows if low <= r["effective_rewards"] < high]
        bins.append(
            {
                "low": low,
                "high": None if high == float("inf") else high,
                "estimates": len(inside),
                "ess": [float(min(r["ess"] for r in inside)), float(max(r["ess"] for r in inside))] if inside else None,
                "coverage": {e: float(np.mean([r[e] for r in inside])) if inside else None for e in COVERED},
            }
        )
    return {"bases": list(bases), "epsilons": list(epsilons), "seeds": seeds, "bins": bins}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--epsilon", type=float, default=0.5)
    parser.add_argument("--population", type=int, default=2000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--base-engagement", type=float, default=0.3)
    parser.add_argument("--grid-seeds", type=int, default=25, help="seeds per world of the coverage grid (0: off)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ds = data(Path(tmp))
        cfg, built = world(ds, args.epsilon, args.population, args.days, args.base_engagement)
        runs = [replicate(cfg, built, seed) for seed in range(args.seeds)]
        cells = (
            grid(ds, (0.05, 0.1, 0.2, 0.3, 0.4), (0.2, 0.5, 0.8), args.grid_seeds, args.population, args.days)
            if args.grid_seeds
            else None
        )
    report = {
        "machine": machine(),
        "seeds": args.seeds,
        "epsilon": args.epsilon,
        "population": args.population,
        "days": args.days,
        "slate_size": cfg.slate_size,
        "items": built.n_items,
        "base_engagement": args.base_engagement,
        "pairs": summarise(runs),
        "grid": cells,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_results(args.out, report)


if __name__ == "__main__":
    sys.exit(main())
