"""The back-test (`persotool backtest`): does the calibrated simulator predict what the logs did next?

The logs are cut at a point in time. The world is calibrated on everything before the cutoff; the
users known at the cutoff (each cloned `clones` times, every clone with its own posterior draw of
state and habits) are simulated over the held-out days under the logged-like policy; and the
simulation is compared with what those users did after the cutoff. A logged day with at least one
interaction is an active day; a simulated visit stands for one (the calibration equates them), and
interactions per active day are compared on simulated visits with at least one engagement.

Every quantity is shown beside naive forecasts and a noise floor:
- persistence: each user is as active as in the last window of the same length before the cutoff;
- historical rate: each user's active days per day since their first, over the held-out days;
- recency + frequency: a logistic regression of returning (and a Poisson regression of active
  days) on days since the last active day and active days so far, fitted on a time split inside the
  calibration window (see `naive`);
- nobody returns;
- the model's closed-form forecast (no simulation), which the simulation should reproduce;
- noise floor: for aggregates, 1.96 bootstrap standard errors of the real value (users resampled);
  for distributions, the 95th percentile of the KS distance between the real sample and its own
  bootstrap resamples (real against resampled real); for per-user scores, a paired bootstrap of
  the difference between the simulator and the best naive forecast.

The link from a visit's quality (its ratings against the user's own mean) to returning within 30
days is measured before the cutoff and, as a check, after it (`return_link`).

The preference truth is scored too: each truth family (ALS, EASE, ItemKNN, LightFM as
`truth_mixture` names them, and the world's weighted mixture) fitted before the cutoff ranks the
items each known user consumed after it among those they had not (AUC, NDCG@10), and predicts which
item a held-out engagement went to (log-likelihood gain over popularity; see `truth_fit`).

Verdicts: an aggregate more than 25% off the logs is "inconclusive" (the log is too small to tell)
when the noise floor is wider than the gap, else a "misfit"; one within 25% is "within noise" of
the logs, else "better than the naive forecast" when closer than every naive forecast, else
"close". A distribution is "within noise" when its KS distance is within the floor and its mean
within 25% ("inconclusive" when only the first holds), "close" when the KS distance is at most 0.1
and the mean within 25% (on large logs the floor falls below any difference that matters), else a
"misfit". A per-user score is
"better than the naive forecast" when the paired 95% interval of its difference with the best naive
forecast is above zero, "within noise" when it holds zero, "misfit" when below.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from persotool.errors import ConfigError
from persotool.kernels.simulation import calibration as fitted
from persotool.kernels.simulation import return_link
from persotool.stages.backtest.compare import compare
from persotool.stages.backtest.config import BacktestConfig
from persotool.stages.backtest.result import Backtest
from persotool.stages.ingest.result import Dataset


def _clones(cfg: BacktestConfig, users: int) -> int:
    if cfg.clones:
        return cfg.clones
    # enough clones that a user's share of returning clones is a fine-grained forecast, within
    # about a million simulated users
    return int(np.clip(1_000_000 // max(users, 1), 10, 50))


def run(dataset, cfg: BacktestConfig, out: Path, *, force: bool = False) -> Backtest:
    """Calibrate on `dataset`'s logs before the cutoff, simulate the held-out period and compare
    with what the logs show after it; write the back-test directory `out`."""
    from persotool.kernels import storage

    dataset, out = Path(getattr(dataset, "path", dataset)), Path(out)
    storage.check_output(out, force=force, inputs=[dataset])
    write(forecast(dataset, cfg), cfg, out, force=force)
    return Backtest(out)


def forecast(dataset: Path, cfg: BacktestConfig) -> dict[str, Any]:
    """The back-test of `dataset` (an ingested dataset directory): every table and figure."""
    from persotool.kernels.simulation import engine
    from persotool.kernels.simulation.build import build
    from persotool.kernels.simulation.policies import candidates
    from persotool.kernels.simulation.spec import SimulationConfig
    from persotool.kernels.storage import read_artifact

    timings: dict[str, float] = {}
    started = time.perf_counter()
    manifest = read_artifact(dataset, "dataset")
    Dataset(dataset).require_times("a back-test (it forecasts who returns after a cutoff)")
    # the value (a rating) is for the return link; everything else selects what it needs
    frame = pl.read_parquet(dataset / "interactions.parquet", columns=["user_idx", "item_idx", "timestamp", "value"])
    if frame.is_empty():
        raise ConfigError(f"{dataset} has no interactions to back-test")
    calibration = fitted.calibrate_frame(
        frame.select("user_idx", "timestamp"), cfg.cutoff, seed=cfg.seed, option="cutoff"
    )
    win = calibration.window
    horizon = win.log_days - win.cutoff_day
    if horizon < 2:
        raise ConfigError(
            f"cutoff {cfg.cutoff!r} leaves {horizon} day(s) of logs after it; a back-test needs 2 or more"
        )
    timings["calibrate"] = time.perf_counter() - started
    h = calibration.histories
    clones = _clones(cfg, len(h))
    sim_cfg = SimulationConfig(
        name="backtest",
        seed=cfg.seed,
        days=horizon,
        pre_days=0,
        slate_size=cfg.slate_size,
        candidates=cfg.candidates,
        world=cfg.world.model_copy(update={"start": "cutoff", "population": clones * len(h)}),
        behaviour=cfg.behaviour,
        arms=[
            {"name": "logged", "policy": "logged", "share": 1.0},
            {"name": "unused", "policy": "random", "share": 1.0},
        ],
    )
    t = time.perf_counter()
    built = build(dataset, sim_cfg, calibration=calibration)
    timings["world"] = time.perf_counter() - t
    t = time.perf_counter()
    run_cfg = built.behaviour(sim_cfg)
    logged = sim_cfg.arms[0]
    state = engine.ArmState.start(
        candidates(logged, built, run_cfg.behaviour, cfg.slate_size + cfg.candidates, seed=cfg.seed, dataset_digest=""),
        built,
        horizon,
    )
    refill = _refiller(state, built, run_cfg, logged, cfg)
    for day in range(horizon):
        if day and day % REFILL_DAYS == 0:
            refill()
        engine.step(state, engine.draws_for(cfg.seed, day, built.n_users, cfg.slate_size), day, built, run_cfg)
    timings["simulate"] = time.perf_counter() - t
    user_days = built.n_users * horizon
    t = time.perf_counter()
    result = compare(frame, calibration, built, state, cfg, clones)
    timings["compare"] = time.perf_counter() - t
    t = time.perf_counter()
    result["truth_fit"] = truth_scores(frame, calibration.window.until, built, run_cfg, manifest["counts"])
    result["notes"] += affinity_notes(result["truth_fit"], run_cfg.world)
    until = calibration.window.until
    result["return_link"] = {
        "before the cutoff": return_link.fit(frame, until),
        "after the cutoff": return_link.fit(frame.filter(pl.col("timestamp") >= until)),
    }
    timings["truth"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    result |= {
        "dataset": {"path": str(Path(dataset).resolve()), "digest": manifest["dataset_digest"]},
        "window": win.to_dict(),
        "fit": calibration.fit.to_dict(),
        "calibration": {k: v for k, v in built.calibration.items() if k not in ("visit_model", "window")},
        "diagnostics": calibration.diagnostics,
        "clones": clones,
        "user_days": user_days,
        "user_days_per_second": round(user_days / max(timings["simulate"], 1e-9)),
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    return result


def truth_scores(frame: pl.DataFrame, cutoff, built, cfg, counts: dict[str, int]) -> dict[str, Any]:
    """Each truth family (and the world's mixture) scored on what known users consumed after the
    cutoff (`truth_fit.score_families`); families the world did not fit are fitted on the same
    window."""
    from persotool.kernels.simulation import truth_fit
    from persotool.kernels.simulation.world import family_factors, too_large

    spec = cfg.world
    held = truth_fit.split(frame, cutoff, counts["n_users"], counts["n_items"], seed=cfg.seed)
    weights = built.calibration.get("truth_weights")
    if weights is None and spec.truth == "mixture":
        weights = {f: 1 / len(spec.truth_mixture) for f in spec.truth_mixture}
    found = {"users": len(held.users), "engagements": held.engagements, "truth": built.calibration.get("truth")}
    found["weights"] = weights
    if len(held.users) < truth_fit.MIN_USERS:
        return found | {"note": f"{len(held.users)} known users consumed new items after the cutoff; too few to score"}
    families = dict(built.truth_families)
    for family in spec.truth_mixture:
        if family not in families and not too_large(family, counts["n_users"], counts["n_items"]):
            families[family] = family_factors(family, built.history, spec, cfg.seed)
    rows = truth_fit.score_families(
        families, held, seed=cfg.seed, affinity_weight=cfg.behaviour.affinity_weight, weights=weights
    )
    return found | {"families": rows, "affinity_weight": cfg.behaviour.affinity_weight}


def affinity_notes(fit: dict[str, Any], spec) -> list[str]:
    """A note when held-out behaviour supports an affinity weight far from the simulator's own
    (more than twice or less than half) for the world's truth."""
    name = "weighted mixture" if fit.get("weights") else spec.truth
    row = next((r for r in fit.get("families", []) if r["family"] == name), None)
    at = fit.get("affinity_weight")
    if row is None or not at or 0.5 <= row["beta"] / at <= 2:
        return []
    return [
        f"held-out behaviour supports an affinity weight of {row['beta']:.3g} for the world's truth ({name}); the "
        f"simulator uses {at:g}, so its preference effects are {'too strong' if row['beta'] < at else 'too weak'} "
        "(set [behaviour] affinity_weight, or another truth)"
    ]


REFILL_DAYS = 7


def _refiller(state, built, run_cfg, logged, cfg: BacktestConfig):
    """Over a long held-out period frequent users run out of candidates: every REFILL_DAYS days,
    users with fewer than two slates of unconsumed candidates get a fresh logged-like lineup."""
    from persotool.kernels.simulation.policies import candidates

    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 61]))
    log_pop = (built.logged_exponent * np.log(built.popularity + 0.5)).astype(np.float32)

    def score(users: np.ndarray) -> np.ndarray:
        return log_pop + rng.gumbel(size=(len(users), built.n_items)).astype(np.float32)

    def refill() -> None:
        left = (~state.consumed & (state.items >= 0)).sum(axis=1)
        rows = np.flatnonzero(left < 2 * cfg.slate_size)
        if len(rows) == 0:
            return
        users, items = state.consumed_pairs(rows)
        cand = candidates(
            logged,
            built,
            run_cfg.behaviour,
            cfg.slate_size + cfg.candidates,
            seed=cfg.seed,
            dataset_digest="",
            users=rows,
            exclude=_excluding_rows(users, items, rows),
            score=score,
        )
        state.refill(rows, cand)

    return refill


