"""A dataset directory from `ingest`: interactions, users, items, rejects, and what was read."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from pydantic import Field

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
    context: list[str] = Field(default_factory=list)  # impression logs: the context columns kept as features


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

    @property
    def impressions(self) -> bool:
        """Whether this is an impression log (one row per shown item with its reward), for `ope`."""
        return self.manifest.counts.get("layout") == "impressions"

    def require_interactions(self, purpose: str) -> None:
        """Refuse an impression log where an interaction log is needed."""
        from persotool.errors import DataError

        if self.impressions:
            raise DataError(
                f"is an impression log (ingested with a reward column), read by off-policy evaluation; {purpose} "
                "needs an interaction log (user, item, time)",
                where=str(self.path),
            )

    def require_times(self, purpose: str) -> None:
        """Refuse, before anything is written, a use that needs event times on a log without them."""
        from persotool.errors import DataError

        self.require_interactions(purpose)
        if not self.timed:
            raise DataError(
                f"has no timestamps (it was ingested without a time column); {purpose} needs event times",
                where=str(self.path),
            )

    @cached_property
    def interactions(self):
        self.require_interactions("reading interactions")
        return self.table("interactions")

    @cached_property
    def impression_log(self):
        """impressions.parquet: row (log order), item_idx, item_id, position, reward, propensity,
        slate, timestamp, user_id (the columns the log has), then the context columns."""
        return self.table("impressions")

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
        if self.impressions:
            if c["n_slates"] > 0.9 * c["rows_kept"]:
                notes.append(
                    f"{c['n_slates']:,} slates for {c['rows_kept']:,} impressions: nearly every slate is a single "
                    "impression (a sample of rows, not of slates?), so slate estimators have nothing to work with"
                )
            if not c["has_propensity"]:
                notes.append("no propensities: ope will estimate the logging policy from the log and say so")
            return notes
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

        if self.impressions:
            return self

        return DatasetInfo(self.path)

    def blocks(self) -> list[render.Block]:
        if self.impressions:
            return [self._impression_block()]
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

    def _impression_block(self) -> render.Block:
        m, c = self.manifest, self.manifest.counts
        pairs = [
            ("layout", "impression log (for off-policy evaluation)"),
            ("impressions read", f"{c['rows_read']:,}"),
            ("impressions kept", f"{c['rows_kept']:,}"),
            ("rows rejected", f"{c['rows_rejected']:,}"),
            *((f"  rejected: {reason}", f"{count:,}") for reason, count in c["rejected_by_reason"].items()),
            ("items", f"{c['n_items']:,}"),
            ("positions", f"{c['n_positions']:,}"),
            ("users", f"{c['n_users']:,}" if c["n_users"] else "no user id"),
            ("slates", f"{c['n_slates']:,} ({c['slates_from']})" if c["n_slates"] else c["slates_from"]),
            ("mean reward", f"{c['reward_mean']:.4g}" + (" (clicks)" if c["binary_reward"] else "")),
            ("propensities", "logged" if c["has_propensity"] else "not logged: ope estimates the logging policy"),
            ("context columns", f"{c['context_columns']:,}"),
            ("time range", f"{m.time_min} .. {m.time_max}" if self.timed else "no timestamps"),
            ("dataset digest", m.dataset_digest),
            ("seconds", f"{m.seconds:.2f}"),
            ("mlflow run", self.run_cell()),
        ]
        return render.key_values(f"Ingested into {self.path}", pairs)
