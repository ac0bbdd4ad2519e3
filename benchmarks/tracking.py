"""What tracking costs a command: `persotool split` and `persotool ingest` on the bundled MovieLens
data, untracked, tracked through the recorder process (MLflow imported beside the work, the
default) and tracked inline (MLflow imported after the work, as before the recorder existed), each
in a fresh process against one local sqlite store. Median of `--repeat` runs taken in turns.
Results: benchmarks/results/tracking.json.

    python benchmarks/tracking.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import machine, write_results

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "tracking.json"
PERSOTOOL = Path(sys.executable).parent / "persotool"
MODES = {"untracked": ["--no-track"], "recorder": [], "inline": []}


def _run(args: list[str], mode: str, cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    if mode == "inline":
        env["PERSOTOOL_RECORDER"] = "inline"
    started = time.perf_counter()
    subprocess.run([str(PERSOTOOL), *args, *MODES[mode]], cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        ratings = REPO / "datasets" / "movielens-small" / "ratings.csv"
        commands = {
            "ingest": ["ingest", str(ratings), "--preset", "movielens", "-o", "ds", "--force"],
            "split": ["split", "ds", "-o", "split", "--strategy", "leave-last", "--force"],
        }
        _run(commands["ingest"], "recorder", work)  # creates the store (migrations) and the dataset
        seconds: dict[str, dict[str, list[float]]] = {c: {m: [] for m in MODES} for c in commands}
        for _ in range(args.repeat):
            for command, argv in commands.items():
                for mode in MODES:
                    seconds[command][mode].append(round(_run(argv, mode, work), 3))
    report = {"machine": machine(), "repeat": args.repeat, "commands": {}}
    for command, by_mode in seconds.items():
        median = {mode: statistics.median(values) for mode, values in by_mode.items()}
        report["commands"][command] = {
            "median_seconds": median,
            "all_seconds": by_mode,
            "tracking_cost_recorder": round(median["recorder"] - median["untracked"], 3),
            "tracking_cost_inline": round(median["inline"] - median["untracked"], 3),
        }
    write_results(args.out, report)


if __name__ == "__main__":
    main()
