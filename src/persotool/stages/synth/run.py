"""Synthetic interaction logs with known ground truth.

Users and items have latent factors; items have a long-tail (Zipf) popularity bias; each day a user
who has not churned visits with their own propensity, in sessions placed by a daily rhythm; events
pick items from the softmax of true affinity, their type (view, click, add_to_cart, purchase) rises
with affinity; users churn with a daily hazard and some come back. The raw log goes through `ingest`
like any real log; the truth is saved beside it as arrays plus JSON.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from persotool.kernels import storage as artifacts
from persotool.stages.synth.config import SynthConfig

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 5.0}
# Share of activity by hour of day (UTC): quiet nights, a lunch bump and an evening peak.
HOURLY = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.2, 3.3, 3.6, 4.2, 4, 3.6, 3.5, 3.8, 4.4, 5.4, 6.4, 6.8, 6, 4, 2.2]
)
HOURLY = HOURLY / HOURLY.sum()


def _power_bias(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    ranks = rng.permutation(n) + 1
    return -exponent * np.log(ranks)


def _simulate_visits(cfg: SynthConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """Return (user, day) of every visit, plus per-user truth (propensity, hazard, churn day)."""
    n = cfg.users
    m = cfg.visit_probability_mean
    conc = 4.0
    propensity = rng.beta(m * conc, (1 - m) * conc, size=n).clip(0.01, 0.98)
    h = cfg.churn_hazard_mean
    hazard = rng.beta(max(h, 1e-6) * 20, (1 - h) * 20, size=n) if h > 0 else np.zeros(n)
    first_day = (rng.random(n) ** 2 * cfg.days * 0.5).astype(np.int64)  # most users there early
    active = np.zeros(n, dtype=bool)
    churn_day = np.full(n, -1, dtype=np.int64)
    returns = np.zeros(n, dtype=np.int64)
    users, days = [], []
    for day in range(cfg.days):
        arriving = first_day == day
        active |= arriving
        churned = ~active & (first_day < day)
        back = churned & (rng.random(n) < cfg.reactivation_probability)
        returns += back
        active |= back
        visit = active & (rng.random(n) < propensity)
        idx = np.flatnonzero(visit)
        users.append(idx)
        days.append(np.full(len(idx), day, dtype=np.int64))
        leaving = active & ~arriving & (rng.random(n) < hazard)
        churn_day[leaving & (churn_day < 0)] = day
        active &= ~leaving
    truth = {
        "visit_propensity": propensity,
        "churn_hazard": hazard,
        "first_day": first_day,
        "first_churn_day": churn_day,
        "returns": returns,
    }
    return np.concatenate(users), np.concatenate(days), truth


def _sample_items(
    users: np.ndarray,
    user_f: np.ndarray,
    item_f: np.ndarray,
    bias: np.ndarray,
    temperature: float,
    rng: np.random.Generator,
    batch: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one item per event from softmax(temperature * u.v + bias), batched over users."""
    order = np.argsort(users, kind="stable")
    sorted_users = users[order]
    items = np.empty(len(users), dtype=np.int64)
    affinity = np.empty(len(users), dtype=np.float64)
    n_items = item_f.shape[0]
    unique, starts = np.unique(sorted_users, return_index=True)
    ends = np.append(starts[1:], len(sorted_users))
    for lo in range(0, len(unique), batch):
        block_users = unique[lo : lo + batch]
        logits = temperature * (user_f[block_users] @ item_f.T) + bias
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        cdf = np.cumsum(probs, axis=1)
        cdf /= cdf[:, -1:]
        cdf[:, -1] = 1.0
        s, e = starts[lo], ends[min(lo + batch, len(unique)) - 1]
        rows = np.repeat(np.arange(len(block_users)), ends[lo : lo + batch] - starts[lo : lo + batch])
        draws = rng.random(e - s)
        flat = (cdf + np.arange(len(block_users))[:, None]).ravel()
        picked = np.searchsorted(flat, draws + rows, side="right") - rows * n_items
        picked = np.minimum(picked, n_items - 1)
        items[order[s:e]] = picked
        affinity[order[s:e]] = (user_f[block_users][rows] * item_f[picked]).sum(axis=1)
    return items, affinity


