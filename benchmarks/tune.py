"""What `persotool tune` costs beyond the training it runs: the same study (EASE on the demo split,
the shipped search space, `--trials` trials) through a bare Optuna loop calling the same training
and evaluation functions (in-memory storage), through `pt.tune` with its default journal file, and
through `pt.tune` with an RDB (sqlite) storage, one after the other in this process. Each trial's
own work (train + evaluate) is timed inside the objective, so a variant's overhead is its wall time
minus that work; the figure that matters is persotool's overhead as a share of the bare loop's wall
time. Results: benchmarks/results/tune.json.

    python benchmarks/tune.py [--trials 30]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from results_file import machine, write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "tune.json"
TARGET_OVERHEAD = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import optuna

    import persotool as pt
    from persotool.kernels import training
    from persotool.kernels.config import CONFIGS
    from persotool.kernels.metrics.ranking import evaluate_model
    from persotool.stages.split.result import Split
    from persotool.stages.tune.space import load_space

    space_path = CONFIGS / "spaces" / "ease.toml"
    space = load_space(space_path)
    report: dict = {"machine": machine(), "trials": args.trials, "model": "ease", "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ds = pt.ingest(ROOT / "datasets" / "movielens-small" / "ratings.csv", out=work / "ds", preset="movielens")
        sp = pt.split(ds, out=work / "split", strategy="leave-last", leave_last=10, valid=True, min_item_interactions=5)
        split = Split(sp.path)

        def bare() -> tuple[float, float]:
            work_seconds = 0.0

            def objective(trial) -> float:
                nonlocal work_seconds
                started = time.perf_counter()
                model, _ = training.train(split, "ease", space.suggest(trial), valid_k=10)
                value = evaluate_model(model, split.valid, ["ndcg@10"], n_items=split.n_items).summary["ndcg@10"]
                work_seconds += time.perf_counter() - started
                return value

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
            study.enqueue_trial(space.defaults())
            started = time.perf_counter()
            study.optimize(objective, n_trials=args.trials)
            return time.perf_counter() - started, work_seconds

        def ours(storage: str | None, name: str) -> tuple[float, float]:
            started = time.perf_counter()
            tuned = pt.tune(split.path, out=work / name, space=space_path, trials=args.trials, storage=storage)
            wall = time.perf_counter() - started
            return wall, float(tuned.trials["seconds"].sum())

        variants = {
            "bare_optuna_in_memory": bare,
            "persotool_journal": lambda: ours(None, "journal"),
            "persotool_sqlite_rdb": lambda: ours(f"sqlite:///{work / 'optuna.db'}", "rdb"),
        }
        for name, run in variants.items():
            wall, work_seconds = run()
            report["variants"][name] = {
                "wall_seconds": round(wall, 2),
                "trial_work_seconds": round(work_seconds, 2),
                "overhead_seconds": round(wall - work_seconds, 2),
                "trials_per_hour": round(args.trials / wall * 3600),
            }
    v = report["variants"]
    base = v["bare_optuna_in_memory"]
    for name in ("persotool_journal", "persotool_sqlite_rdb"):
        extra = v[name]["overhead_seconds"] - base["overhead_seconds"]
        v[name]["extra_overhead_vs_bare"] = round(extra / base["wall_seconds"], 4)
    report["journal_vs_rdb_overhead_seconds"] = round(
        v["persotool_sqlite_rdb"]["overhead_seconds"] - v["persotool_journal"]["overhead_seconds"], 2
    )
    report["target_extra_overhead"] = TARGET_OVERHEAD
    report["meets_target"] = bool(v["persotool_journal"]["extra_overhead_vs_bare"] <= TARGET_OVERHEAD)
    write_results(args.out, report)


if __name__ == "__main__":
    main()
