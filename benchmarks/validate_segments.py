"""Segment effects checked against a planted segment-level harm and against an A/A.

One world of POPULATION simulated users fitted to a `datasets synth` log (3,000 users, 300 items)
runs three arms once (most popular, the oracle and the adverse arm, which serves each user their
least liked items), so every user's outcome under each is known. The planted arm is built from
those potential outcomes: the oracle's for every user, except the heaviest fifth by logged activity
(the top quintile of `activity`), where a fixed random share of them get the adverse arm's: it
helps most users and truly harms that segment (its other users get the control's outcomes), by
about HARM standard deviations of engagements (the share is chosen for it; the exact effect is
reported). Then, over REPLICATES assignments
(the experiment name salts the hash), the experiment is analysed with `[analysis] segments =
["activity"]` in five bins: how often the harmed segment's engagements effect is significant and
negative, and how often it is flagged as differing from the rest (target: >= 90%); and in an A/A
(the control against itself), how often any segment effect is significant, and how often any is
flagged as differing from the rest (each Holm-corrected over every segment, metric and arm: at
most alpha = 5% each, within Monte Carlo error).

    python benchmarks/validate_segments.py [--replicates 200]     # about 5 minutes; run alone
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
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
RESULTS = HERE / "results" / "validate_segments.json"


def mixed(base, other, take: np.ndarray):
    """An arm whose every per-user outcome is `other`'s where `take`, else `base`'s."""
    out = copy.copy(base)
    for f in dataclasses.fields(base):
        a, b = getattr(base, f.name), getattr(other, f.name)
        if isinstance(a, np.ndarray) and a.ndim and len(a) == len(take) and a.shape == b.shape:
            setattr(out, f.name, np.where(take.reshape(-1, *([1] * (a.ndim - 1))), b, a))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--population", type=int, default=20_000)
    parser.add_argument("--harm", type=float, default=0.3, help="planted harm, in sds of engagements")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from persotool.kernels.config import load_config
    from persotool.kernels.simulation import build, engine
    from persotool.kernels.simulation.spec import SimulationConfig
    from persotool.stages.simulate import segments
    from persotool.stages.simulate.analysis import analyse, user_table

    started = time.perf_counter()
    arms = [{"name": n, "policy": n, "share": 1} for n in ("popular", "oracle", "adverse")]
    settings = {
        "days": 28,
        "pre_days": 7,
        "world.population": args.population,
        "analysis.segments": ["activity"],
        "analysis.segment_bins": 5,
        "arms": arms,
    }
    with tempfile.TemporaryDirectory() as tmp:
        ds = synthetic_dataset(Path(tmp), users=3000, items=300, events=90_000, days=90)
        cfg = load_config(SimulationConfig, None, settings)
        built = build.build(ds, cfg)
        sim = engine.run_days(built, cfg, built.calibration["dataset_digest"])
        labels = segments.labels(ds, built, cfg.analysis)
    activity = labels["activity"]
    bins = sorted(set(activity.tolist()), key=lambda s: float(s.split(" ")[0]))
    target = bins[-1]  # the heaviest fifth of the logged users
    inside = activity == target
    # the harm's size: a share of the segment gets the adverse arm (its users' engagement gap, in sds)
    pop, adv = user_table(sim, "popular", cfg), user_table(sim, "adverse", cfg)
    enrolled = (pop["first_exposure"] >= 0) & (adv["first_exposure"] >= 0)
    sd = float(pop["engagements"][enrolled].std())
    gap = float((adv["engagements"] - pop["engagements"])[enrolled & inside].mean()) / sd
    share = min(1.0, args.harm / abs(gap)) if gap < 0 else 1.0
    rng = np.random.default_rng(7)
    take = inside & (rng.random(built.n_users) < share)
    planted = mixed(mixed(sim.arms["oracle"], sim.arms["popular"], inside), sim.arms["adverse"], take)
    ab = dataclasses.replace(sim, arms={"popular": sim.arms["popular"], "planted": planted})
    aa = dataclasses.replace(sim, arms={"popular": sim.arms["popular"], "copy": sim.arms["popular"]})
    two = [{"name": "popular", "policy": "popular", "share": 1}]
    planted_arm = {"name": "planted", "policy": "oracle", "share": 1}  # its outcomes are the mixture above
    cfg_ab = load_config(SimulationConfig, None, {**settings, "arms": [*two, planted_arm]})
    cfg_aa = load_config(SimulationConfig, None, {**settings, "arms": [*two, {**two[0], "name": "copy"}]})
    found, differs, true_effects, null_significant, null_differential, null_rows = [], [], [], [], [], 0
    for r in range(args.replicates):
        result = analyse(ab, built, cfg_ab.model_copy(update={"name": f"segments-{r}"}), light=True, segments=labels)
        frame = result.segments
        row = frame.filter((frame["segment"] == target) & (frame["metric"] == "engagements")).row(0, named=True)
        found.append(bool(row["significant"]) and row["effect"] < 0)
        differs.append(bool(row["differential"]))
        true_effects.append(row["true_effect"])
        null = analyse(aa, built, cfg_aa.model_copy(update={"name": f"segments-aa-{r}"}), light=True, segments=labels)
        null_significant.append(bool(null.segments["significant"].any()))
        null_differential.append(bool(null.segments["differential"].any()))
        null_rows = len(null.segments)
    helped = frame.filter((frame["segment"] != target) & (frame["metric"] == "engagements"))
    report = {
        "machine": machine(),
        "replicates": args.replicates,
        "population": args.population,
        "segment": f"activity {target}",
        "segment_share": float(inside.mean()),
        "adverse_share_in_segment": share,
        "true_effect": float(np.mean(true_effects)),
        "true_effect_sd": float(np.mean(true_effects)) / sd,
        "other_segments_true_effects": helped["true_effect"].to_list(),
        "found": float(np.mean(found)),
        "differential": float(np.mean(differs)),
        "aa_significant": float(np.mean(null_significant)),
        "aa_differential": float(np.mean(null_differential)),
        "aa_tests_per_replicate": null_rows,
        "alpha": cfg.analysis.alpha,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_results(args.out, report)


if __name__ == "__main__":
    sys.exit(main())
