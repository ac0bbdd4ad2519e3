"""Off-policy evaluation checked against known truth and against a real A/B test.

- Known truth: a synthetic world of impressions (`persotool.kernels.offpolicy.synthetic`) whose
  targets' values are known; over REPLICATES seeded logs of N impressions, each estimator's bias
  (with its Monte Carlo standard error), RMSE and the coverage of its 95% interval, for a target
  near the logger and one far from it.
- The real A/B: the Open Bandit Dataset's small sample (ZOZOTOWN, `all` campaign: 80 items, 3
  positions), inside the `obp` 0.5.7 source distribution on the package index. Uniform random and
  Bernoulli Thompson sampling (BTS) ran on the same platform at the same time, so each one's
  on-policy CTR is known. BTS's value is estimated from the random log (BTS's action distribution:
  the production priors of `obp/policy/conf/prior_bts.yaml`, by 100,000 Monte Carlo draws, as OBP's
  `compute_batch_action_dist`), and random's from the BTS log (uniform over items at every
  position, with the logged propensities). Reported: each estimator on the whole log with its
  interval and whether it covers the other log's on-policy CTR (itself noisy: about 40 clicks), and
  the mean relative error over bootstrap resamples of the log (the reward model refitted on each at
  the whole log's regularisation), the figure OBP's benchmark reports.
  The whole-log figures are `persotool ingest --schema obd` then `persotool ope`; the reward model
  sees the context the schema keeps (user features one-hot, user-item affinities), the item and the
  position.

    python benchmarks/validate_ope.py            # about a minute; run alone
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from public_data import from_index
from results_file import machine, write_results

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "validate_ope.json"
OBP_SDIST = "obp-0.5.7.tar.gz"
OBP_FIGURES = {"DM": 0.157, "IPS": 0.311, "SNIPS": 0.312, "DR": 0.292, "Switch-DR": 0.258, "DRos": 0.160}


def known_truth(replicates: int, n: int) -> dict:
    from persotool.kernels.offpolicy import estimators as ope
    from persotool.kernels.offpolicy.reward_model import fit_predict
    from persotool.kernels.offpolicy.synthetic import ImpressionWorld

    world, rng = ImpressionWorld(), np.random.default_rng(2026)
    rows = {t: {e: [] for e in ope.NAMES} for t in ("near", "far")}
    ess = {t: [] for t in rows}
    for _ in range(replicates):
        x, logged, dists = world.log(n, rng)
        model = fit_predict(x, logged.item, logged.position, logged.reward, world.items, world.positions, seed=1)
        for target, dist in dists.items():
            ess[target].append(ope.diagnostics(logged, dist)["ess"])
            for e in ope.estimate_all(logged, dist, model):
                rows[target][e.name].append((e.value, e.low, e.high))
    out = {}
    for target, by in rows.items():
        truth = world.value[target]
        table = {}
        for name, values in by.items():
            v = np.array(values)
            table[name] = {
                "bias": float(v[:, 0].mean() - truth),
                "bias_mc_se": float(v[:, 0].std(ddof=1) / np.sqrt(len(v))),
                "rmse": float(np.sqrt(np.mean((v[:, 0] - truth) ** 2))),
                "coverage": float(np.mean((v[:, 1] <= truth) & (truth <= v[:, 2]))),
                "width": float(np.mean(v[:, 2] - v[:, 1])),
            }
        out[target] = {"value": truth, "logger_value": world.value["logger"], "ess": float(np.mean(ess[target]))}
        out[target]["estimators"] = table
    return {"replicates": replicates, "impressions": n, "targets": out}


def _obd(data: Path) -> Path:
    root = data / "obd"
    if not (root / "random" / "all" / "all.csv").is_file():
        with tarfile.open(from_index("obp", OBP_SDIST, data)) as archive:
            for member in archive.getmembers():
                parts = Path(member.name).parts
                if "obd" in parts and member.isfile() and member.name.endswith(".csv"):
                    target = root.joinpath(*parts[parts.index("obd") + 1 :])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.extractfile(member).read())
                if member.name.endswith("prior_bts.yaml"):
                    root.mkdir(parents=True, exist_ok=True)
                    (root / "prior_bts.yaml").write_bytes(archive.extractfile(member).read())
    return root


def bts_action_dist(prior: dict, positions: int, sims: int, seed: int) -> np.ndarray:
    """(items, positions): how often each item lands at each position when BTS ranks Beta draws."""
    rng = np.random.default_rng(seed)
    alpha, beta = np.asarray(prior["alpha"], float), np.asarray(prior["beta"], float)
    counts = np.zeros((len(alpha), positions))
    for start in range(0, sims, 10_000):
        draws = rng.beta(alpha, beta, size=(min(10_000, sims - start), len(alpha)))
        top = np.argsort(-draws, axis=1)[:, :positions]
        for p in range(positions):
            counts[:, p] += np.bincount(top[:, p], minlength=len(alpha))
    return counts / sims


def _tuned(row: dict) -> float | None:
    """A manifest row's threshold: None is infinity for Switch-DR and DRos, nothing for the rest."""
    if row["estimator"] not in ("Switch-DR", "DRos"):
        return None
    return row["hyperparameter"] if row["hyperparameter"] is not None else np.inf


