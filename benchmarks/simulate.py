"""Simulation speed: 100,000 users x 90 days x 3 arms on a synthetic world of 2,000 items and 64
factors (from `datasets synth`, ingested like any log). Reports user-days per second of the day loop
(every arm, every user, every day) and of the whole run. Results: benchmarks/results/simulate.json.

    python benchmarks/simulate.py [--users 100000] [--days 90]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from results_file import machine, write_results

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "simulate.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    from persotool.kernels.config import load_config, load_toml
    from persotool.kernels.simulation import build, engine
    from persotool.kernels.simulation.spec import SimulationConfig
    from persotool.stages.ingest.config import IngestConfig
    from persotool.stages.ingest.run import ingest
    from persotool.stages.synth.config import SynthConfig
    from persotool.stages.synth.run import write

    data = HERE / "data" / f"simworld-{args.users}-{args.items}-{args.factors}"
    synth, dataset = data / "synth", data / "dataset"
    if not (dataset / "manifest.json").is_file():
        t = time.perf_counter()
        cfg = SynthConfig(users=args.users, items=args.items, factors=args.factors, events=args.events, days=60)
        write(cfg, synth, force=True)
        spec = IngestConfig.model_validate(load_toml(synth / "schema.toml"))
        ingest(spec, [str(synth / "events.csv")], dataset, force=True)
        print(f"world data prepared in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    cfg = load_config(
        SimulationConfig,
        None,
        {
            "name": "speed",
            "days": args.days,
            "pre_days": 0,
            "world.source": "synthetic",
            "world.ground_truth": str(synth),
            "world.population": args.users,
            "arms": [
                {"name": "popular", "policy": "popular", "share": 1},
                {"name": "random", "policy": "random", "share": 1},
                {"name": "oracle", "policy": "oracle", "share": 1},
            ],
        },
    )
    started = time.perf_counter()
    built = build.build(dataset, cfg)
    world_seconds = time.perf_counter() - started
    sim = engine.run_days(built, cfg, built.calibration["dataset_digest"])
    total = time.perf_counter() - started
    user_days = sim.user_days
    report = {
        "users": built.n_users,
        "items": built.n_items,
        "factors": args.factors,
        "days": args.days,
        "arms": len(sim.arms),
        "user_days": user_days,
        "day_loop_seconds": round(sim.seconds["days"], 3),
        "user_days_per_second": round(user_days / sim.seconds["days"]),
        "candidates_seconds": round(sim.seconds["candidates"], 3),
        "world_seconds": round(world_seconds, 3),
        "total_seconds": round(total, 3),
        "user_days_per_second_end_to_end": round(user_days / total),
        "engagements": {name: int(state.engagements.sum()) for name, state in sim.arms.items()},
        "target": {"user_days_per_second": ">= 1,000,000 on 2 cores"},
        "machine": machine(),
    }
    write_results(args.out, report)


if __name__ == "__main__":
    main()
