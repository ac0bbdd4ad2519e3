"""What every stage's result is built on: an output directory of one kind, opened through one
manifest loader (kind, schema version and typed fields checked on the way in), with its digest,
its tables as polars frames on demand, and the three ways a result shows itself (`to_dict()` for
`--json`, rich blocks for the terminal, Markdown for a notebook) built from the same numbers.

Each stage subclasses `Artifact` in its own `result.py` with its `Manifest` model; nothing here
knows any stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from persotool.errors import QualityGateFailed
from persotool.kernels import render, storage


class Ref(BaseModel):
    """Lineage: the directory an artifact was made from, and that directory's digest."""

    model_config = ConfigDict(extra="allow")

    path: str
    digest: str
    name: str | None = None


class Manifest(BaseModel):
    """The fields every manifest has; the rest (timings, configs echoed for the record, per-kind
    detail) are kept as extra fields, so a manifest read and written back is unchanged."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    kind: str
    schema_version: int
    persotool_version: str
    name: str

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)


def parse_manifest(model: type[Manifest], raw: dict[str, Any], where: str) -> Manifest:
    """The typed manifest of one artifact; a field of the wrong type is a data error naming it."""
    from pydantic import ValidationError

    from persotool.errors import DataError

    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise DataError(f"manifest field {field!r}: {first['msg'].lower()}", where=where) from None


class Artifact(render.View):
    """An output directory of one kind, validated on the way in (kind, schema version, fields)."""

    kind: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1
    manifest_model: ClassVar[type[Manifest]] = Manifest
    digest_field: ClassVar[str] = ""
    tables: ClassVar[tuple[str, ...]] = ()  # files that must be there and readable (beyond `files`)

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        raw = storage.read_artifact(self.path, self.kind, self.schema_version)
        self.manifest = parse_manifest(self.manifest_model, raw, str(self.path))
        self.mlflow_run_id: str | None = None
        self.tracked_to = "off"  # where its run was recorded, or why not

    @classmethod
    def load(cls, path: Path | str):
        return cls(path)

    @property
    def digest(self) -> str:
        """What identifies this output: the digest its manifest records (`digest_field`), or one
        made the same way for every kind from its manifest: its files' digests, its parents'
        digests (every lineage reference) and its resolved config."""
        m = self.manifest
        if self.digest_field:
            return getattr(m, self.digest_field)
        parents = {name: value.digest for name, value in m if isinstance(value, Ref)}
        return storage.lineage_digest(
            getattr(m, "files", None) or {}, parents=parents, config=getattr(m, "config", None)
        )

    def verify(self):
        """Check the directory is as it was written: every file its manifest records a digest for
        still has that digest, and every table is there and readable (a truncated Parquet file
        loses its footer). A data error names the first file that is not; returns the result."""
        import json

        from persotool.errors import DataError

        for name, digest in (getattr(self.manifest, "files", None) or {}).items():
            path = self.path / name
            if not path.is_file():
                raise DataError("is missing from the output directory", where=str(path))
            if storage.file_sha256(path) != digest:
                raise DataError(
                    "does not match the digest recorded when it was written: it was changed or damaged; "
                    "write the output again",
                    where=str(path),
                )
        for name in self.tables:
            path = self.path / name
            if not path.is_file():
                raise DataError("is missing from the output directory", where=str(path))
            try:
                if path.suffix == ".parquet":
                    import polars as pl

                    pl.read_parquet_schema(path)
                elif path.suffix == ".json":
                    json.loads(path.read_text())
                elif path.suffix == ".csv":
                    import polars as pl

                    pl.read_csv(path, n_rows=1)
            except Exception as exc:  # polars and json raise many kinds; one line names the file
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise DataError(
                    f"cannot be read ({first}): it was damaged; write the output again", where=str(path)
                ) from None
        return self

    def table(self, name: str):
        """One of the directory's Parquet tables, read now."""
        import polars as pl

        return pl.read_parquet(self.path / f"{name}.parquet")

    def measures(self) -> dict[str, float]:
        """The figures a quality gate can hold this result to (name -> value); none by default."""
        return {}

    def require(self, floors: dict[str, float] | None = None, *, ceilings: dict[str, float] | None = None):
        """A quality gate: raise `QualityGateFailed` (exit status 1 on the command line) naming every
        figure below its floor or above its ceiling; a name this result does not measure is a usage
        error. Returns the result, so calls chain: `pt.evaluate(model).require({"ndcg@10": 0.05})`."""
        from persotool.errors import UsageError

        measured = self.measures()
        failed = []
        for bounds, below in ((floors or {}, True), (ceilings or {}, False)):
            for name, bound in bounds.items():
                if name not in measured:
                    known = ", ".join(sorted(measured)) or "none"
                    raise UsageError(f"{self.kind} does not measure {name!r}; it measures: {known}")
                value = measured[name]
                if value is None or value != value or (value < bound if below else value > bound):
                    shown = "undefined" if value is None or value != value else f"{value:.4g}"
                    failed.append(f"{name} = {shown} {'<' if below else '>'} {bound:g}")
        if failed:
            raise QualityGateFailed("gate failed: " + "; ".join(failed))
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "digest": self.digest, "mlflow_run_id": self.mlflow_run_id}

    def blocks(self) -> list[render.Block]:
        return [render.key_values(f"{self.kind} {self.path}", [("digest", self.digest)])]

    def run_cell(self) -> str:
        """What a result's table shows for its MLflow run."""
        return self.mlflow_run_id or f"not tracked ({self.tracked_to})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, digest={self.digest!r})"
