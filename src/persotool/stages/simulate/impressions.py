"""impressions/: each arm's impression log with exact propensities (`impressions.epsilon`), written
for `persotool ingest` and `persotool ope`.

- `<arm>.parquet`: the visits of the users assigned to the arm, one row per shown item (user_id,
  day, slate_id, item_id, position from 1, click, propensity_score), slates in visit order;
- `schema.toml`: the ingest schema of those files;
- `targets/<logger>/<arm>.npy`: every arm's action distribution on the logger's rows (rows x the
  log's items in ascending raw-id order x positions), as `ope --policy` reads it;
- `truth.json`: each arm's exact value per impression on each logger's visits, and its realised
  value in its own arm, the comparison an off-policy estimate is checked against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from persotool.kernels.simulation.impressions import ImpressionLog, Recorder, check_size
from persotool.kernels.simulation.spec import SimulationConfig
from persotool.kernels.simulation.world import SimulatedWorld
from persotool.stages.simulate.analysis import assign

SCHEMA = """# Ingest schema of the simulated impression logs:
#   persotool ingest impressions/ARM.parquet --schema impressions/schema.toml -o DIR
[source]
format = "parquet"

[columns]
user = "user_id"
item = "item_id"
reward = "click"
position = "position"
propensity = "propensity_score"
slate = "slate_id"
"""


def exact(cfg: SimulationConfig) -> str:
    """Why a position's expected reward is not exact under this click model ('' when it is)."""
    beh = cfg.behaviour
    if beh.examination != "log-discount":
        return "cascade examination makes a position's reward depend on the items above it"
    if beh.similarity_weight:
        return "the slate similarity penalty makes a position's reward depend on the whole slate"
    return ""


def recorder(world: SimulatedWorld, cfg: SimulationConfig) -> Recorder | None:
    """A recorder of each arm's log over the users assigned to it, or None when logging is off.
    Refuses, before the days run, logs whose action distributions would not fit in memory."""
    epsilon = cfg.impressions.epsilon
    if not epsilon:
        return None
    arm_of = assign(world.user_ids, cfg.seed, cfg.name, cfg.shares)
    names = [a.name for a in cfg.arms]
    rows = float(np.sum(world.propensity)) * cfg.days * cfg.slate_size
    check_size(rows, world.n_items, cfg.slate_size, len(names), world.n_users)
    keep = {name: arm_of == i for i, name in enumerate(names)}
    return Recorder(world.n_items, cfg.slate_size, epsilon, keep, exact=not exact(cfg))


def write(
    logs: dict[str, ImpressionLog], world: SimulatedWorld, item_ids: list[str], cfg, out: Path
) -> tuple[dict[str, Any], list[str]]:
    """Write impressions/ under `out`; returns truth.json's content and warnings (targets whose
    file could not be written)."""
    folder = out / "impressions"
    (folder / "targets").mkdir(parents=True)
    (folder / "schema.toml").write_text(SCHEMA)
    ids = np.asarray(item_ids, dtype=object)
    why = exact(cfg)
    truth: dict[str, Any] = {
        "epsilon": cfg.impressions.epsilon,
        "exact": not why,
        "note": "value: the target's expected reward per impression on the logger's visits (its epsilon-mixture, "
        "in the logger's user states), the quantity off-policy estimates from that log aim at; own_run: what the "
        "target's own arm realised per impression on its users, after its own consumption, fatigue and churn"
        + (f". Values are not exact: {why}" if why else ""),
        "loggers": {},
    }
    warnings: list[str] = []
    for name, log in logs.items():
        frame = pl.DataFrame(
            {
                "user_id": pl.Series([world.user_ids[u] for u in log.user], dtype=pl.String),
                "day": log.day,
                "slate_id": log.slate,
                "item_id": pl.Series(ids[log.item].tolist(), dtype=pl.String),
                "position": log.position + 1,
                "click": log.reward,
                "propensity_score": log.propensity,
            }
        )
        frame.write_parquet(folder / f"{name}.parquet")
        shown = np.unique(log.item)  # world item order is the ingested order (ascending raw id)
        unshown = np.setdiff1d(np.arange(world.n_items), shown)
        entry: dict[str, Any] = {
            "file": f"{name}.parquet",
            "impressions": len(log),
            "slates": len(np.unique(log.slate)),
            "items": len(shown),
            "logged_value": float(log.reward.mean()) if len(log) else None,
            "targets": {},
        }
        (folder / "targets" / name).mkdir()
        for target, dist in log.dists.items():
            own = logs[target]
            item: dict[str, Any] = {
                "value": float(log.values[target].mean()) if why == "" and len(log) else None,
                "own_run": float(own.reward.mean()) if len(own) else None,
            }
            lost = float(dist[:, unshown, :].sum(axis=1).max()) if len(unshown) and len(dist) else 0.0
            if lost > 0:
                warnings.append(
                    f"impressions: {target}'s action distribution on {name}'s log is not written: it puts up to "
                    f"{lost:.3g} of a position's probability on {len(unshown)} items {name}'s log never shows "
                    "(ope's item axis is the log's items); log more visits or a larger epsilon"
                )
            else:
                np.save(folder / "targets" / name / f"{target}.npy", dist[:, shown, :], allow_pickle=False)
                item["file"] = f"targets/{name}/{target}.npy"
            entry["targets"][target] = item
        truth["loggers"][name] = entry
    (folder / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth, warnings
