"""Full validation of the simulated A/B tests against known ground truth (the fast versions are in
tests/stages/simulate): on a world calibrated from the bundled MovieLens logs, analysed as a real
platform would (users enter at their first visit; retention, churn and survival from first exposure),

- A/A, with two equal arms and with three arms at 0.2/0.3/0.5: over many fresh random assignments,
  the share of p < 0.05 of every reported p-value (the tested one, the one without CUPED, log-rank)
  of every metric and arm is within binomial tolerance of 5%; the sequential test (mSPRT on the
  arriving users) stops on some day at most that often per metric, and over the primary family;
  the Holm-corrected primary family rejects at most that often;
- A/B: popular as control against oracle and random; the 95% CI covers the true effect (exact, from
  common random numbers) in at least 93% of assignments, for every metric, in the triggered and the
  intention-to-treat analysis;
- the oracle beats random on engagement and on observed retention (true effects);
- robustness over worlds (`simulate --worlds`), on a small `datasets synth` log: a pool of 210
  worlds (each its own truth family drawn by held-out weight, behaviour draws, users, visit model
  and seed) and 200 replicate experiments of 10 consecutive worlds each (they overlap: the rate
  estimates are unbiased, their noise larger than independent replicates'). Two random arms whose
  true effect is zero in expectation (and not exactly zero in any world) are called robust in at
  most 10% of replicates; the oracle's engagement effect is robust in most; and the 95% predictive
  interval of one replicate covers the estimate of the next world after its block (a fresh
  experiment in a fresh world) at about its nominal rate;
- planted harm: an arm serving each user's least liked items (`adverse`) against popular, in the
  demo's world and size (20,000 users, 14 + 35 days): over fresh assignments, how often the
  retention guardrails (churned, retention_d7) and engagements catch it (target >= 80%).
Results: benchmarks/results/validate_simulation.json.

    python benchmarks/validate_simulation.py [--replicates 500] [--ab-replicates 2000] [--population 5000]
    python benchmarks/validate_simulation.py --only robustness   # that part alone, merged into the results
    python benchmarks/validate_simulation.py --only harm
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from results_file import machine, write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "validate_simulation.json"
REPORTED_P = ("p_value", "raw_p_value", "logrank_p")
PRIMARY = ["engagements", "visits"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=500, help="A/A assignments per design")
    parser.add_argument(
        "--ab-replicates",
        type=int,
        default=2000,
        help="A/B assignments per view: coverage is held to 93%% for each of about 40 (arm, metric, view) "
        "triples, so its binomial noise must be small (sd 0.5 points at 2000)",
    )
    parser.add_argument("--population", type=int, default=5000)
    parser.add_argument("--power-replicates", type=int, default=200, help="assignments per size, sequential power")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1800, 6000, 30000], help="world sizes of the A/A by size"
    )
    parser.add_argument("--size-replicates", type=int, default=1000, help="A/A assignments per size")
    parser.add_argument(
        "--power-sizes", type=int, nargs="+", help="world sizes of the sequential power (default 1000 2000 POPULATION)"
    )
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--robustness-replicates", type=int, default=200, help="replicate robustness experiments")
    parser.add_argument("--robustness-worlds", type=int, default=10, help="worlds per robustness experiment")
    parser.add_argument("--robustness-pool", type=int, default=210, help="worlds simulated for the replicates")
    parser.add_argument("--workers", type=int, default=2, help="processes for the robustness worlds")
    parser.add_argument("--harm-replicates", type=int, default=200, help="assignments of the planted-harm check")
    parser.add_argument("--harm-population", type=int, default=20000, help="simulated users of the planted-harm check")
    parser.add_argument("--only", choices=["robustness", "harm"], help="run one part, merged into the results")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if args.only:
        import json

        report = json.loads(args.out.read_text()) if args.out.is_file() else {}
        if args.only == "robustness":
            report["robustness_null"] = robustness_null(args)
        else:
            report["planted_harm"] = planted_harm(args)
        report.setdefault("parts_machine", {})[args.only] = machine()
        write_results(args.out, report)
        return
    import numpy as np

    from persotool.kernels.config import load_config
    from persotool.kernels.simulation import build, engine
    from persotool.kernels.simulation.spec import SimulationConfig
    from persotool.stages.ingest.config import IngestConfig
    from persotool.stages.ingest.presets import preset
    from persotool.stages.ingest.run import ingest
    from persotool.stages.simulate.analysis import analyse

    started = time.perf_counter()
    alpha = 0.05
    tolerance = 3 * np.sqrt(alpha * (1 - alpha) / args.replicates)
    report: dict = {
        "replicates": args.replicates,
        "ab_replicates": args.ab_replicates,
        "power_replicates": args.power_replicates,
        "population": args.population,
        "days": args.days,
        "alpha": alpha,
        "machine": machine(),
    }
    report["aa_tolerance"] = round(float(tolerance), 4)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(tmp) / "movielens"
        ratings = str(ROOT / "datasets" / "movielens-small" / "ratings.csv")
        ingest(IngestConfig.model_validate(preset("movielens", ratings)), [ratings], dataset)

        def simulate(arms, population=args.population, **analysis):
            overrides = {"days": args.days, "pre_days": 14, "world.population": population, "arms": arms}
            overrides |= {f"analysis.{k}": v for k, v in analysis.items()}
            cfg = load_config(SimulationConfig, None, overrides)
            built = build.build(dataset, cfg)
            return cfg, built, engine.run_days(built, cfg, built.calibration["dataset_digest"])

        designs = {
            "two_equal_arms": [("a", 0.5), ("b", 0.5)],
            "three_arms_20_30_50": [("a", 0.2), ("b", 0.3), ("c", 0.5)],
        }
        for design, shares in designs.items():
            arms = [{"name": n, "policy": "popular", "share": s} for n, s in shares]
            cfg, built, sim = simulate(arms, primary=PRIMARY, guardrails=["churned"])
            rejections: dict[str, int] = {}
            stopped: dict[str, int] = {}
            family_stops = family_rejections = unbalanced = 0
            for r in range(args.replicates):
                result = analyse(sim, built, cfg.model_copy(update={"name": f"aa-{r}"}), light=True, sequential=True)
                results = result.results
                unbalanced += any(row["unbalanced"] for row in result.balance)
                for row in results.iter_rows(named=True):
                    for column in REPORTED_P:
                        if row.get(column) is not None and row[column] == row[column]:
                            key = f"{row['arm']}:{row['metric']}:{column}"
                            rejections[key] = rejections.get(key, 0) + int(row[column] < alpha)
                primary = results.filter(results["family"] == "primary")
                family_rejections += int(bool((primary["p_adjusted"] < alpha).any()))
                seq = result.sequential
                for (arm, metric), group in seq.group_by("arm", "metric"):
                    stopped[f"{arm}:{metric}"] = stopped.get(f"{arm}:{metric}", 0) + int(group["stop"].any())
                family_stops += int(bool(seq["stop"].any()))
            fpr = {k: v / args.replicates for k, v in rejections.items()}
            msprt = {k: v / args.replicates for k, v in stopped.items()}
            report[f"aa_{design}"] = {
                "false_positive_rate": fpr,
                "pass": bool(all(abs(v - alpha) <= tolerance for v in fpr.values())),
                "primary_family_holm_rate": family_rejections / args.replicates,
                "balance_warning_rate": unbalanced / args.replicates,
                "sequential_any_day_rate": msprt,
                "sequential_primary_family_rate": family_stops / args.replicates,
                "sequential_pass": bool(
                    all(v <= alpha + tolerance for v in msprt.values())
                    and family_stops / args.replicates <= alpha + tolerance
                ),
            }
            print(f"A/A {design} done ({time.perf_counter() - started:.0f}s)", file=sys.stderr)

        # A/A at growing sizes (about 300, 1,000 and 5,000 enrolled users): every reported p-value's
        # rejection rate against a 99% binomial band around alpha; with about 33 checks per size,
        # chance alone puts one outside in about a third of runs
        report["aa_by_size"] = []
        band = 2.576 * np.sqrt(alpha * (1 - alpha) / args.size_replicates)
        pair = [{"name": "a", "policy": "popular", "share": 0.5}, {"name": "b", "policy": "popular", "share": 0.5}]
        for size in args.sizes:
            cfg_s, built_s, sim_s = simulate(pair, population=size, primary=PRIMARY, guardrails=["churned"])
            counts: dict[str, int] = {}
            enrolled = []
            for r in range(args.size_replicates):
                result = analyse(sim_s, built_s, cfg_s.model_copy(update={"name": f"size-{r}"}), light=True)
                enrolled.append(sum(result.arm_sizes.values()))
                for row in result.results.iter_rows(named=True):
                    for column in REPORTED_P:
                        if row.get(column) is not None and row[column] == row[column]:
                            key = f"{row['metric']}:{column}"
                            counts[key] = counts.get(key, 0) + int(row[column] < alpha)
            rates = {k: v / args.size_replicates for k, v in counts.items()}
            outside = {k: v for k, v in rates.items() if abs(v - alpha) > band}
            report["aa_by_size"].append(
                {
                    "population": size,
                    "enrolled": float(np.mean(enrolled)),
                    "replicates": args.size_replicates,
                    "band_99": round(float(band), 4),
                    "false_positive_rate": rates,
                    "outside_band": outside,
                }
            )
        print(f"A/A by size done ({time.perf_counter() - started:.0f}s)", file=sys.stderr)

        cfg, built, sim = simulate(
            [
                {"name": "popular", "policy": "popular", "share": 2},
                {"name": "oracle", "policy": "oracle", "share": 1},
                {"name": "random", "policy": "random", "share": 1},
            ]
        )
        for population in ("triggered", "itt"):
            view = cfg.model_copy(update={"analysis": cfg.analysis.model_copy(update={"enrollment": population})})
            covered: dict[str, int] = {}
            for r in range(args.ab_replicates):
                results = analyse(sim, built, view.model_copy(update={"name": f"ab-{r}"}), light=True).results
                for row in results.iter_rows(named=True):
                    key = f"{row['arm']}:{row['metric']}"
                    covered[key] = covered.get(key, 0) + int(bool(row["covers_truth"]))
            coverage = {k: v / args.ab_replicates for k, v in covered.items()}
            report[f"ab_coverage_{population}"] = coverage
            report[f"ab_min_coverage_{population}"] = min(coverage.values())
        truth = analyse(sim, built, cfg, light=True).results
        true_effects = {f"{row['arm']}:{row['metric']}": row["true_effect"] for row in truth.iter_rows(named=True)}
        # the sequential test's power: random against popular at growing sizes, each size's stop rate
        # beside the fixed-horizon test's rejection rate, and how often it stops where the
        # fixed-horizon p is below 0.001
        report["sequential_power"] = []
        arms = [
            {"name": "popular", "policy": "popular", "share": 0.5},
            {"name": "random", "policy": "random", "share": 0.5},
        ]
        for size in args.power_sizes or (1000, 2000, args.population):
            cfg_s, built_s, sim_s = simulate(arms, population=size, primary=["engagements"])
            fixed, stops, strong, strong_stops, days, enrolled = 0, 0, 0, 0, [], []
            for r in range(args.power_replicates):
                result = analyse(
                    sim_s, built_s, cfg_s.model_copy(update={"name": f"sq-{r}"}), light=True, sequential=True
                )
                row = result.results.filter(result.results["metric"] == "engagements").row(0, named=True)
                seq = result.sequential.filter(result.sequential["stop"])
                enrolled.append(sum(result.arm_sizes.values()))
                fixed += int(row["p_value"] < alpha)
                stops += int(len(seq) > 0)
                if len(seq):
                    days.append(int(seq["day"].min()))
                if row["p_value"] < 0.001:
                    strong += 1
                    strong_stops += int(len(seq) > 0)
            report["sequential_power"].append(
                {
                    "population": size,
                    "enrolled": float(np.mean(enrolled)),
                    "fixed_horizon_power": fixed / args.power_replicates,
                    "sequential_stop_rate": stops / args.power_replicates,
                    "fixed_p_below_0.001": strong,
                    "stop_rate_where_fixed_p_below_0.001": strong_stops / strong if strong else None,
                    "median_stop_day": float(np.median(days)) if days else None,
                    "days": args.days,
                }
            )
        print(f"sequential power done ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    oracle_vs_random = {
        metric: true_effects[f"oracle:{metric}"] - true_effects[f"random:{metric}"]
        for metric in ("engagements", "rmst_days", "churned", "retention_d7")
    }
    report |= {
        "ab_pass": bool(min(report["ab_min_coverage_triggered"], report["ab_min_coverage_itt"]) >= 0.93),
        "oracle_minus_random_true_effect": oracle_vs_random,
        "oracle_beats_random": bool(
            oracle_vs_random["engagements"] > 0
            and oracle_vs_random["rmst_days"] > 0
            and oracle_vs_random["churned"] < 0
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }
    report["robustness_null"] = robustness_null(args)
    report["planted_harm"] = planted_harm(args)
    write_results(args.out, report)


def planted_harm(args) -> dict:
    """Does the experiment catch a recommender that serves what users dislike? The `adverse` arm
    against popular in the demo's world: each guardrail's rejection rate (in the harmful direction)
    over fresh assignments of one simulation (common random numbers: the true effects are fixed)."""
    from persotool.kernels.config import load_config
    from persotool.kernels.simulation import build, engine
    from persotool.kernels.simulation.spec import SimulationConfig
    from persotool.stages.ingest.config import IngestConfig
    from persotool.stages.ingest.presets import preset
    from persotool.stages.ingest.run import ingest
    from persotool.stages.simulate.analysis import analyse

    started = time.perf_counter()
    harmful = {"engagements": -1, "churned": +1, "retention_d7": -1, "visits": -1, "rmst_days": -1}
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(tmp) / "movielens"
        ratings = str(ROOT / "datasets" / "movielens-small" / "ratings.csv")
        ingest(IngestConfig.model_validate(preset("movielens", ratings)), [ratings], dataset)
        overrides = {
            "world.population": args.harm_population,
            "control": "popular",
            "arms": [
                {"name": "popular", "policy": "popular", "share": 0.5},
                {"name": "adverse", "policy": "adverse", "share": 0.5},
            ],
        }
        cfg = load_config(SimulationConfig, ROOT / "demo" / "simulation.toml", overrides)
        built = build.build(dataset, cfg)
        sim = engine.run_days(built, cfg, built.calibration["dataset_digest"])
        caught = dict.fromkeys(harmful, 0)
        truth: dict[str, float] = {}
        for r in range(args.harm_replicates):
            results = analyse(sim, built, cfg.model_copy(update={"name": f"harm-{r}"}), light=True).results
            for row in results.iter_rows(named=True):
                metric = row["metric"]
                if metric in harmful:
                    truth[metric] = row["true_effect"]
                    wrong_way = harmful[metric] * row["effect"] > 0
                    p_value = row["p_adjusted"] if row.get("p_adjusted") is not None else row["p_value"]
                    caught[metric] += int(bool(wrong_way and p_value < 0.05))
    power = {m: c / args.harm_replicates for m, c in caught.items()}
    return {
        "population": args.harm_population,
        "days": cfg.days,
        "replicates": args.harm_replicates,
        "truth": built.calibration.get("truth"),
        "true_effect": truth,
        "power": power,
        "retention_guardrail_power": max(power["churned"], power["retention_d7"]),
        "pass": bool(max(power["churned"], power["retention_d7"]) >= 0.8),
        "seconds": round(time.perf_counter() - started, 1),
    }


def robustness_null(args) -> dict:
    """The robustness verdict's error rate and the predictive interval's coverage (see the module
    docstring), on real simulations of a small synthetic world."""
    import polars as pl

    from persotool.kernels.config import load_toml
    from persotool.kernels.simulation.spec import SimulationConfig
    from persotool.stages.ingest.config import IngestConfig
    from persotool.stages.ingest.run import ingest
    from persotool.stages.simulate import robustness
    from persotool.stages.synth.config import SynthConfig
    from persotool.stages.synth.run import write

    started = time.perf_counter()
    replicates, per = args.robustness_replicates, args.robustness_worlds
    pool = max(args.robustness_pool, per + 1)
    with tempfile.TemporaryDirectory() as tmp:
        log, dataset = Path(tmp) / "log", Path(tmp) / "ds"
        write(SynthConfig(users=1500, items=400, days=90, events=60_000, seed=5), log, force=True)
        ingest(IngestConfig.model_validate(load_toml(log / "schema.toml")), [str(log / "events.csv")], dataset)
        cfg = SimulationConfig.model_validate(
            {
                "name": "robustness-null",
                "days": 14,
                "pre_days": 0,  # no pre-period: a fresh random lineup is not a novelty against the control's
                "control": "random-a",
                "world": {"population": 1500, "truth": "auto"},
                "arms": [
                    {"name": "random-a", "policy": "random", "share": 1},
                    {"name": "random-b", "policy": "random", "share": 1},
                    {"name": "oracle", "policy": "oracle", "share": 1},
                ],
                "analysis": {"primary": ["engagements"], "guardrails": ["churned", "retention_d7"], "cuped": False},
                "robustness": {"worlds": pool, "workers": args.workers},
            }
        )
        rows = robustness.run_worlds(dataset, cfg)
    alpha = 0.05
    null_robust: dict[str, int] = {}
    oracle_robust: dict[str, int] = {}
    covered: dict[str, int] = {}
    for r in range(replicates):
        block = [(r + j) % pool for j in range(per)]
        group = rows.filter(pl.col("world").is_in(block))
        fresh = rows.filter(pl.col("world") == (r + per) % pool)  # the world after the block
        combined = robustness.combine(group, alpha, cfg.robustness.sign_probability)
        for row in combined.iter_rows(named=True):
            key = f"{row['arm']}:{row['metric']}"
            target = null_robust if row["arm"] == "random-b" else oracle_robust
            target[key] = target.get(key, 0) + int(row["robust"])
            new = fresh.filter((pl.col("arm") == row["arm"]) & (pl.col("metric") == row["metric"]))
            if len(new) and row["ci_low"] == row["ci_low"]:
                estimate = new["effect"][0]
                covered[key] = covered.get(key, 0) + int(row["ci_low"] <= estimate <= row["ci_high"])
    true_null = (
        rows.filter(pl.col("arm") == "random-b")
        .group_by("metric")
        .agg(pl.col("true_effect").mean().alias("mean"), pl.col("true_effect").std().alias("sd"))
    )
    null_rates = {k: v / replicates for k, v in null_robust.items()}
    coverage = {k: v / replicates for k, v in covered.items()}
    return {
        "replicates": replicates,
        "worlds_per_replicate": per,
        "pool": pool,
        "population": 1500,
        "truths": rows.unique("world")["truth"].value_counts(sort=True).rows(),
        "null_robust_rate": null_rates,
        "null_true_effect": {m: {"mean": a, "sd": b} for m, a, b in true_null.iter_rows()},
        "null_pass": bool(max(null_rates.values()) <= 0.10),
        "oracle_robust_rate": {k: v / replicates for k, v in oracle_robust.items()},
        "predictive_coverage": coverage,
        "min_predictive_coverage": min(coverage.values()) if coverage else None,
        "seconds": round(time.perf_counter() - started, 1),
    }


if __name__ == "__main__":
    main()
