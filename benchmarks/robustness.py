"""`simulate --worlds 20 --workers 2` on the demo's A/B test (demo/simulation.toml: 20,000 users,
LightFM against popular, truth families drawn by held-out weight, behaviour by its priors), target under 15 minutes on 2
cores, against its baseline measured in the same run: the same experiment in its one world
(`--worlds 0`). The ratio of the two times says what each extra world costs: with 2 workers and no
overhead, 20 worlds would cost 10 single runs. Results: benchmarks/results/robustness.json.

    python benchmarks/robustness.py [--worlds 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from results_file import machine, write_results

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "robustness.json"
TARGET_SECONDS = 15 * 60


def _prepare(data: Path) -> tuple[Path, Path]:
    """The demo's dataset and LightFM model (kept between runs under benchmarks/data)."""
    import persotool as pt

    dataset, split, model = data / "movielens", data / "split", data / "lightfm-warp"
    if not (dataset / "manifest.json").is_file():
        pt.ingest(REPO / "datasets" / "movielens-small" / "ratings.csv", out=dataset, preset="movielens", force=True)
    if not (split / "manifest.json").is_file():
        pt.split(
            dataset, out=split, strategy="leave-last", leave_last=10, valid=True, min_item_interactions=5, force=True
        )
    if not (model / "manifest.json").is_file():
        pt.train(split, out=model, config="lightfm", force=True)
    return dataset, model


def _run(dataset: Path, model: Path, out: Path, worlds: int, workers: int) -> dict:
    import persotool as pt

    overrides = {
        "robustness.worlds": worlds,
        "robustness.workers": workers,
        "arms": [
            {"name": "popular", "policy": "popular", "share": 0.5},
            {"name": "lightfm", "policy": "model", "model": str(model), "share": 0.5},
        ],
    }
    started = time.perf_counter()
    pt.simulate(dataset, REPO / "demo" / "simulation.toml", out, force=True, **overrides)
    seconds = time.perf_counter() - started
    manifest = json.loads((out / "manifest.json").read_text())
    results = json.loads((out / "results.json").read_text())
    return {"seconds": round(seconds, 1), "phases": manifest["seconds"], "robustness": results.get("robustness")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    data = HERE / "data" / "robustness"
    dataset, model = _prepare(data)

    single = _run(dataset, model, data / "one-world", 0, 1)
    print(f"one world: {single['seconds']:.0f}s", file=sys.stderr)
    many = _run(dataset, model, data / "worlds", args.worlds, args.workers)
    print(f"{args.worlds} worlds, {args.workers} workers: {many['seconds']:.0f}s", file=sys.stderr)

    robust = many["robustness"] or {}
    engagements = next(
        (row for row in robust.get("combined", []) if row["arm"] == "lightfm" and row["metric"] == "engagements"),
        None,
    )
    report = {
        "worlds": args.worlds,
        "workers": args.workers,
        "single_world_seconds": single["seconds"],
        "single_world_phases": single["phases"],
        "worlds_seconds": many["seconds"],
        "worlds_phases": many["phases"],
        "ratio_to_single_world": round(many["seconds"] / single["seconds"], 2),
        "ideal_ratio": round(1 + args.worlds / args.workers, 1),
        "seconds_per_extra_world": round((many["seconds"] - single["seconds"]) / args.worlds, 1),
        "lightfm_engagements": engagements,
        "target": {"worlds_seconds": f"< {TARGET_SECONDS} with 2 workers on 2 cores"},
        "met": many["seconds"] < TARGET_SECONDS,
        "machine": machine(),
    }
    write_results(RESULTS, report)


if __name__ == "__main__":
    main()
