"""A recommendations directory from `recommend`: recs.parquet (user_id, item_id, rank, score,
source) and its manifest: the model, the users and how many got the fallback."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from persotool.kernels import render
from persotool.kernels.artifact import Artifact, Manifest, Ref


class RecommendationsManifest(Manifest):
    digest: str
    model: Ref
    dataset: Ref
    config: dict[str, Any]
    counts: dict[str, int]
    files: dict[str, str]
    seconds: float


class Recommendations(Artifact):
    """Top-k lists for real user ids, in the layout `evaluate --recommendations` reads."""

    kind = "recommendations"
    manifest_model = RecommendationsManifest
    digest_field = "digest"
    manifest: RecommendationsManifest

    @cached_property
    def recs(self):
        return self.table("recs")

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "output": str(self.path),
            "recs": str(self.path / "recs.parquet"),
            "model": m.model.model_dump(),
            **m.counts,
            "seconds": m.seconds,
            "mlflow_run_id": self.mlflow_run_id,
        }

    def measures(self) -> dict[str, float]:
        return {key: float(value) for key, value in self.manifest.counts.items()}

    def blocks(self) -> list[render.Block]:
        m = self.manifest
        c = m.counts
        pairs = [
            ("model", f"{m.model.name} ({m.model.path})"),
            ("users", f"{c['users']:,}"),
            ("items per list", str(c["k"])),
            ("from the model", f"{c['model']:,}"),
            ("fallback: no training history", f"{c['no_training_history']:,}"),
            ("fallback: unknown user", f"{c['unknown_user']:,}"),
            ("seconds", f"{m.seconds:.2f}"),
            ("mlflow run", self.run_cell()),
        ]
        head = self.recs.head(10)
        rows = [
            [str(r["user_id"]), str(r["rank"]), str(r["item_id"]), f"{r['score']:.4g}"]
            for r in head.iter_rows(named=True)
        ]
        return [
            render.key_values(f"Recommendations {self.path}", pairs),
            render.Table(
                "First rows of recs.parquet", ["user_id", "rank", "item_id", "score"], rows, left={"user_id", "item_id"}
            ),
        ]

    def notes(self) -> list[str]:
        c = self.manifest.counts
        if c["unknown_user"]:
            return [
                f"{c['unknown_user']:,} of {c['users']:,} user ids are not in the model's dataset: "
                "they got the popularity ranking"
            ]
        return []