def _excluding_rows(users: np.ndarray, items: np.ndarray, rows: np.ndarray):
    """An `exclude` callback for candidates over the (sorted, not contiguous) users `rows`."""
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]

    def exclude(scores: np.ndarray, batch: np.ndarray) -> None:
        at = np.searchsorted(batch, users)
        hit = (at < len(batch)) & (batch[np.minimum(at, len(batch) - 1)] == users)
        scores[at[hit], items[hit]] = -np.inf

    return exclude


def write(result: dict[str, Any], cfg: BacktestConfig, out: Path, *, force: bool = False) -> None:
    """The back-test directory: results.json, quantities.csv, per_user.parquet, retention.parquet,
    plots and the manifest."""
    from persotool.kernels import storage as artifacts

    payload = {k: v for k, v in result.items() if k not in ("per_user", "curve")}
    manifest = artifacts.new_manifest(
        Backtest.kind,
        Backtest.schema_version,
        name=out.name,
        dataset=result["dataset"],
        window=result["window"],
        config=cfg.model_dump(mode="json"),
        config_hash=artifacts.config_hash(cfg.model_dump(mode="json")),
        fit=result["fit"],
        quantities=result["quantities"],
        truth_fit=result["truth_fit"],
        return_link=result["return_link"],
        verdict=result["verdict"],
        notes=result["notes"],
        clones=result["clones"],
        user_days=result["user_days"],
        user_days_per_second=result["user_days_per_second"],
        seconds=result["seconds"],
    )
    with artifacts.atomic_directory(out, force=force, inputs=[Path(result["dataset"]["path"])]) as tmp:
        (tmp / "results.json").write_text(json.dumps(artifacts.finite_json(payload), indent=2, default=str) + "\n")
        pl.DataFrame(
            [
                {k: (json.dumps(v) if isinstance(v, list) else v) for k, v in row.items()}
                for row in result["quantities"]
            ],
            infer_schema_length=None,
        ).write_csv(tmp / "quantities.csv")
        result["per_user"].write_parquet(tmp / "per_user.parquet")
        result["curve"].write_parquet(tmp / "retention.parquet")
        _plots(result, tmp)
        (tmp / artifacts.MANIFEST).write_text(json.dumps(artifacts.finite_json(manifest), indent=2) + "\n")


def _plots(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result["curve"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(curve["days"], curve["real"], label="logs")
    ax.plot(curve["days"], curve["simulated"], label="simulated")
    ax.set_xscale("log")
    ax.set_xlabel("days after the cutoff")
    ax.set_ylabel("share of known users returned")
    ax.set_title("Retention after the cutoff: logs against the simulator")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "retention.png", dpi=100)
    plt.close(fig)
    per_user = result["per_user"]
    fig, ax = plt.subplots(figsize=(7, 4))
    top = int(max(per_user["real_active_days"].max(), 1))
    bins = np.unique(np.geomspace(1, top + 1, 20).astype(int))
    ax.hist(per_user["real_active_days"].filter(per_user["real_active_days"] > 0), bins=bins, alpha=0.6, label="logs")
    ax.hist(
        per_user["simulated_active_days"].filter(per_user["simulated_active_days"] > 0),
        bins=bins,
        alpha=0.6,
        label="simulated (mean over clones)",
    )
    ax.set_xscale("log")
    ax.set_xlabel("active days after the cutoff (users with any)")
    ax.set_ylabel("users")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "active_days.png", dpi=100)
    plt.close(fig)
