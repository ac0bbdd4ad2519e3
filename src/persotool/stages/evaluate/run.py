"""One evaluation as a library call: a trained model on its split (or another split of its
dataset), or another system's ranked lists, written as an evaluation directory and returned as an
`Evaluation` (the CLI's `evaluate` is a thin shell over it)."""

from __future__ import annotations

import sys
from pathlib import Path

from persotool.errors import ConfigError
from persotool.stages.evaluate.config import EvaluateConfig
from persotool.stages.evaluate.names import metric_names
from persotool.stages.evaluate.result import Evaluation


def run(model, cfg: EvaluateConfig, out: Path | None, *, force: bool = False) -> Evaluation:
    """Evaluate a model directory on its split (or `cfg.split`, of the same dataset), or another
    system's ranked lists (`cfg.recommendations` and `cfg.truth`; `model` None). Without `out` the
    evaluation lives in a temporary directory until the returned result is dropped."""
    import tempfile

    from persotool.kernels.storage import check_output

    model = None if model is None else Path(getattr(model, "path", model))
    external = cfg.recommendations is not None or cfg.truth is not None
    names = metric_names(cfg.k, cfg.metrics, lists=external)
    inputs = [Path(p) for p in (model, cfg.split, cfg.recommendations, cfg.truth, cfg.compare) if p is not None]
    if out is not None:
        check_output(Path(out), force=force, inputs=inputs)
    if external:
        if cfg.recommendations is None or cfg.truth is None or model is not None:
            raise ConfigError("recommendations and truth go together, without a model")
        result, per_segment, context = _external(Path(cfg.recommendations), Path(cfg.truth), names)
    else:
        if model is None:
            raise ConfigError("give a model directory, or recommendations and truth")
        result, per_segment, context = _model(model, names, cfg)
    flat = {
        **result.summary,
        **result.beyond,
        "users_evaluated": result.users_evaluated,
        "users_without_relevant": result.users_without_relevant,
    }
    tables = {"per_user": result.per_user, "segments": per_segment}
    scratch = None
    if out is None:
        scratch = tempfile.TemporaryDirectory(prefix="persotool-evaluation-")
        target = Path(scratch.name) / "evaluation"
    else:
        target = Path(out)
    context["config"] = cfg.model_dump(mode="json")
    _write(target, tables, flat, context, force, inputs)
    return Evaluation(target, scratch=scratch)


def _model(model_dir: Path, names: list[str], cfg: EvaluateConfig):
    from persotool.errors import ConfigError
    from persotool.kernels.metrics import segments
    from persotool.kernels.metrics.coverage import cold_counts
    from persotool.kernels.metrics.ranking import evaluate_model
    from persotool.kernels.models.features import feature_matrix
    from persotool.kernels.models.registry import load
    from persotool.kernels.storage import read_artifact
    from persotool.stages.split.result import Split

    manifest = read_artifact(model_dir, "model")
    model = load(model_dir)
    split = Split(cfg.split or Path(manifest["split"]["path"]))
    check_lineage(manifest, split, model_dir)
    on = cfg.on
    truth = split.test if on == "test" else split.valid
    if truth is None or on not in ("test", "valid"):
        raise ConfigError(
            f"`on` {on!r}: the split has no such part (test, or valid when it was cut with a validation part)"
        )
    vectors, _ = feature_matrix(split.dataset_path, "item", split.n_items)
    result = evaluate_model(model, truth, names, n_items=split.n_items, item_features=vectors, seed=cfg.seed)
    if cfg.compare is not None:
        _stability(result, Path(cfg.compare), split, truth, cfg)
    segment_by = cfg.segment_by
    labels = segments.labels_for(
        segment_by, split.train, split.dataset_path, bins=cfg.segment_bins, edges=cfg.segment_edges
    )
    per_segment = segments.segment_table(
        result.per_user, labels, list(result.summary), seed=cfg.seed, min_users=cfg.min_segment_users
    )
    gaps = [
        segments.accuracy_gap(result.per_user, labels, metric, min_users=cfg.min_segment_users, seed=cfg.seed)
        for metric in result.summary
        if metric.startswith(("ndcg@", "recall@"))
    ]
    context = {
        "accuracy_gap": [g for g in gaps if g is not None],
        "exposure": _exposure(result.recommendations, split, cfg),
        "model": manifest["model"],
        "model_dir": str(model_dir),
        "split": str(split.path),
        "on": on,
        "segment_by": segment_by,
        "model_digest": manifest["model_digest"],
        "cold": cold_counts(split.train, truth),
        "dataset_digest": split.manifest.dataset.digest,
        **({"stability": result.stability} if getattr(result, "stability", None) else {}),
    }
    return result, per_segment, context


