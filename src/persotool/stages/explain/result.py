"""An explanations directory from `explain`: explanations.parquet (one row per item and reason:
rank, item_id, score, explained, reason, reason_item_id, contribution) and its manifest."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from persotool.kernels import render
from persotool.kernels.artifact import Artifact, Manifest, Ref


class ExplanationsManifest(Manifest):
    digest: str
    model: Ref
    config: dict[str, Any]
    user: str
    items: int
    files: dict[str, str]
    seconds: float


class Explanations(Artifact):
    """A user's top-k list with each item's reasons."""

    kind = "explanations"
    manifest_model = ExplanationsManifest
    digest_field = "digest"
    manifest: ExplanationsManifest

    def __init__(self, path: Path | str, *, scratch=None) -> None:
        super().__init__(path)
        self.scratch = scratch  # the temporary directory holding explanations written nowhere else

    @cached_property
    def explanations(self):
        import polars as pl

        return pl.read_parquet(self.path / "explanations.parquet")

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        items = []
        for (rank,), part in self.explanations.group_by("rank", maintain_order=True):
            first = part.row(0, named=True)
            items.append(
                {
                    "rank": rank,
                    "item_id": first["item_id"],
                    "score": first["score"],
                    "explained": first["explained"],
                    "reasons": part.select("reason", "reason_item_id", "contribution").to_dicts(),
                }
            )
        return {"user": m.user, "model": m.model.model_dump(), "items": items, "mlflow_run_id": self.mlflow_run_id}

    def measures(self) -> dict[str, float]:
        return {"items": float(self.manifest.items)}

    def blocks(self) -> list[render.Block]:
        m = self.manifest
        rows = []
        for item in self.to_dict()["items"]:
            for n, r in enumerate(item["reasons"]):
                rows.append(
                    [
                        str(item["rank"]) if n == 0 else "",
                        item["item_id"] if n == 0 else "",
                        (
                            f"{item['score']:.4g}"
                            + (
                                f" (refolded {item['explained']:.4g})"
                                if abs(item["explained"] - item["score"]) > 1e-6 * max(1.0, abs(item["score"]))
                                else ""
                            )
                        )
                        if n == 0
                        else "",
                        r["reason"] + (f" {r['reason_item_id']}" if r["reason_item_id"] is not None else ""),
                        f"{r['contribution']:+.4g}",
                    ]
                )
        return [
            render.Table(
                f"Why {m.model.name} recommends these to user {m.user}",
                ["rank", "item", "score", "reason", "contribution"],
                rows,
                caption="contributions add up to the score (ALS: to the score of the user's factors refolded from "
                "their history, shown beside the model's)",
                left={"item", "reason"},
            )
        ]
