"""Stage outputs on disk: atomic directories, content digests, and manifests validated on the way in.

Every stage writes a directory of Parquet tables plus `manifest.json`; the next stage reads it back
through `read_artifact`, which checks the kind and the schema version before anything else happens.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persotool import __version__
from persotool.errors import DataError, OutputError

MANIFEST = "manifest.json"


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def config_hash(config: dict[str, Any]) -> str:
    """A stable short hash of a resolved config (key order does not matter)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def directory_digest(files: dict[str, str]) -> str:
    """Digest of a set of files from their names and content digests (a dataset's: it has no
    parent artifact, and its files hold everything its config changes)."""
    joined = "\n".join(f"{name}:{files[name]}" for name in sorted(files))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def lineage_digest(files: dict[str, str], *, parents: dict[str, str] | None = None, config: Any = None) -> str:
    """The digest that identifies an artifact: its files' content digests, its parents' digests
    (the artifacts, or raw source files, it was made from) and its resolved config. Two outputs
    made from different inputs or with different settings never share one, even when their
    files happen to be identical."""
    canonical = json.dumps(
        {"files": files, "parents": parents or {}, "config": config},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def persotool_kind(path: Path) -> str | None:
    """The kind of persotool output `path` is (its manifest says so), or None when it is not one:
    no manifest.json, or one that persotool did not write (a web app's manifest.json, say)."""
    manifest_path = Path(path) / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(manifest, dict) or "persotool_version" not in manifest:
        return None
    kind = manifest.get("kind")
    return kind if isinstance(kind, str) and isinstance(manifest.get("schema_version"), int) else None


def lineage(path: Path, *, depth: int = 8) -> list[Path]:
    """The directories an artifact was made from, transitively (a model's split and that split's
    dataset...), as its manifests name them; an output must not replace any of them either."""
    found: list[Path] = []
    todo = [Path(path)]
    while todo and depth:
        depth -= 1
        current = todo.pop()
        try:
            manifest = json.loads((current / MANIFEST).read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if not isinstance(manifest, dict):
            continue
        for ref in manifest.values():
            if isinstance(ref, dict) and isinstance(ref.get("path"), str) and "digest" in ref:
                parent = Path(ref["path"])
                if parent not in found:
                    found.append(parent)
                    todo.append(parent)
    return found


def check_location(out: Path, inputs: tuple[Path, ...] | list[Path] = ()) -> None:
    """Refuse an output that is the current directory or one above it, an input (or what an input
    was made from), a directory holding one, or a directory inside one."""
    out = Path(out)
    where = str(out)
    resolved = out.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise OutputError("is the current directory or one above it; name a new directory for the output", where=where)
    sources = [Path(s) for s in inputs]
    sources += [p for s in list(sources) if Path(s).is_dir() for p in lineage(Path(s))]
    for source in sources:
        path = Path(source).resolve()
        if path == resolved or resolved in path.parents:
            raise OutputError(f"would replace the input {source}; write the output somewhere else", where=where)
        if path.is_dir() and path in resolved.parents:
            raise OutputError(f"is inside the input directory {source}; write the output somewhere else", where=where)


def replaceable(out: Path, *, markers: tuple[str, ...] = ()) -> bool:
    """Whether `force` may replace the existing directory `out`: only what persotool wrote (a
    persotool manifest, or one of `markers`, the files an unfinished output of the stage holds)
    or an empty directory. Anything else may be a user's own data."""
    out = Path(out)
    if persotool_kind(out) is not None or any((out / marker).is_file() for marker in markers):
        return True
    try:
        return not any(out.iterdir())
    except OSError:
        return False


NOT_OURS = (
    "holds files persotool did not write (no persotool manifest.json); `force` replaces only a "
    "persotool output: move it away yourself or choose another output"
)


def check_output(
    out: Path,
    *,
    force: bool = False,
    inputs: tuple[Path, ...] | list[Path] = (),
    markers: tuple[str, ...] = (),
) -> None:
    """Refuse, before any work, an output that cannot be written safely: one that exists (unless
    `force` and persotool wrote it), the current directory or one above it, an input or what an
    input was made from, a directory holding an input, or a directory inside an input directory."""
    out = Path(out)
    where = str(out)
    check_location(out, inputs)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError("exists and is not a directory", where=where)
    if out.exists() and not force:
        raise OutputError("already exists (use `force` to replace it)", where=where)
    if out.exists() and not replaceable(out, markers=markers):
        raise OutputError(NOT_OURS, where=where)


@contextlib.contextmanager
def _output_lock(parent: Path, name: str, where: str) -> Iterator[None]:
    """An exclusive lock on writing `parent/name`, held in a lock file beside it: a second command
    writing the same output at the same time fails at once instead of racing."""
    from persotool.locks import Busy, file_lock

    try:
        with file_lock(parent / f".{name}.lock"):
            yield
    except OSError as exc:
        if exc.filename != str(parent / f".{name}.lock"):
            raise  # the command's own work failed, not the lock
        raise OutputError(f"cannot write beside the output ({exc.strerror})", where=where) from None
    except Busy:
        raise OutputError(
            "another persotool command is writing this output right now; wait for it or choose another output",
            where=where,
        ) from None


def _remove_stale(parent: Path, name: str) -> None:
    """Temporary directories of earlier runs that were killed before they could clean up. Only
    called under the output's lock, so no live command is using them."""
    import glob

    for pattern in (f".{glob.escape(name)}.tmp-*", f".{glob.escape(name)}.old-*"):
        for path in parent.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(out: Path, *, force: bool = False, inputs: tuple[Path, ...] | list[Path] = ()) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `out`; rename it to `out` only if the block succeeds.

    Nothing is ever left at `out` half-written: on error or interruption the temporary directory is
    removed, and one killed outright is removed by the next run writing the same output. Writers
    of one output exclude each other (a lock file beside it); an output that appears while the
    work runs is replaced only with `force`. The directory's permissions follow the umask.
    """
    out = Path(out)
    check_output(out, force=force, inputs=inputs)
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output directory ({exc.strerror})", where=str(out)) from None
    with _output_lock(parent, out.name, str(out)):
        _remove_stale(parent, out.name)
        tmp = parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()  # mode 0o777 less the umask, as for any directory the user makes
        except OSError as exc:
            raise OutputError(f"cannot create the output directory ({exc.strerror})", where=str(out)) from None
        try:
            yield tmp
            if out.exists() and not force:
                raise OutputError("was created by another command while this one worked; not replaced", where=str(out))
            if out.exists() and not replaceable(out):
                raise OutputError(NOT_OURS, where=str(out))
            if out.exists():
                old = parent / f".{out.name}.old-{os.getpid()}"
                out.rename(old)
                tmp.rename(out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def finite_json(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` with every NaN or infinite number replaced by null (JSON has no NaN), and a
    `null_because` entry that says which values were not finite and what they were."""
    reasons: dict[str, str] = {}

    def clean(value: Any, path: str) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            reasons[path] = f"not a finite number ({value}): undefined for this input"
            return None
        if isinstance(value, dict):
            return {k: clean(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    cleaned = clean(payload, "")
    if reasons:
        cleaned["null_because"] = reasons
    return cleaned


def write_file_atomic(path: Path, write_to) -> None:
    """`write_to(tmp)` writes the file under a temporary name (this process's own), renamed into
    place only when complete: readers never see half a file, and two writers never share a draft."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write_to(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(finite_json(payload), indent=2, sort_keys=False, default=str, allow_nan=False) + "\n"
    write_file_atomic(path, lambda tmp: tmp.write_text(text))


def new_manifest(kind: str, version: int, **fields: Any) -> dict[str, Any]:
    """A manifest's common head: the kind, its schema version (the stage's result class says
    which), the persotool version that wrote it; then the stage's own fields."""
    return {
        "kind": kind,
        "schema_version": version,
        "persotool_version": __version__,
        **fields,
    }


def read_artifact(path: Path | str, kind: str, version: int | None = None) -> dict[str, Any]:
    """Read the manifest of an artifact directory of the given kind; its schema version is checked
    when `version` is given (by the stage that owns the kind, through its result class)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise DataError(f"is not a {kind} directory (no such directory)", where=str(path))
    if not manifest_path.is_file():
        raise DataError(f"is not a {kind} directory (no {MANIFEST})", where=str(path))
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"is not valid JSON ({exc})", where=str(manifest_path)) from None
    if not isinstance(manifest, dict) or manifest.get("kind") != kind:
        found = manifest.get("kind") if isinstance(manifest, dict) else None
        raise DataError(f"is a {found!r} artifact, expected {kind!r}", where=str(path))
    found = manifest.get("schema_version")
    if version is not None and found != version:
        raise DataError(
            f"has {kind} schema version {found}, this persotool reads version "
            f"{version}; re-create it with persotool {__version__}",
            where=str(path),
        )
    return manifest