def _exposure(recs, split, cfg: EvaluateConfig) -> dict:
    """Each item group's share of the top-k exposure against its share of the catalogue, at the
    widest k (kernels.metrics.exposure)."""
    import numpy as np
    import polars as pl

    from persotool.errors import ConfigError
    from persotool.kernels.metrics import exposure

    k = max(cfg.k) if not isinstance(cfg.k, int) else cfg.k
    if cfg.exposure_by == "popularity":
        counts = np.bincount(split.train["item_idx"].to_numpy(), minlength=split.n_items)
        groups, names = exposure.popularity_tiers(counts)
    else:
        items = pl.read_parquet(split.dataset_path / "items.parquet")
        allowed = [
            c for c in items.columns if c not in ("item_idx", "item_id", "features") and items[c].dtype == pl.String
        ]
        if cfg.exposure_by not in allowed:
            raise ConfigError(
                f"exposure_by {cfg.exposure_by!r}: use popularity or a text column of the items "
                f"({', '.join(allowed) or 'the dataset has none'})"
            )
        values = items.sort("item_idx")[cfg.exposure_by].fill_null("(missing)")
        names = sorted(set(values.to_list()))
        groups = np.array([names.index(v) for v in values.to_list()])
    return {
        "by": cfg.exposure_by,
        "k": k,
        "groups": exposure.exposure_table(recs, groups, names, k, seed=cfg.seed),
    }


def _stability(result, other_dir: Path, split, truth, cfg: EvaluateConfig) -> None:
    """Per evaluated user, how much the other model's top-k list differs from this one's (k the
    widest cut-off): jaccard@k, rbo@k and changed@k (1 when the Jaccard similarity is below
    `changed_below`), added to the per-user table and the summary (so segments and gates see them),
    with bootstrap intervals in the context."""
    import numpy as np
    import polars as pl

    from persotool.kernels.metrics import segments, stability
    from persotool.kernels.metrics.ranking import evaluate_model
    from persotool.kernels.models.registry import load
    from persotool.kernels.storage import read_artifact

    manifest = read_artifact(other_dir, "model")
    check_lineage(manifest, split, other_dir)
    k = result.recommendations.shape[1]
    # only the other model's top-k lists are needed: one cheap metric at the same depth, no AUC
    other = evaluate_model(load(other_dir), truth, [f"hit_rate@{k}"], n_items=split.n_items, seed=cfg.seed)
    mine, theirs = result.recommendations, other.recommendations
    users = np.sort(result.per_user["user_idx"].to_numpy())
    sim = stability.jaccard(mine, theirs)
    columns = {
        f"jaccard@{k}": sim,
        f"rbo@{k}": stability.rbo(mine, theirs),
        f"changed@{k}": (sim < cfg.changed_below).astype(np.float64),
    }
    frame = pl.DataFrame({"user_idx": users, **columns}).with_columns(
        pl.col("user_idx").cast(result.per_user["user_idx"].dtype)
    )
    result.per_user = result.per_user.join(frame, on="user_idx", how="left")
    result.stability = {"compared_with": str(other_dir), "model": manifest["model"], "changed_below": cfg.changed_below}
    for name, values in columns.items():
        low, high = segments.bootstrap_ci(values, seed=cfg.seed)
        result.summary[name] = float(values.mean()) if len(values) else float("nan")
        result.stability[name] = {"mean": result.summary[name], "ci_low": low, "ci_high": high}


