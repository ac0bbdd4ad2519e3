"""Off-policy evaluation at scale: IMPRESSIONS impressions (default 10 million) of 20 items at 3
positions from the known-truth contextual world, one target written as an action_dist.npy
(float32, memory-mapped), all seven estimators with normal intervals. Timed apart: the reward
model (strength chosen on a 200,000-impression sample, then one cross-fit over all), the
estimators, and the percentile bootstrap (`--resamples` resamples of the per-impression terms,
reported per resample). The baseline, in the
same run: the same seven estimators as OBP's formulas in plain numpy on in-memory arrays (the full
(impressions, items, positions) prediction array included), what a user without persotool would
write; the ratio is persotool's estimator time over it. Peak memory (RSS) of the process is
reported.

    python benchmarks/ope.py                     # about 5 minutes; run alone
    python benchmarks/ope.py --impressions 1000000
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from results_file import machine, write_results

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "ope.json"
TARGET_SECONDS = 60  # all estimators, one target, 10 million impressions, 2 cores


def _log(world, n: int, path: Path, seed: int):
    """The logger's impressions, generated a million at a time; the far target's action_dist
    written straight into a memory-mapped .npy."""
    from persotool.kernels.offpolicy.estimators import Logged

    rng = np.random.default_rng(seed)
    dist = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, world.items, world.positions))
    x = np.empty((n, world.d))
    item, pos, reward, pscore = (np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n), np.empty(n))
    for start in range(0, n, 1_000_000):
        sl = slice(start, min(n, start + 1_000_000))
        m = sl.stop - sl.start
        x[sl] = rng.normal(size=(m, world.d))
        pos[sl] = rng.integers(0, world.positions, m)
        pi_b = world.policy("logger", x[sl])
        item[sl] = (pi_b.cumsum(axis=1) > rng.random(m)[:, None]).argmax(axis=1)
        click = world.click(x[sl], pos[sl])[np.arange(m), item[sl]]
        reward[sl] = rng.random(m) < click
        pscore[sl] = pi_b[np.arange(m), item[sl]]
        dist[sl] = np.repeat(world.policy("far", x[sl])[:, :, None], world.positions, axis=2)
    dist.flush()
    del dist
    return x, Logged(item, pos, reward, pscore)


def _baseline(logged, dist: np.ndarray, q_hat: np.ndarray) -> dict[str, float]:
    """OBP's formulas, plainly, on in-memory arrays (Switch-DR and DRos at one fixed threshold)."""
    n = logged.n
    rows = np.arange(n)
    iw = dist[rows, logged.item, logged.position] / logged.pscore
    q_at = q_hat[rows, :, logged.position]
    pi_at = dist[rows, :, logged.position]
    dm = np.average(q_at, weights=pi_at, axis=1)
    q_fact = q_hat[rows, logged.item, logged.position]
    r = logged.reward
    lam = 100.0
    out = {
        "IPS": (iw * r).mean(),
        "SNIPS": (iw * r).sum() / iw.sum(),
        "DM": dm.mean(),
        "DR": (dm + iw * (r - q_fact)).mean(),
        "SNDR": (dm + iw * (r - q_fact) / iw.mean()).mean(),
        "Switch-DR": (dm + (iw <= lam) * iw * (r - q_fact)).mean(),
        "DRos": (dm + lam * iw / (iw**2 + lam) * (r - q_fact)).mean(),
    }
    return {k: float(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=10_000_000)
    parser.add_argument("--resamples", type=int, default=100, help="bootstrap resamples timed (at least 100)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from persotool.kernels.offpolicy import estimators as ope
    from persotool.kernels.offpolicy.reward_model import fit_predict
    from persotool.kernels.offpolicy.synthetic import ImpressionWorld

    world = ImpressionWorld(items=20, positions=3, d=4, seed=1)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "far.npy"
        started = time.perf_counter()
        x, logged = _log(world, args.impressions, path, seed=2)
        seconds["generate"] = time.perf_counter() - started
        dist = np.load(path, mmap_mode="r")
        started = time.perf_counter()
        model = fit_predict(x, logged.item, logged.position, logged.reward, world.items, world.positions, seed=0)
        seconds["reward_model"] = time.perf_counter() - started
        started = time.perf_counter()
        found = ope.estimate_all(logged, dist, model)
        diagnostics = ope.diagnostics(logged, dist)
        seconds["estimators"] = time.perf_counter() - started
        started = time.perf_counter()
        ope.estimate_all(logged, dist, model, interval="bootstrap", bootstrap=args.resamples)
        booted = time.perf_counter() - started
        seconds["bootstrap_per_resample"] = max(booted - seconds["estimators"], 0.0) / args.resamples
        started = time.perf_counter()
        in_memory = np.asarray(dist)
        q_hat = model.q_hat
        seconds["baseline_load"] = time.perf_counter() - started
        started = time.perf_counter()
        base = _baseline(logged, in_memory, q_hat)
        seconds["baseline_estimators"] = time.perf_counter() - started
    ours = {e.name: e.value for e in found}
    report = {
        "impressions": args.impressions,
        "items": world.items,
        "positions": world.positions,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "ratio_to_baseline": round(seconds["estimators"] / seconds["baseline_estimators"], 2),
        "agreement": {k: abs(ours[k] - base[k]) for k in ("IPS", "SNIPS", "DM", "DR", "SNDR")},
        "truth": world.value["far"],
        "estimates": ours,
        "ess": diagnostics["ess"],
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "target": {"estimators_seconds": TARGET_SECONDS, "at": 10_000_000},
        "met": bool(seconds["reward_model"] + seconds["estimators"] <= TARGET_SECONDS),
        "machine": machine(),
    }
    write_results(args.out, report)


if __name__ == "__main__":
    sys.exit(main())