def generate(cfg: SynthConfig) -> tuple[pl.DataFrame, dict[str, np.ndarray], dict[str, Any]]:
    """Build the raw log (ids as text, clean rows first) and the ground truth."""
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed))
    scale = 1 / np.sqrt(cfg.factors)
    user_f = rng.normal(0, scale, size=(cfg.users, cfg.factors)) * np.sqrt(2)
    item_f = rng.normal(0, scale, size=(cfg.items, cfg.factors)) * np.sqrt(2)
    bias = _power_bias(cfg.items, cfg.popularity_exponent, rng)
    visit_user, visit_day, user_truth = _simulate_visits(cfg, rng)
    if len(visit_user) == 0:
        visit_user, visit_day = np.array([0]), np.array([0])
    # Sessions per visit and events per session, scaled to the requested total.
    sessions_per_visit = 1 + rng.poisson(0.25, size=len(visit_user))
    s_user = np.repeat(visit_user, sessions_per_visit)
    s_day = np.repeat(visit_day, sessions_per_visit)
    hour = rng.choice(24, size=len(s_user), p=HOURLY)
    s_start = s_day * 86400 + hour * 3600 + rng.integers(0, 3600, size=len(s_user))
    # Too many sessions for the requested size: keep a uniform subset (a lower visit rate), so that
    # sessions average at least two events.
    if len(s_user) * 2 > cfg.events:
        keep = np.sort(rng.choice(len(s_user), size=max(cfg.events // 2, 1), replace=False))
        s_user, s_start = s_user[keep], s_start[keep]
    mean_len = max(cfg.events / len(s_user), 1.0)
    user_rate = rng.lognormal(0, 0.5, size=cfg.users)
    lam = (mean_len - 1) * user_rate[s_user] / user_rate[s_user].mean()
    per_session = 1 + rng.poisson(np.maximum(lam, 0))
    e_user = np.repeat(s_user, per_session)
    session_index = np.repeat(np.arange(len(s_user)), per_session)
    offsets = rng.exponential(60.0, size=len(e_user))
    first = np.concatenate([[0], np.cumsum(per_session)[:-1]])
    cum = np.cumsum(offsets)
    within = cum - np.repeat(cum[first] - offsets[first], per_session)
    e_time = s_start[session_index] + within
    e_item, e_aff = _sample_items(e_user, user_f, item_f, bias, cfg.affinity_temperature, rng)
    z = (e_aff - e_aff.mean()) / (e_aff.std() + 1e-12)
    s = 1 / (1 + np.exp(-z))
    u = rng.random(len(e_user))
    kind = np.zeros(len(e_user), dtype=np.int8)
    kind[u < 0.25 * s] = 1
    kind[u < 0.08 * s] = 2
    kind[u < 0.035 * s] = 3
    start = datetime.fromisoformat(cfg.start).replace(tzinfo=UTC)
    epoch0 = int(start.timestamp())
    ts_ms = (epoch0 + e_time) * 1000
    ts_ms = ts_ms.astype(np.int64)
    opted_out = rng.random(cfg.users) < cfg.opted_out_share
    frame = pl.DataFrame({"u": e_user, "i": e_item, "ts": ts_ms, "k": kind, "out": opted_out[e_user]})
    frame = frame.sort(["ts", "u"])
    frame = frame.select(
        user_id=pl.format("u{}", pl.col("u")),
        item_id=pl.format("i{}", pl.col("i")),
        timestamp=_encode_time(pl.col("ts"), cfg.time_encoding),
        event=pl.col("k").replace_strict(dict(enumerate(EVENT_TYPES)), return_dtype=pl.String),
        consent=pl.when(pl.col("out")).then(pl.lit("no")).otherwise(pl.lit("yes")),
    )
    clean_rows = len(frame)
    frame, injected = _inject_dirt(frame, cfg, rng)
    truth_arrays = {
        "user_factors": user_f.astype(np.float32),
        "item_factors": item_f.astype(np.float32),
        "item_bias": bias.astype(np.float32),
        "opted_out": opted_out,
        **user_truth,
    }
    truth_meta = {
        "affinity": "affinity_temperature * user_factors @ item_factors.T + item_bias (softmax logits)",
        "user_ids": "u{index}",
        "item_ids": "i{index}",
        "clean_rows": clean_rows,
        "injected": injected,
        "event_counts": dict(zip(EVENT_TYPES, np.bincount(kind, minlength=4).tolist(), strict=True)),
        "opted_out_users": int(opted_out.sum()),
        "opted_out_users_with_events": int(opted_out[np.unique(e_user)].sum()),
        "users_with_events": len(np.unique(e_user)),
        "sessions": len(s_user),
    }
    return frame, truth_arrays, truth_meta


def _encode_time(ms: pl.Expr, encoding: str) -> pl.Expr:
    if encoding == "ms":
        return ms.cast(pl.String)
    return ms.cast(pl.Datetime("ms")).dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")


def _inject_dirt(frame: pl.DataFrame, cfg: SynthConfig, rng: np.random.Generator) -> tuple[pl.DataFrame, dict]:
    """Append known numbers of exact duplicates and broken rows, so ingest counts can be checked."""
    n_extra = round(len(frame) * cfg.dirty_share)
    if n_extra == 0:
        return frame, {"duplicates": 0, "user_missing": 0, "item_missing": 0, "timestamp_unparseable": 0}
    kinds = rng.integers(0, 4, size=n_extra)
    base = frame.gather(rng.integers(0, len(frame), size=n_extra))
    broken = base.with_columns(
        user_id=pl.when(pl.Series(kinds == 1)).then(pl.lit("")).otherwise(pl.col("user_id")),
        item_id=pl.when(pl.Series(kinds == 2)).then(pl.lit("")).otherwise(pl.col("item_id")),
        timestamp=pl.when(pl.Series(kinds == 3)).then(pl.lit("not-a-time")).otherwise(pl.col("timestamp")),
    )
    # Duplicates of opted-out users vanish with the user, so count only consenting ones.
    consenting = broken["consent"] == "yes"
    injected = {
        "duplicates": int(((kinds == 0) & consenting.to_numpy()).sum()),
        "user_missing": int((kinds == 1).sum()),
        "item_missing": int(((kinds == 2) & consenting.to_numpy()).sum()),
        "timestamp_unparseable": int(((kinds == 3) & consenting.to_numpy()).sum()),
    }
    mixed = pl.concat([frame, broken])
    return mixed.gather(rng.permutation(len(mixed))), injected


def run(source: None, cfg: SynthConfig, out: Path, *, force: bool = False):
    """Generate and write the raw log, ground truth, a ready-made ingest schema and a manifest
    (a synthetic log has no input: `source` is None)."""
    from persotool.stages.synth.result import SyntheticLog

    write(cfg, Path(out), force=force)
    return SyntheticLog(out)


def write(cfg: SynthConfig, out: Path, *, force: bool = False) -> dict[str, Any]:
    """Generate and write the raw log, ground truth, a ready-made ingest schema and a manifest."""
    started = time.perf_counter()
    artifacts.check_output(out, force=force)
    if cfg.impressions:
        return _write_impressions(cfg, Path(out), force=force, started=started)
    frame, arrays, meta = generate(cfg)
    suffix = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}[cfg.format]
    suffix += {"none": "", "gzip": ".gz", "zstd": ".zst"}[cfg.compression]
    name = "events" + suffix
    with artifacts.atomic_directory(out, force=force) as tmp:
        _write_log(frame, tmp / name, cfg)
        np.savez_compressed(tmp / "ground_truth.npz", **arrays)
        (tmp / "ground_truth.json").write_text(json.dumps({"config": cfg.model_dump(), **meta}, indent=2) + "\n")
        (tmp / "schema.toml").write_text(_schema_toml(cfg))
        manifest = artifacts.new_manifest(
            "synthetic-log",
            1,
            name=Path(out).name,
            config=cfg.model_dump(),
            config_hash=artifacts.config_hash(cfg.model_dump()),
            log=name,
            rows=len(frame),
            truth=meta,
            files={n: artifacts.file_sha256(tmp / n) for n in (name, "ground_truth.npz")},
            seconds=round(time.perf_counter() - started, 3),
        )
        artifacts.write_json_atomic(tmp / artifacts.MANIFEST, manifest)
    return manifest


def _write_log(frame: pl.DataFrame, path: Path, cfg: SynthConfig) -> None:
    if cfg.format == "parquet":
        frame.write_parquet(path)
        return
    plain = path.with_name(path.name.removesuffix(".gz").removesuffix(".zst"))
    if cfg.format == "csv":
        frame.write_csv(plain)
    else:
        frame.write_ndjson(plain)
    if cfg.compression == "none":
        return
    if cfg.compression == "gzip":
        import gzip
        import shutil

        with open(plain, "rb") as src, gzip.open(path, "wb", compresslevel=5) as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
    else:
        import zstandard

        with open(plain, "rb") as src, open(path, "wb") as dst:
            zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
    plain.unlink()


def _schema_toml(cfg: SynthConfig) -> str:
    weights = "\n".join(f"{k} = {v}" for k, v in EVENT_WEIGHTS.items())
    return f"""# Ingest schema for this synthetic log: persotool ingest events.* --schema schema.toml -o DIR
session_gap_minutes = {cfg.session_gap_minutes}

[source]
format = "{cfg.format}"

[columns]
user = "user_id"
item = "item_id"
time = "timestamp"
time_format = "{"iso" if cfg.time_encoding == "iso" else "ms"}"
event = "event"
consent = "consent"

[events]
{weights}
"""


def _write_impressions(cfg: SynthConfig, out: Path, *, force: bool, started: float) -> dict[str, Any]:
    """An impression log in the Open Bandit Dataset's layout from `ImpressionWorld`: a softmax
    logger's impressions with exact propensities, and the action_dist.npy of a target near the
    logger and one far from it, with every policy's exact value in ground_truth.json."""
    from persotool.kernels.offpolicy.synthetic import ImpressionWorld

    world = ImpressionWorld(items=cfg.items, positions=cfg.positions, d=cfg.context, seed=cfg.seed)
    x, log, dists = world.log(cfg.events, np.random.default_rng(cfg.seed + 1))
    begin = datetime.fromisoformat(cfg.start).replace(tzinfo=UTC)
    seconds = np.sort(np.random.default_rng(cfg.seed + 2).integers(0, cfg.days * 86_400, cfg.events))
    frame = pl.DataFrame(
        {
            "timestamp": pl.Series(begin.timestamp() * 1e6 + seconds * 1e6)
            .cast(pl.Int64)
            .cast(pl.Datetime("us", "UTC")),
            "item_id": log.item + 1,
            "position": log.position + 1,
            "click": log.reward.astype(np.int8),
            "propensity_score": log.pscore,
            **{f"user_feature_{j}": x[:, j].round(6) for j in range(cfg.context)},
        }
    )
    name = "impressions.csv"
    truth = {
        "values": {k: float(v) for k, v in world.value.items()},
        "targets": {k: f"targets/{k}.npy" for k in dists},
        "note": "values are per impression at a position drawn like the log's (Monte Carlo over 400,000 contexts)",
    }
    with artifacts.atomic_directory(out, force=force) as tmp:
        frame.write_csv(tmp / name)
        (tmp / "targets").mkdir()
        for key, dist in dists.items():
            np.save(tmp / "targets" / f"{key}.npy", dist.astype(np.float32), allow_pickle=False)
        (tmp / "ground_truth.json").write_text(json.dumps({"config": cfg.model_dump(), **truth}, indent=2) + "\n")
        (tmp / "schema.toml").write_text(
            "# Ingest schema for this impression log: persotool ingest impressions.csv --schema schema.toml -o DIR\n"
            '[source]\nformat = "csv"\n\n[columns]\nitem = "item_id"\ntime = "timestamp"\ntime_format = "iso"\n'
            'reward = "click"\nposition = "position"\npropensity = "propensity_score"\ncontext = ["user_feature_*"]\n'
        )
        manifest = artifacts.new_manifest(
            "synthetic-log",
            1,
            name=out.name,
            config=cfg.model_dump(),
            config_hash=artifacts.config_hash(cfg.model_dump()),
            log=name,
            rows=len(frame),
            truth=truth,
            files={n: artifacts.file_sha256(tmp / n) for n in (name, "targets/near.npy", "targets/far.npy")},
            seconds=round(time.perf_counter() - started, 3),
        )
        artifacts.write_json_atomic(tmp / artifacts.MANIFEST, manifest)
    return manifest
