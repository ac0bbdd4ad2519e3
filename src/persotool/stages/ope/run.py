"""`ope`: target policies valued on an impression log (see `persotool.kernels.offpolicy`).

The log's context columns become the reward model's features (numeric ones standardised, text
ones one-hot). Without logged propensities the logging policy is estimated from the log (a
multinomial logistic regression of the shown item on the context and the position) and every
output says the estimates rest on it. A target is an `action_dist.npy` (read without pickles) or a
recommendation list made stochastic: the listed item at each rank with probability 1 - epsilon,
uniform otherwise; the distribution used is written beside the estimates."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from persotool.errors import DataError
from persotool.kernels import storage
from persotool.kernels.offpolicy import estimators as ope
from persotool.kernels.offpolicy.reward_model import features, fit_predict
from persotool.stages.ingest.result import Dataset
from persotool.stages.ope.config import OpeConfig
from persotool.stages.ope.result import OpeResult


def run(dataset, cfg: OpeConfig, out: Path, *, force: bool = False) -> OpeResult:
    started = time.perf_counter()
    dataset, out = Path(getattr(dataset, "path", dataset)), Path(out)
    inputs = [dataset, *cfg.policies]
    storage.check_output(out, force=force, inputs=inputs)
    ds = Dataset(dataset)
    if not ds.impressions:
        raise DataError(
            "is an interaction log; ope needs an impression log (ingest one with a reward column, e.g. --schema obd)",
            where=str(dataset),
        )
    table = ds.impression_log
    n_items, n_pos = int(ds.counts["n_items"]), int(ds.counts["n_positions"])
    item = table["item_idx"].to_numpy().astype(np.int64)
    position = table["position"].to_numpy().astype(np.int64)
    reward = table["reward"].to_numpy().astype(np.float64)
    context = features(table, ds.manifest.context)
    estimated = "propensity" not in table.columns
    pscore = _logging_policy(context, item, position, n_items, n_pos, cfg.seed) if estimated else None
    if pscore is None:
        pscore = table["propensity"].to_numpy().astype(np.float64)
    logged = ope.Logged(item, position, reward, pscore)
    targets = []
    for name, path in _names(cfg.policies):  # every target read and checked (once) before any fitting
        dist, kind, note = _policy(path, table, ds, n_items, n_pos, cfg)
        try:
            ope.check_action_dist(dist, logged)
        except ValueError as exc:
            raise DataError(f"is not a valid action_dist ({exc})", where=str(path)) from None
        targets.append((name, path, dist, kind, note))
    model = fit_predict(context, item, position, reward, n_items, n_pos, folds=cfg.folds, seed=cfg.seed)
    rows, policies, warnings, dists = [], [], [], {}
    slate, slate_note = _slates(table, ds)
    for name, path, dist, kind, note in targets:
        found = ope.estimate_all(
            logged,
            dist,
            model,
            interval=cfg.interval,
            level=cfg.level,
            bootstrap=cfg.bootstrap,
            seed=cfg.seed,
            check=False,
        )
        chosen = ope.slope(found)
        diag = ope.diagnostics(logged, dist)
        policies.append(
            {
                "name": name,
                "path": str(Path(path).resolve()),
                "kind": kind,
                "sha256": _digest(Path(path)),
                "selected": chosen.name,
                "diagnostics": diag,
                "note": note,
            }
        )
        warnings += _warnings(name, diag, logged.n, cfg)
        if kind != "action_dist":
            dists[name] = dist
        slate_found = ope.slate_estimates(logged, slate, dist, level=cfg.level) if slate is not None else []
        for e in [*found, *slate_found]:
            rows.append(
                {
                    "policy": name,
                    "estimator": e.name,
                    "value": e.value,
                    "se": e.se,
                    "low": e.low,
                    "high": e.high,
                    "diff": e.diff,
                    "diff_low": e.diff_low,
                    "diff_high": e.diff_high,
                    "hyperparameter": e.hyperparameter
                    if e.hyperparameter is None or np.isfinite(e.hyperparameter)
                    else None,
                    "selected": e.name == chosen.name,
                }
            )
    if estimated:
        warnings.insert(0, "no logged propensities: every estimate rests on the estimated logging policy")
    if np.ptp(reward) == 0:
        warnings.insert(0, f"every logged reward is {reward[0]:g}: each estimate is that number, whatever the target")
    estimates = pl.DataFrame(rows)
    with storage.atomic_directory(out, force=force, inputs=inputs) as tmp:
        estimates.write_csv(tmp / "estimates.csv")
        estimates.write_json(tmp / "estimates.json")
        (tmp / "policies").mkdir()
        for name, dist in dists.items():
            np.save(tmp / "policies" / f"{name}.npy", dist.astype(np.float32), allow_pickle=False)
        _plots(estimates, float(reward.mean()), logged, policies, cfg, tmp)
        files = {p.relative_to(tmp).as_posix(): storage.file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        config = cfg.model_dump(mode="json")
        manifest = storage.new_manifest(
            OpeResult.kind,
            OpeResult.schema_version,
            name=out.name,
            digest=storage.lineage_digest(files, parents={"dataset": ds.digest}, config=config),
            dataset={"path": str(dataset.resolve()), "digest": ds.digest, "name": dataset.name},
            config=config,
            impressions=logged.n,
            items=n_items,
            positions=n_pos,
            logger_value=float(reward.mean()),
            propensities="estimated" if estimated else "logged",
            reward_model=model.calibration,
            policies=policies,
            estimates=rows,
            warnings=warnings,
            slates=slate_note,
            files=files,
            seconds=round(time.perf_counter() - started, 3),
        )
        storage.write_json_atomic(tmp / storage.MANIFEST, manifest)
        (tmp / "report.html").write_text(OpeResult(tmp).report_html(), encoding="utf-8")
    return OpeResult(out)


def _slates(table: pl.DataFrame, ds: Dataset) -> tuple[np.ndarray | None, str]:
    """The slate of each impression, when slates are identified and most hold several impressions."""
    rule, n = ds.counts.get("slates_from", ""), int(ds.counts.get("n_slates", 0))
    if "slate" not in table.columns:
        return None, f"slate estimators skipped: {rule or 'no slates identified'}"
    if n > 0.9 * len(table):
        return None, f"slate estimators skipped: {n:,} slates for {len(table):,} impressions ({rule})"
    return table["slate"].to_numpy(), f"IIPS, RIPS, SIPS over {n:,} slates ({rule}), intervals clustered by slate"


def _names(paths: list[Path]) -> list[tuple[str, Path]]:
    """A name per policy: the file's stem, or its directory's name for a generic stem or a model."""
    out, seen = [], set()
    for path in paths:
        path = Path(path)
        name = path.parent.name if path.stem in ("recs", "action_dist") and path.parent.name else path.stem
        name = path.name if path.is_dir() else name
        base, k = name, 2
        while name in seen:
            name, k = f"{base}-{k}", k + 1
        seen.add(name)
        out.append((name, path))
    return out


def _logging_policy(context, item, position, n_items: int, n_pos: int, seed: int) -> np.ndarray:
    """P(shown item | context, position) under a multinomial logistic regression, at the logged item."""
    from sklearn.linear_model import LogisticRegression

    onehot = np.eye(n_pos)[position]
    x = onehot if context is None else np.hstack([context, onehot])
    model = LogisticRegression(max_iter=500, random_state=seed).fit(x, item)
    proba = model.predict_proba(x)
    column = {c: k for k, c in enumerate(model.classes_)}
    p = proba[np.arange(len(item)), [column[i] for i in item]]
    return np.clip(p, 1e-6, 1.0)


def _policy(path: Path, table: pl.DataFrame, ds: Dataset, n_items: int, n_pos: int, cfg: OpeConfig):
    """(action_dist, kind, note) of one target."""
    path = Path(path)
    if path.is_dir() and (path / "model.json").is_file():
        if cfg.temperature is not None:
            return _softmax(path, table, ds, n_items, n_pos, cfg.temperature)
        return _from_lists(_model_lists(path, table, n_pos), table, ds, n_items, n_pos, cfg, "model")
    if not path.is_file():
        raise DataError(
            "not found: a target policy is an action_dist.npy, a recs.parquet or a model directory", where=str(path)
        )
    n = len(table)
    if path.suffix == ".npy":
        try:
            dist = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"cannot read it as a numpy array ({str(exc).splitlines()[0]})", where=str(path)) from None
        if dist.shape != (n, n_items, n_pos):
            raise DataError(
                f"has shape {dist.shape}; expected (impressions, items, positions) = ({n}, {n_items}, {n_pos}) in the "
                "log's order, items in ascending raw-id order",
                where=str(path),
            )
        return dist, "action_dist", None
    if path.suffix != ".parquet":
        raise DataError("a target policy is an action_dist.npy, a recs.parquet or a model directory", where=str(path))
    _need_users(table, path)
    try:
        recs = pl.read_parquet(path, columns=["user_id", "item_id", "rank"])
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read user_id, item_id, rank ({str(exc).splitlines()[0]})", where=str(path)) from None
    return _from_lists(recs, table, ds, n_items, n_pos, cfg, "recommendations")


def _digest(path: Path) -> str:
    if path.is_dir():
        from persotool.stages.train.result import TrainedModel

        return f"model {TrainedModel(path).digest}"
    return storage.file_sha256(path)


def _need_users(table: pl.DataFrame, path: Path) -> None:
    if "user_id" not in table.columns:
        raise DataError(
            "is a recommender, but the log has no user ids to match its lists to: give an action_dist.npy",
            where=str(path),
        )


def _model_lists(path: Path, table: pl.DataFrame, n_pos: int) -> pl.DataFrame:
    """A trained model's top-n_pos list for every user of the log (its own fallback for users it
    cannot know), as `recommend` makes them."""
    from persotool.kernels.models.serving import id_lists, id_maps
    from persotool.stages.train.result import TrainedModel

    _need_users(table, path)
    trained = TrainedModel(path)
    user_ids, item_ids = id_maps(Path(trained.manifest.dataset.path))
    wanted = table["user_id"].unique(maintain_order=True)
    return id_lists(trained.model, wanted, user_ids, item_ids, n_pos).select("user_id", "item_id", "rank")


def _softmax(path: Path, table: pl.DataFrame, ds: Dataset, n_items: int, n_pos: int, temperature: float):
    """softmax(score / temperature) of a trained model over the log's items for each impression's
    user, the same at every position; items the model does not know get no mass."""
    from persotool.kernels.models.serving import id_maps
    from persotool.stages.train.result import TrainedModel

    _need_users(table, path)
    trained = TrainedModel(path)
    user_ids, model_items = id_maps(Path(trained.manifest.dataset.path))
    log_items = ds.table("items").select("item_id", "item_idx")
    to_log = model_items.to_frame("item_id").join(log_items, on="item_id", how="left", maintain_order="left")[
        "item_idx"
    ]
    known = to_log.is_not_null().to_numpy()
    if not known.any():
        raise DataError("shares no item id with the log: its scores cannot be a target here", where=str(path))
    column = to_log.to_numpy()[known].astype(np.int64)
    users = table["user_id"].unique(maintain_order=True)
    index = users.to_frame().join(user_ids, on="user_id", how="left", maintain_order="left")["user_idx"]
    index = index.fill_null(-1).to_numpy().astype(np.int64)  # unknown users: the model's popularity fallback
    probs = np.zeros((len(users), n_items))
    for start in range(0, len(users), 2048):
        s = trained.model.score(index[start : start + 2048])[:, known].astype(np.float64) / temperature
        s = np.exp(s - s.max(axis=1, keepdims=True))
        probs[start : start + 2048, column] = s / s.sum(axis=1, keepdims=True)
    row = (
        table.select("user_id")
        .join(users.to_frame().with_row_index("u"), on="user_id", how="left", maintain_order="left")["u"]
        .to_numpy()
    )
    dist = np.repeat(probs[row][:, :, None], n_pos, axis=2)
    unknown = int((~known).sum())
    note = f"softmax of the model's scores / {temperature:g} over the log's items, the same at every position" + (
        f"; {unknown:,} of the model's items never appear in the log (left out)" if unknown else ""
    )
    return dist, "model", note


def _from_lists(recs: pl.DataFrame, table: pl.DataFrame, ds: Dataset, n_items: int, n_pos: int, cfg, kind: str):
    """Ranked lists as an epsilon-mixture: the listed item at each rank's position with probability
    1 - epsilon, uniform otherwise (uniform at a position with no listed item)."""
    n = len(table)
    items = ds.table("items").select("item_id", "item_idx")
    listed = (
        recs.with_columns(
            pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String), position=pl.col("rank") - 1
        )
        .filter(pl.col("position").is_between(0, n_pos - 1))
        .join(items, on="item_id", how="left")
    )
    outside = int(listed["item_idx"].null_count())
    dist = np.full((n, n_items, n_pos), cfg.epsilon / n_items)
    # the deterministic part at every position of every impression: its user's item at that rank
    by_user = listed.drop_nulls("item_idx").select("user_id", "position", "item_idx")
    frame = table.select("row", "user_id").join(by_user, on="user_id", how="inner")
    r, p, a = (frame[c].to_numpy() for c in ("row", "position", "item_idx"))
    dist[r, a.astype(np.int64), p.astype(np.int64)] += 1 - cfg.epsilon
    covered = np.zeros((n, n_pos), dtype=bool)
    covered[r, p.astype(np.int64)] = True
    dist.transpose(0, 2, 1)[~covered] = 1.0 / n_items  # a position with no listed item: uniform
    missing_users = int((~covered.any(axis=1)).sum())
    note = (
        f"epsilon {cfg.epsilon}: the listed item with probability {1 - cfg.epsilon:g}, uniform otherwise"
        + (f"; {outside:,} listed items never appear in the log (left out)" if outside else "")
        + (f"; {missing_users:,} impressions' users have no list (uniform)" if missing_users else "")
    )
    return dist, kind, note


def _warnings(name: str, diag: dict[str, float], n: int, cfg: OpeConfig) -> list[str]:
    out = []
    if diag["ess"] < cfg.min_ess or diag["ess"] < cfg.min_ess_share * n:
        out.append(
            f"{name}: effective sample size {diag['ess']:,.0f} of {n:,} impressions (below {cfg.min_ess:g} or "
            f"{cfg.min_ess_share:.0%}): the target is far from the logger; do not trust these estimates"
        )
    rewards = diag.get("effective_rewards")
    if rewards is not None and rewards < cfg.min_effective_rewards:
        out.append(
            f"{name}: the estimates rest on about {rewards:,.1f} effective rewards (ESS x the rarer outcome's share, "
            f"below {cfg.min_effective_rewards:g}): their intervals are too narrow (coverage well under 95% in "
            "simulated logs like this); log more impressions or explore more"
        )
    if diag["mass_on_unshown_items"] > 0.01:
        out.append(
            f"{name}: {diag['mass_on_unshown_items']:.1%} of the target's mass is on items the logger never showed: "
            "IPS-type estimators cannot see it, DM extrapolates"
        )
    return out


def _plots(estimates: pl.DataFrame, logger: float, logged, policies: list[dict[str, Any]], cfg, tmp: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.3 * len(estimates) + 1.2))
    y = np.arange(len(estimates))
    v, lo, hi = (estimates[c].to_numpy() for c in ("value", "low", "high"))
    chosen = estimates["selected"].to_numpy()
    ax.errorbar(v, y, xerr=[v - lo, hi - v], fmt="o", ms=3, color="#999999", capsize=2)
    ax.errorbar(
        v[chosen],
        y[chosen],
        xerr=[(v - lo)[chosen], (hi - v)[chosen]],
        fmt="o",
        ms=4,
        color="#3b6ea5",
        capsize=2,
        label="selected (SLOPE)",
    )
    ax.axvline(logger, color="#a53b3b", lw=0.8, label=f"logger's on-policy value {logger:.4g}")
    labels = [f"{p}: {e}" for p, e in zip(estimates["policy"], estimates["estimator"], strict=True)]
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel=f"value per impression ({cfg.level:.0%} intervals)", title="Estimated policy values")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(tmp / "forest.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for policy in policies:
        dist = np.load(tmp / "policies" / f"{policy['name']}.npy") if policy["kind"] != "action_dist" else None
        dist = dist if dist is not None else np.load(policy["path"], mmap_mode="r")
        w = ope.weights(logged, np.asarray(dist))
        ax.hist(np.log10(np.maximum(w, 1e-6)), bins=50, histtype="step", label=policy["name"])
    ax.set(xlabel="log10 importance weight (target / logger)", ylabel="impressions", title="Importance weights")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(tmp / "weights.png", dpi=110)
    plt.close(fig)
