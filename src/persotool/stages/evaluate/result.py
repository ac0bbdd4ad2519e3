"""An evaluation directory: the flat summary (metrics, beyond-accuracy measures, user counts), the
per-user and per-segment tables, and what was evaluated (context)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from persotool.kernels import render, storage
from persotool.kernels.artifact import Artifact, Manifest


class EvaluationManifest(Manifest):
    summary: dict[str, Any]
    context: dict[str, Any]


class Evaluation(Artifact):
    """An evaluation: the flat summary (metrics, beyond-accuracy measures, user counts), the
    per-user and per-segment tables, and what was evaluated (context). Gate it with
    `require({"ndcg@10": 0.05})`."""

    kind = "evaluation"
    manifest_model = EvaluationManifest
    tables = ("per_user.parquet", "segments.parquet")
    manifest: EvaluationManifest

    def __init__(self, path: Path | str, *, scratch=None) -> None:
        super().__init__(path)
        self.scratch = scratch  # the temporary directory holding an evaluation written nowhere else
        self.summary: dict[str, Any] = self.manifest.summary
        self.context: dict[str, Any] = self.manifest.context

    @property
    def digest(self) -> str:
        parents = {k: v for k, v in self.context.items() if k.endswith("digest")}
        return storage.lineage_digest({}, parents=parents, config=self.summary)

    @cached_property
    def per_user(self):
        return self.table("per_user")

    @cached_property
    def segments(self):
        return self.table("segments")

    def to_dict(self) -> dict[str, Any]:
        """The flat metric@k summary, then the per-segment means with their intervals."""
        segments = self.segments.to_dicts() if len(self.segments) else []
        return {
            **self.summary,
            "segment_by": self.context.get("segment_by"),
            **({"stability": self.context["stability"]} if self.context.get("stability") else {}),
            **({"exposure": self.context["exposure"]} if self.context.get("exposure") else {}),
            **({"accuracy_gap": self.context["accuracy_gap"]} if self.context.get("accuracy_gap") else {}),
            "segments": segments,
            "mlflow_run_id": self.mlflow_run_id,
        }

    def notes(self) -> list[str]:
        from persotool.kernels.metrics.coverage import cold_notes

        return cold_notes(self.context.get("cold") or {})

    def measures(self) -> dict[str, float]:
        return {key: value for key, value in self.summary.items() if isinstance(value, int | float) or value is None}

    def blocks(self) -> list[render.Block]:
        rows = [[key, render.number(value)] for key, value in self.summary.items()]
        blocks: list[render.Block] = [
            render.Table(f"Evaluation of {self.context.get('model', 'ranked lists')}", ["metric", "value"], rows)
        ]
        stable = self.context.get("stability")
        if stable:
            rows = [
                [name, f"{v['mean']:.4f}", f"[{v['ci_low']:.4f}, {v['ci_high']:.4f}]"]
                for name, v in stable.items()
                if isinstance(v, dict)
            ]
            title = f"Against {stable['model']} ({stable['compared_with']}): how much the lists differ"
            caption = (
                "per user, then averaged (bootstrap 95% CI): Jaccard of the two top-k sets, rank-biased overlap "
                f"(p = 0.9), changed: share of users with Jaccard below {stable['changed_below']}"
            )
            blocks.append(render.Table(title, ["measure", "mean", "95% CI"], rows, caption=caption))
        exposure = self.context.get("exposure")
        if exposure:
            rows = [
                [
                    g["group"],
                    f"{g['items']:,}",
                    f"{g['catalogue_share']:.1%}",
                    f"{g['exposure_share']:.1%} [{g['ci_low']:.1%}, {g['ci_high']:.1%}]",
                    f"{g['ratio']:.2f} [{g['ratio_ci_low']:.2f}, {g['ratio_ci_high']:.2f}]",
                    f"{g['gini_within']:.3f}",
                ]
                for g in exposure["groups"]
            ]
            blocks.append(
                render.Table(
                    f"Exposure by {exposure['by']} (top {exposure['k']})",
                    ["items", "count", "of catalogue", "of exposure (95% CI)", "ratio", "Gini within"],
                    rows,
                    caption="ratio: share of exposure / share of catalogue (1: in proportion); bootstrap over users",
                    left={"items"},
                )
            )
        segments = self.segments
        if len(segments):
            shown = segments.filter(segments["metric"].str.starts_with("ndcg"))
            rows = [
                [
                    row["segment"],
                    f"{row['users']:,}",
                    row["metric"],
                    f"{row['mean']:.4f}",
                    f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]"
                    if row["ci_low"] is not None
                    else "n/a (too few users)",
                ]
                for row in shown.iter_rows(named=True)
            ]
            title = f"By {self.context.get('segment_by')} (bootstrap 95% CI)"
            gaps = "; ".join(
                f"{g['metric']} {g['gap']:.4f} [{g['ci_low']:.4f}, {g['ci_high']:.4f}] ({g['best']} over {g['worst']})"
                for g in self.context.get("accuracy_gap") or []
            )
            caption = f"accuracy gap, best segment minus worst (95% CI): {gaps}" if gaps else ""
            blocks.append(
                render.Table(
                    title, ["segment", "users", "metric", "mean", "95% CI"], rows, left={"metric"}, caption=caption
                )
            )
        return blocks

    @staticmethod
    def gate_names(cfg) -> list[str]:
        """Every figure an evaluation with this config measures: a gate on anything else is a
        typo, refused before any work."""
        from persotool.stages.evaluate.names import computed_names, metric_names

        lists = cfg.recommendations is not None or cfg.truth is not None
        names = computed_names(metric_names(cfg.k, cfg.metrics, lists=lists))
        if getattr(cfg, "compare", None) is not None:
            widest = max(cfg.k) if not isinstance(cfg.k, int) else cfg.k
            names += [f"{m}@{widest}" for m in ("jaccard", "rbo", "changed")]
        return names
