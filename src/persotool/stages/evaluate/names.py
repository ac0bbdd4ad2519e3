"""Which figures an evaluation computes: metric names with their cut-offs, and everything its summary
reports (so a gate on anything else is refused as a typo before any work)."""

from __future__ import annotations

DEFAULT_METRICS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate", "auc")
LIST_METRICS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")  # ranked lists carry no scores: no AUC
COUNTS = ("users_evaluated", "users_without_relevant")


def metric_names(k, metrics, *, lists: bool = False) -> list[str]:
    """Metric names with their cut-offs: `k` an int or ints, `metrics` names (with or without @k)
    as a list or a comma-separated string; the default set when None."""
    from persotool.kernels.metrics.definitions import parse

    cutoffs = sorted({int(x) for x in ([k] if isinstance(k, int) else k)})
    if metrics is None:
        metrics = LIST_METRICS if lists else DEFAULT_METRICS
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",")]
    names = []
    for metric in [m.strip() for m in metrics if m.strip()]:
        names += [metric] if "@" in metric or metric == "auc" else [f"{metric}@{c}" for c in cutoffs]
    for name in names:
        parse(name)
    return names


def computed_names(names: list[str]) -> list[str]:
    """Every summary key an evaluation with these metrics reports (for checking gates up front)."""
    from persotool.kernels.metrics.beyond import NAMES

    widest = max([int(n.split("@")[1]) for n in names if "@" in n] or [10])
    return [*names, *(f"{b}@{widest}" for b in NAMES), *COUNTS]