def check_lineage(manifest: dict, split, model_dir: Path) -> None:
    """A model meets only data of the dataset it was trained on: its user and item indices mean
    nothing elsewhere (another dataset of the same shape would give plausible, wrong metrics)."""
    from persotool.errors import DataError

    trained_on, offered = manifest["dataset"]["digest"], split.manifest.dataset.digest
    if trained_on != offered:
        raise DataError(
            f"was trained on dataset {trained_on} ({manifest['dataset'].get('name')}), but split {split.path} is of "
            f"dataset {offered} ({split.manifest.dataset.name}); evaluate it on a split of its own dataset",
            where=str(model_dir),
        )
    if manifest["split"]["digest"] != split.digest:
        print(
            f"persotool: note: {model_dir} was trained on split {manifest['split']['digest']}, not on "
            f"{split.path}; test interactions of this split may be in the model's training data",
            file=sys.stderr,
        )


def _external(recs_path: Path, truth_path: Path, names: list[str]):
    import polars as pl

    from persotool.errors import DataError
    from persotool.kernels.metrics import segments
    from persotool.kernels.metrics.ranking import evaluate_lists

    recs = _read_table(recs_path, ["user_id", "item_id", "rank"], "recommendations")
    truth = _read_table(truth_path, ["user_id", "item_id"], "truth")
    recs = recs.with_columns(
        pl.col("user_id", "item_id").cast(pl.String), rank=pl.col("rank").cast(pl.Int64, strict=False)
    )
    if recs["rank"].null_count():
        raise DataError("rank must be an integer (1 = best)", where=str(recs_path))
    relevant = (
        pl.col("relevance").cast(pl.Float64, strict=False).fill_null(0) > 0
        if "relevance" in truth.columns
        else pl.lit(True)
    )
    truth = truth.with_columns(pl.col("user_id", "item_id").cast(pl.String), relevant=relevant)
    users = pl.concat([recs["user_id"], truth["user_id"]]).unique().sort()
    items = pl.concat([recs["item_id"], truth["item_id"]]).unique().sort()
    user_enum, item_enum = pl.Enum(users.to_list()), pl.Enum(items.to_list())

    def coded(frame):
        return frame.with_columns(
            user_idx=pl.col("user_id").cast(user_enum).to_physical().cast(pl.Int64),
            item_idx=pl.col("item_id").cast(item_enum).to_physical().cast(pl.Int64),
        )

    result = evaluate_lists(coded(recs), coded(truth), names, n_items=len(items))
    result.beyond = {k: v for k, v in result.beyond.items() if not k.startswith(("novelty", "popularity"))}
    per_segment = pl.DataFrame(schema=segments.SEGMENT_SCHEMA)
    context = {"recommendations": str(recs_path), "truth": str(truth_path)}
    return result, per_segment, context


def _write(out: Path, tables: dict, flat: dict, context: dict, force: bool, inputs: list[Path]) -> None:
    from persotool.kernels import storage as artifacts

    with artifacts.atomic_directory(out, force=force, inputs=inputs) as tmp:
        for name, table in tables.items():
            table.write_parquet(tmp / f"{name}.parquet")
        tables["segments"].write_csv(tmp / "segments.csv")
        manifest = artifacts.new_manifest(
            Evaluation.kind, Evaluation.schema_version, name=out.name, summary=flat, context=context
        )
        artifacts.write_json_atomic(tmp / artifacts.MANIFEST, manifest)


def _read_table(path: Path, columns: list[str], what: str):
    import polars as pl

    from persotool.errors import DataError

    try:
        frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"cannot read {what} ({str(exc).splitlines()[0]})", where=str(path)) from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{what} needs columns {', '.join(columns)}; missing {', '.join(missing)}", where=str(path))
    return frame
