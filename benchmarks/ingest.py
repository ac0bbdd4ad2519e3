"""Ingest benchmark: persotool ingest against a bare polars read+write (the floor) and a pandas
pipeline, on the same 20M-row synthetic CSV, in one run. Each variant runs in its own process so
its peak RSS is its own, and the three take turns `--repeat` times (3 by default): the figures are
each variant's median, so one noisy run on a shared machine does not decide the verdict. Results:
benchmarks/results/ingest.json (shown in docs/performance.md by `make docs`).

    python benchmarks/ingest.py [--rows 20000000] [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RESULTS = HERE / "results" / "ingest.json"


def _peak_rss_mb() -> float:
    """Peak RSS of this process. VmHWM belongs to the address space exec created, whereas
    ru_maxrss survives exec and would report the parent's peak (it generated the log)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


LAYOUTS = {
    # the headline: epoch-millisecond timestamps, about the size the issue names (20M rows, ~600 MB)
    "epoch_ms": "ms",
    # the same log with ISO-8601 timestamps: a harder parse and a bigger file
    "iso": "iso",
}


def make_log(rows: int, layout: str) -> Path:
    """A synthetic e-commerce log (user, item, timestamp, event, consent), cached between runs."""
    folder = DATA / f"synth-{rows}-{layout}"
    if (folder / "events.csv").is_file():
        return folder
    from persotool.stages.synth.config import SynthConfig
    from persotool.stages.synth.run import write

    cfg = SynthConfig(
        users=max(rows // 200, 100),
        items=max(rows // 2000, 100),
        events=rows,
        days=180,
        seed=1,
        time_encoding=LAYOUTS[layout],
    )
    write(cfg, folder, force=True)
    return folder


def variant_persotool(folder: Path, out: Path) -> dict:
    from persotool.kernels.config import load_toml
    from persotool.stages.ingest.config import IngestConfig
    from persotool.stages.ingest.run import ingest

    spec = IngestConfig.model_validate(load_toml(folder / "schema.toml"))
    manifest = ingest(spec, [str(folder / "events.csv")], out / "dataset", force=True)
    return {"rows_out": manifest["counts"]["rows_kept"], "phase_seconds": manifest["phase_seconds"]}


def variant_polars_floor(folder: Path, out: Path) -> dict:
    import polars as pl

    frame = pl.read_csv(folder / "events.csv")
    frame.write_parquet(out / "floor.parquet")
    return {"rows_out": len(frame)}


def variant_pandas(folder: Path, out: Path) -> dict:
    import pandas as pd

    frame = pd.read_csv(folder / "events.csv")
    frame = frame.drop_duplicates()
    frame.to_parquet(out / "pandas.parquet")
    return {"rows_out": len(frame)}


VARIANTS = {"persotool": variant_persotool, "polars_floor": variant_polars_floor, "pandas": variant_pandas}


def child(name: str, folder: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    info = VARIANTS[name](folder, out)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), **info}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated logs for the next run")
    parser.add_argument("--layouts", default="epoch_ms,iso", help="comma-separated: epoch_ms, iso")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant, taking turns; medians reported")
    parser.add_argument("--child", choices=list(VARIANTS))
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.out)
        return
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "targets": {"ratio_to_floor_max": 3.0, "speedup_vs_pandas_min": 2.0, "peak_rss_mb_max": 4096},
        "repeat": args.repeat,
    }
    for layout in args.layouts.split(","):
        report[layout] = run_layout(args.rows, layout, keep=args.keep, repeat=args.repeat)
    headline = report[args.layouts.split(",")[0]]
    report["ratio_to_floor"] = headline["ratio_to_floor"]
    report["speedup_vs_pandas"] = headline["speedup_vs_pandas"]
    report["meets_targets"] = headline["meets_targets"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {RESULTS.relative_to(HERE.parent)}")


def run_layout(rows: int, layout: str, *, keep: bool, repeat: int = 1) -> dict:
    folder = make_log(rows, layout)
    log = folder / "events.csv"
    with open(log, "rb") as handle:
        n_rows = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 24), b"")) - 1
    out = DATA / "out"
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    print(f"[{layout}] {n_rows:,} rows, {log.stat().st_size / 1e6:,.0f} MB", flush=True)
    for turn in range(repeat):
        for name in ("polars_floor", "persotool", "pandas"):
            shutil.rmtree(out, ignore_errors=True)
            done = subprocess.run(
                [sys.executable, __file__, "--child", name, "--folder", str(folder), "--out", str(out)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            runs[name].append(result)
            print(
                f"  {turn + 1}/{repeat} {name:13s} {result['seconds']:7.2f} s  "
                f"peak RSS {result['peak_rss_mb']:7.0f} MB",
                flush=True,
            )
    measured = {}
    for name, results in runs.items():
        seconds = [r["seconds"] for r in results]
        middle = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]  # the median run
        measured[name] = {
            **middle,
            "seconds": statistics.median(seconds),
            "all_seconds": seconds,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "rows_per_second": n_rows / statistics.median(seconds),
        }
        figures = measured[name]
        print(
            f"  median {name:13s} {figures['seconds']:7.2f} s  {figures['rows_per_second'] / 1e6:6.2f} M rows/s  "
            f"peak RSS {figures['peak_rss_mb']:7.0f} MB",
            flush=True,
        )
    shutil.rmtree(out, ignore_errors=True)
    result = {
        "rows": n_rows,
        "csv_bytes": log.stat().st_size,
        "variants": measured,
        "ratio_to_floor": measured["persotool"]["seconds"] / measured["polars_floor"]["seconds"],
        "speedup_vs_pandas": measured["pandas"]["seconds"] / measured["persotool"]["seconds"],
    }
    result["meets_targets"] = (
        result["ratio_to_floor"] <= 3.0
        and result["speedup_vs_pandas"] >= 2.0
        and measured["persotool"]["peak_rss_mb"] <= 4096
    )
    print(
        f"  ratio to floor {result['ratio_to_floor']:.2f}x, speed-up vs pandas {result['speedup_vs_pandas']:.2f}x",
        flush=True,
    )
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
