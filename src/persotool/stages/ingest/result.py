"""A dataset directory from `ingest`: interactions, users, items, rejects, and what was read."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from persotool.kernels import render
from persotool.kernels.artifact import Artifact, Manifest

SUMMARY_COUNTS = (
    "rows_read",
    "rows_kept",
    "rows_rejected",
    "rejected_by_reason",
    "duplicates_removed",
    "opted_out_users",
    "opted_out_rows",
    "below_threshold",
    "blank_lines",
    "n_users",
    "n_items",
    "n_sessions",
)


class DatasetManifest(Manifest):
    dataset_digest: str
    config: dict[str, Any]
    config_hash: str
    sources: list[Any]
    counts: dict[str, Any]
    time_min: str | None
    time_max: str | None
    files: dict[str, str]
    seconds: float


class Dataset(Artifact):
    """A dataset directory from `ingest`: interactions, users, items, rejects."""

    kind = "dataset"
    manifest_model = DatasetManifest
    digest_field = "dataset_digest"
    manifest: DatasetManifest

    @property
    def counts(self) -> dict[str, Any]:
        return self.manifest.counts

    @property
    def timed(self) -> bool:
        """Whether the log had event times (a `user,item,count` dump does not)."""
        return self.manifest.time_min is not None

    def require_times(self, purpose: str) -> None:
        """Refuse, before anything is written, a use that needs event times on a log without them."""
        from persotool.errors import DataError

        if not self.timed:
            raise DataError(
                f"has no timestamps (it was ingested without a time column); {purpose} needs event times",
                where=str(self.path),
            )

    @cached_property
    def interactions(self):
        return self.table("interactions")

    @cached_property
    def users(self):
        return self.table("users")

    @cached_property
    def items(self):
        return self.table("items")

    @cached_property
    def rejects(self):
        return self.table("rejects")

    def summary(self) -> dict[str, Any]:
        """The flat summary `ingest --json` prints."""
        m = self.manifest
        return {
            **{key: m.counts[key] for key in SUMMARY_COUNTS},
            **{key: m.counts.get(key, 0) for key in ("files_read", "files_empty", "files_hidden_skipped")},
            "time_min": m.time_min,
            "time_max": m.time_max,
            "dataset_digest": m.dataset_digest,
            "seconds": m.seconds,
            "output": str(self.path),
        }

    def to_dict(self) -> dict[str, Any]:
        return self.summary() | {"mlflow_run_id": self.mlflow_run_id}

    def measures(self) -> dict[str, float]:
        return {key: value for key, value in self.manifest.counts.items() if isinstance(value, int | float)}

    def notes(self) -> list[str]:
        c, notes = self.manifest.counts, []
        if not self.timed:
            notes.append(
                "this log has no timestamps: split it with --strategy random or user-random; temporal and "
                "leave-last splits, popularity windows, calibrate, backtest and simulate need event times"
            )
        if c.get("files_empty"):
            notes.append(
                f"{c['files_empty']:,} of {c['files_empty'] + c['files_read']:,} files had no data rows "
                "(empty, or a header alone) and were skipped"
            )
        if c.get("files_hidden_skipped"):
            notes.append(
                f"{c['files_hidden_skipped']:,} hidden files (dotfiles, such as macOS ._* metadata) were skipped"
            )
        return notes

    def info(self) -> render.View:
        """Counts, sparsity, activity distributions, time range and rejects (`datasets info`)."""
        from persotool.stages.ingest.info import DatasetInfo

        return DatasetInfo(self.path)

    def blocks(self) -> list[render.Block]:
        result = self.summary()
        keys = ("rows_read", "rows_kept", "rows_rejected", "duplicates_removed", "opted_out_users")
        keys += ("below_threshold", "n_users", "n_items", "n_sessions")
        pairs = [(key.replace("_", " "), f"{result[key]:,}") for key in keys]
        pairs += [(f"  rejected: {reason}", f"{count:,}") for reason, count in result["rejected_by_reason"].items()]
        pairs += [
            ("time range", f"{result['time_min']} .. {result['time_max']}" if self.timed else "no timestamps"),
            ("dataset digest", result["dataset_digest"]),
            ("seconds", f"{result['seconds']:.2f}"),
            ("mlflow run", self.run_cell()),
        ]
        return [render.key_values(f"Ingested into {self.path}", pairs)]
