"""Full validation of the simulated A/B tests against known ground truth (the fast versions are in
tests/simulation): on a world calibrated from the bundled MovieLens logs,

- A/A: two identical arms; over many fresh random assignments, the share of p < 0.05 of every
  reported p-value (Welch / delta method / CUPED / log-rank / RMST) is within binomial tolerance of 5%,
  and the mSPRT stops on some day of the test at most that often;
- A/B: popular as control against oracle and random; the 95% CI covers the true effect (exact, from
  common random numbers) in at least 93% of assignments, for every metric;
- the oracle beats random on engagement and on retention (true effects).
Results: benchmarks/results/validate_simulation.json.

    python benchmarks/validate_simulation.py [--replicates 500] [--population 5000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "validate_simulation.json"
REPORTED_P = ("p_value", "cuped_p_value", "logrank_p")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=500)
    parser.add_argument("--population", type=int, default=5000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import numpy as np

    from persotool.config import IngestConfig
    from persotool.data.ingest import ingest
    from persotool.data.presets import preset
    from persotool.simulation import engine, world
    from persotool.simulation.analysis import analyse
    from persotool.simulation.experiment import load_config

    started = time.perf_counter()
    alpha = 0.05
    tolerance = 3 * np.sqrt(alpha * (1 - alpha) / args.replicates)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(tmp) / "movielens"
        ratings = str(ROOT / "datasets" / "movielens-small" / "ratings.csv")
        ingest(IngestConfig.model_validate(preset("movielens", ratings)), [ratings], dataset)

        def simulate(arms):
            cfg = load_config(
                None, {"days": args.days, "pre_days": 14, "world.population": args.population, "arms": arms}
            )
            built = world.build(dataset, cfg)
            return cfg, built, engine.run(built, cfg, built.calibration["dataset_digest"])

        cfg, built, sim = simulate(
            [{"name": "a", "policy": "popular", "share": 1}, {"name": "b", "policy": "popular", "share": 1}]
        )
        rejections: dict[str, int] = {}
        stopped: dict[str, int] = {}
        for r in range(args.replicates):
            replicate = cfg.model_copy(update={"name": f"aa-{r}"})
            results = analyse(sim, built, replicate, light=True, sequential=True).results
            for row in results.iter_rows(named=True):
                for column in REPORTED_P:
                    if row.get(column) is not None:
                        key = f"{row['metric']}:{column}"
                        rejections[key] = rejections.get(key, 0) + int(row[column] < alpha)
                if row["metric"] in ("engagements", "visits"):
                    # mSPRT: a stop on any day of the test is a false positive
                    key = f"{row['metric']}:msprt_any_day"
                    stopped[key] = stopped.get(key, 0) + int(row.get("first_stop_day") is not None)
        fpr = {k: v / args.replicates for k, v in rejections.items()}
        msprt = {k: v / args.replicates for k, v in stopped.items()}
        print(f"A/A done ({time.perf_counter() - started:.0f}s)", file=sys.stderr)

        cfg, built, sim = simulate(
            [
                {"name": "popular", "policy": "popular", "share": 2},
                {"name": "oracle", "policy": "oracle", "share": 1},
                {"name": "random", "policy": "random", "share": 1},
            ]
        )
        covered: dict[str, int] = {}
        for r in range(args.replicates):
            results = analyse(sim, built, cfg.model_copy(update={"name": f"ab-{r}"}), light=True).results
            for row in results.iter_rows(named=True):
                key = f"{row['arm']}:{row['metric']}"
                covered[key] = covered.get(key, 0) + int(bool(row["covers_truth"]))
        coverage = {k: v / args.replicates for k, v in covered.items()}
        truth = analyse(sim, built, cfg, light=True).results
        true_effects = {f"{row['arm']}:{row['metric']}": row["true_effect"] for row in truth.iter_rows(named=True)}
    oracle_vs_random = {
        "engagements": true_effects["oracle:engagements"] - true_effects["random:engagements"],
        "rmst_days": true_effects["oracle:rmst_days"] - true_effects["random:rmst_days"],
        "churned": true_effects["oracle:churned"] - true_effects["random:churned"],
    }
    report = {
        "replicates": args.replicates,
        "population": args.population,
        "days": args.days,
        "alpha": alpha,
        "aa_false_positive_rate": fpr,
        "aa_tolerance": round(float(tolerance), 4),
        "aa_pass": all(abs(v - alpha) <= tolerance for v in fpr.values()),
        "aa_msprt_false_positive_rate_any_day": msprt,
        "aa_msprt_pass": all(v <= alpha + tolerance for v in msprt.values()),
        "ab_coverage": coverage,
        "ab_min_coverage": min(coverage.values()),
        "ab_pass": min(coverage.values()) >= 0.93,
        "oracle_minus_random_true_effect": oracle_vs_random,
        "oracle_beats_random": oracle_vs_random["engagements"] > 0
        and oracle_vs_random["rmst_days"] > 0
        and oracle_vs_random["churned"] < 0,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_results(args.out, report)


if __name__ == "__main__":
    main()
