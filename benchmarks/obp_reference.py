"""Reference equality and speed against Open Bandit Pipeline itself (obp 0.5.7, the last release).

OBP pins Python < 3.11 and torch 1.12, so it lives in a benchmark-only virtualenv
(benchmarks/.obp-venv, made by `--setup`: torch from the machine's CPU wheel, obp installed by pip
with --no-deps --ignore-requires-python from its source distribution on the package index, then its
unpinned dependencies; never a dependency of persotool). On the same logged arrays, target action
distribution and reward-model predictions (a synthetic impression log: IMPRESSIONS impressions, 20
items, 3 positions, the reward model persotool fits), IPS, SNIPS, DM, DR, Switch-DR and DRos (at
the thresholds persotool tuned, and at tau 5 and lambda 10) are computed by persotool and by OBP's own
classes in a separate process; the values must agree to 1e-9. Times: persotool's `estimate_all` (all seven estimators,
their intervals and the threshold tuning) against OBP's six `estimate_policy_value` calls (point
estimates only, thresholds given), each on arrays already in memory, best of REPEAT.

    python benchmarks/obp_reference.py             # about a minute (the virtualenv first: one more); run alone
    python benchmarks/obp_reference.py --setup     # only make the virtualenv
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np

from public_data import from_index
from results_file import machine, write_results

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "obp_reference.json"
VENV = HERE / ".obp-venv"
OBP_SDIST = "obp-0.5.7.tar.gz"
DEPENDENCIES = ["numpy", "scipy", "scikit-learn", "pandas", "matplotlib", "seaborn", "pyyaml", "tqdm"]
DEPENDENCIES += ["mypy-extensions"]
NAMES = ("IPS", "SNIPS", "DM", "DR", "Switch-DR", "DRos")
FIXED = {"Switch-DR (tau 5)": ("switch", 5.0), "DRos (lambda 10)": ("shrink", 10.0)}  # finite thresholds too

# run by the virtualenv's python: OBP's estimators on the saved arrays
OBP_SIDE = """
import json, sys, time
import numpy as np
from obp.ope import (DirectMethod, DoublyRobust, DoublyRobustWithShrinkage, InverseProbabilityWeighting,
                     SelfNormalizedInverseProbabilityWeighting, SwitchDoublyRobust)
import obp
a = np.load(sys.argv[1])
lam = json.loads(sys.argv[2])
repeat = int(sys.argv[3])
common = dict(reward=a["reward"], action=a["action"], position=a["position"], pscore=a["pscore"],
              action_dist=a["action_dist"])
model = dict(estimated_rewards_by_reg_model=a["q_hat"])
estimators = {
    "IPS": (InverseProbabilityWeighting(), {}),
    "SNIPS": (SelfNormalizedInverseProbabilityWeighting(), {}),
    "DM": (DirectMethod(), model),
    "DR": (DoublyRobust(), model),
    "Switch-DR": (SwitchDoublyRobust(lambda_=lam["Switch-DR"]), model),
    "DRos": (DoublyRobustWithShrinkage(lambda_=lam["DRos"]), model),
    "Switch-DR (tau 5)": (SwitchDoublyRobust(lambda_=5.0), model),
    "DRos (lambda 10)": (DoublyRobustWithShrinkage(lambda_=10.0), model),
}
values, best = {}, float("inf")
timed = ("IPS", "SNIPS", "DM", "DR", "Switch-DR", "DRos")
for _ in range(repeat):
    t = time.perf_counter()
    for name in timed:
        est, extra = estimators[name]
        values[name] = float(est.estimate_policy_value(**common, **extra))
    best = min(best, time.perf_counter() - t)
for name in set(estimators) - set(timed):
    est, extra = estimators[name]
    values[name] = float(est.estimate_policy_value(**common, **extra))
print(json.dumps({"version": obp.__version__, "values": values, "seconds": best}))
"""


def setup(venv: Path, data: Path) -> None:
    sdist = from_index("obp", OBP_SDIST, data)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)  # the CPU wheel this machine keeps on disk
    subprocess.run([*pip, "--no-deps", "--ignore-requires-python", str(sdist)], check=True)
    subprocess.run([*pip, *DEPENDENCIES], check=True)


def arrays(n: int, seed: int):
    from persotool.kernels.offpolicy.reward_model import fit_predict
    from persotool.kernels.offpolicy.synthetic import ImpressionWorld

    world = ImpressionWorld(items=20, positions=3, seed=seed)
    x, logged, dists = world.log(n, np.random.default_rng(seed + 1), targets=("far",))
    model = fit_predict(x, logged.item, logged.position, logged.reward, world.items, world.positions, seed=seed)
    return logged, dists["far"].astype(np.float64), model.q(slice(None)).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="store_true", help="make the OBP virtualenv and stop")
    parser.add_argument("--venv", type=Path, default=VENV)
    parser.add_argument("--impressions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.setup:
        setup(args.venv, args.data)
        return
    python = args.venv / "bin" / "python"
    if not python.is_file():
        setup(args.venv, args.data)
    from persotool.kernels.offpolicy import estimators as ope

    started = time.perf_counter()
    logged, dist, q_hat = arrays(args.impressions, seed=5)
    ours, best = {}, float("inf")
    for _ in range(args.repeat):
        t = time.perf_counter()
        found = ope.estimate_all(logged, dist, q_hat)
        best = min(best, time.perf_counter() - t)
    ours = {e.name: e.value for e in found}
    w = ope.weights(logged, dist)
    dm, q = ope.direct_terms(logged, dist, q_hat)
    for name, (kind, lam_) in FIXED.items():
        ours[name] = float(np.mean(dm + ope.shrunk(w, kind, lam_) * (logged.reward - q)))
    lam = {e.name: e.hyperparameter for e in found if e.name in ("Switch-DR", "DRos")}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "arrays.npz"
        np.savez(
            path,
            reward=logged.reward,
            action=logged.item,
            position=logged.position,
            pscore=logged.pscore,
            action_dist=dist,
            q_hat=q_hat,
        )
        done = subprocess.run(
            [str(python), "-c", OBP_SIDE, str(path), json.dumps(lam), str(args.repeat)],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"OBP failed: {done.stderr[-2000:]}")
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    rows = {
        name: {
            "persotool": ours[name],
            "obp": theirs["values"][name],
            "difference": abs(ours[name] - theirs["values"][name]),
        }
        for name in (*NAMES, *FIXED)
    }
    worst = max(r["difference"] for r in rows.values())
    report = {
        "machine": machine(),
        "obp": theirs["version"],
        "impressions": args.impressions,
        "items": dist.shape[1],
        "positions": dist.shape[2],
        "thresholds": lam,
        "estimators": rows,
        "largest_difference": worst,
        "equal": worst < 1e-9,
        "seconds": {"persotool": round(best, 3), "obp": round(theirs["seconds"], 3)},
        "ratio_obp_to_persotool": round(theirs["seconds"] / best, 2),
        "wall": round(time.perf_counter() - started, 1),
    }
    write_results(args.out, report)
    if worst >= 1e-9:
        raise SystemExit(f"persotool and OBP differ by {worst:.3g} (more than 1e-9)")


if __name__ == "__main__":
    sys.exit(main())