def _finite(value: float | None) -> float | str | None:
    """JSON has no infinity: a threshold of infinity (no switching, no shrinkage) is "inf"."""
    return "inf" if value is not None and not np.isfinite(value) else value


def real_ab(data: Path, resamples: int, sims: int) -> dict:
    import tempfile

    import yaml

    import persotool as pt
    from persotool.kernels.offpolicy import estimators as ope
    from persotool.kernels.offpolicy.reward_model import features, fit_predict

    root = _obd(data)
    prior = yaml.safe_load((root / "prior_bts.yaml").read_text())["all"]
    n_items, positions = len(prior["alpha"]), 3
    scratch = Path(tempfile.mkdtemp(prefix="validate-ope-"))
    # the logs as a user reads them (ingest --schema obd), and their arrays as ope sees them
    logs = {}
    for name in ("random", "bts"):
        ds = pt.ingest(root / name / "all" / "all.csv", out=scratch / name, schema="obd", force=True, track=None)
        table = ds.impression_log
        logged = ope.Logged(
            table["item_idx"].to_numpy().astype(np.int64),
            table["position"].to_numpy().astype(np.int64),
            table["reward"].to_numpy().astype(np.float64),
            table["propensity"].to_numpy(),
        )
        logs[name] = (ds, features(table, ds.manifest.context), logged)
    bts = bts_action_dist(prior, positions, sims, seed=0)
    uniform = np.full((n_items, positions), 1 / n_items)
    out = {}
    for source, target, dist in (("random", "bts", bts), ("bts", "random", uniform)):
        ds, context, logged = logs[source]
        truth = float(logs[target][2].reward.mean())
        tiled = np.broadcast_to(dist, (logged.n, n_items, positions))
        # the whole-log figures come from the command a user runs
        np.save(scratch / f"{target}.npy", np.ascontiguousarray(tiled), allow_pickle=False)
        run = pt.ope(ds, out=scratch / f"ope-{target}", policies=[scratch / f"{target}.npy"], force=True, track=None)
        rows = [r for r in run.manifest.estimates if r["estimator"] in ope.NAMES]
        full = [
            ope.Estimate(
                r["estimator"],
                r["value"],
                r["se"],
                r["low"],
                r["high"],
                r["diff"],
                r["diff_low"],
                r["diff_high"],
                _tuned(r),
            )
            for r in rows
        ]
        chosen = next(e for e in full if e.name == run.selected()[target]["estimator"])
        rng = np.random.default_rng(1)
        c = run.manifest.reward_model["strength"]  # the whole log's choice: resamples refit at it
        errors = {e.name: [] for e in full}
        for _ in range(resamples):
            idx = rng.integers(0, logged.n, logged.n)
            sub = ope.Logged(logged.item[idx], logged.position[idx], logged.reward[idx], logged.pscore[idx])
            m = fit_predict(context[idx], sub.item, sub.position, sub.reward, n_items, positions, seed=0, strength=c)
            for e in ope.estimate_all(sub, np.broadcast_to(dist, (sub.n, n_items, positions)), m):
                errors[e.name].append(abs(e.value - truth) / truth)
        out[f"{target} from {source}"] = {
            "impressions": logged.n,
            "clicks": int(logged.reward.sum()),
            "on_policy": truth,
            "on_policy_se": float(logs[target][2].reward.std(ddof=1) / np.sqrt(logs[target][2].n)),
            "logger_value": float(logged.reward.mean()),
            "diagnostics": ope.diagnostics(logged, tiled),
            "reward_model": {k: v for k, v in run.manifest.reward_model.items() if k != "reliability"},
            "slope": chosen.name,
            "estimators": {
                e.name: {
                    "value": e.value,
                    "low": e.low,
                    "high": e.high,
                    "relative_error": abs(e.value - truth) / truth,
                    "covers": bool(e.low <= truth <= e.high),
                    "mean_relative_error_resampled": float(np.mean(errors[e.name])),
                    "hyperparameter": _finite(e.hyperparameter),
                }
                for e in full
            },
        }
    return {"resamples": resamples, "bts_simulations": sims, "obp_figures": OBP_FIGURES, "directions": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--impressions", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples of each OBD log")
    parser.add_argument("--bts-simulations", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--no-obd", action="store_true", help="leave the real A/B out (no download)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    started = time.perf_counter()
    report = {"machine": machine(), "known_truth": known_truth(args.replicates, args.impressions)}
    if not args.no_obd:
        report["real_ab"] = real_ab(args.data, args.resamples, args.bts_simulations)
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_results(args.out, report)


if __name__ == "__main__":
    sys.exit(main())
