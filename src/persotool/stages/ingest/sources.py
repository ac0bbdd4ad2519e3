"""Raw log files: find them, tell what they are, and check their bytes before parsing.

One streaming pass per text file hashes the raw bytes, decompresses gzip/zstd, rejects what polars
would misread or report vaguely (NUL bytes, invalid UTF-8, UTF-16 text, ragged rows) with the line
it happens on, and rewrites multi-character delimiters such as MovieLens-1M's `::` to one byte.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from persotool.errors import DataError

FORMAT_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".txt": "csv",
    ".dat": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
COMPRESSION_BY_SUFFIX = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
MAGIC = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd", "parquet": b"PAR1"}
FORMAT_NAMES = {"csv": "CSV", "jsonl": "JSON Lines", "parquet": "Parquet"}
DELIMITER_CANDIDATES = ("::", "\t", ";", "|", ",")
SUBSTITUTE = b"\x1f"  # ASCII unit separator stands in for a multi-character delimiter
CHUNK = 1 << 25


class EmptySource(DataError):
    """A source with no data rows (0 bytes, blank lines only, a header alone): an error for a
    single file, but normal in a directory of hourly files, where it is counted and skipped."""


@dataclass
class Source:
    """One raw input file and what it turned out to be."""

    path: Path
    format: str
    compression: str | None
    size: int
    sha256: str = ""


@dataclass
class PreparedText:
    """A text source checked and ready for polars: plain UTF-8 with a one-byte delimiter."""

    path: Path  # the original file, or a normalised copy in the work directory
    delimiter: str  # what polars should split on
    original_delimiter: str
    header: list[str] | None
    lines: int  # physical lines, header included
    has_quotes: bool = False
    blank_lines: list[int] = field(default_factory=list)
    expected_fields: int | None = None


def discover(specs: list[str], fmt: str = "auto") -> tuple[list[Path], list[Path]]:
    """Expand files, globs and directories (recursively) into a file list; returns (files, hidden
    files skipped). In a directory, files of known suffixes are read, or, with an explicit format,
    every regular file (extensionless day files); hidden files (dotfiles such as macOS `._*`
    metadata) are skipped and returned, as Arrow's dataset discovery does."""
    found: list[Path] = []
    hidden: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if any(ch in spec for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not matches:
                raise DataError("no files match this pattern", where=spec)
            found.extend(matches)
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            dot = [p for p in files if any(part.startswith(".") for part in p.relative_to(path).parts)]
            hidden.extend(dot)
            matches = [p for p in files if p not in dot and (fmt != "auto" or _declared(p)[0] is not None)]
            if not matches:
                raise DataError(
                    "directory holds no log files (.csv .tsv .dat .jsonl .parquet, optionally .gz/.zst; "
                    "name the `format` to read files without these names)",
                    where=spec,
                )
            found.extend(matches)
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(_not_a_file(path), where=spec)
    return list(dict.fromkeys(found)), hidden


def _not_a_file(path: Path) -> str:
    """Why a path that is neither a regular file nor a directory cannot be read, in words."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == 40:  # ELOOP
            return "is a symbolic link loop (the links point at each other); expected a log file"
        if path.is_symlink():
            return f"is a symbolic link to {os.readlink(path)!r}, which does not exist"
        if exc.errno == 13:  # EACCES
            return "cannot be read (permission denied)"
        return "no such file or directory"
    kinds = {stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a character device"}
    kind = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
    return f"is {kind}, not a regular file; save the log to a file first"


def _declared(path: Path) -> tuple[str | None, str | None]:
    """(format, compression) that the file name claims."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = COMPRESSION_BY_SUFFIX.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    fmt = FORMAT_BY_SUFFIX.get(suffixes[-1]) if suffixes else None
    return fmt, compression


def identify(path: Path, fmt: str = "auto") -> Source:
    """Decide a file's format and compression from its name and its first bytes, and check they agree."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise DataError(f"cannot read ({exc.strerror})", where=str(path)) from None
    if size == 0:
        raise EmptySource("is empty (0 bytes); expected a log file", where=str(path))
    declared_fmt, declared_comp = _declared(path)
    actual_comp = next((c for c in ("gzip", "zstd") if head.startswith(MAGIC[c])), None)
    if declared_comp and actual_comp != declared_comp:
        raise DataError(f"is named as {declared_comp} but is not {declared_comp}-compressed data", where=str(path))
    if fmt == "auto":
        fmt = declared_fmt or ("parquet" if head.startswith(MAGIC["parquet"]) else None) or "csv"
    is_parquet = head.startswith(MAGIC["parquet"])
    if fmt == "parquet" and not is_parquet:
        what = f"{actual_comp}-compressed data" if actual_comp else "text or another format"
        raise DataError(f"is not a Parquet file (no PAR1 magic number; looks like {what})", where=str(path))
    if fmt != "parquet" and is_parquet:
        raise DataError(f"is a Parquet file, not {FORMAT_NAMES[fmt]} as its name or `format` says", where=str(path))
    if fmt == "parquet" and actual_comp:
        raise DataError("compressed Parquet files are not supported; Parquet compresses itself", where=str(path))
    return Source(path=path, format=fmt, compression=actual_comp, size=size)


def lower_priority() -> None:
    """Let the calling thread yield the CPU to the others (Linux nice values are per thread)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class BackgroundDigest:
    """sha256 fed from a worker thread: hashlib releases the GIL, so hashing overlaps the checks."""

    def __init__(self, background: bool = False) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._digest = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1, initializer=lower_priority if background else None)
        self._pending = []

    def update(self, block: bytes) -> None:
        self._pending.append(self._pool.submit(self._digest.update, block))
        if len(self._pending) > 4:
            self._pending.pop(0).result()

    def hexdigest(self) -> str:
        for future in self._pending:
            future.result()
        self._pool.shutdown()
        return self._digest.hexdigest()


def raw_blocks(source: Source, digest) -> Iterator[bytes]:
    """Decompressed bytes of a source in chunks, hashing the raw bytes on the way."""
    where = str(source.path)
    with open(source.path, "rb") as raw:
        if source.compression is None:
            while block := raw.read(CHUNK):
                digest.update(block)
                yield block
            return
        if source.compression == "gzip":
            decomp = zlib.decompressobj(wbits=31)
            while block := raw.read(CHUNK):
                digest.update(block)
                try:
                    out = decomp.decompress(block)
                    # concatenated gzip members: start a new decompressor on the remainder
                    while decomp.eof and decomp.unused_data:
                        rest = decomp.unused_data
                        decomp = zlib.decompressobj(wbits=31)
                        out += decomp.decompress(rest)
                except zlib.error as exc:
                    raise DataError(f"is corrupt gzip data ({exc})", where=where) from None
                if out:
                    yield out
            if not decomp.eof:
                raise DataError(
                    "is a truncated gzip file (the stream ends before its end marker); copy it again",
                    where=where,
                )
            return
        import zstandard

        decomp = zstandard.ZstdDecompressor().decompressobj()
        while block := raw.read(CHUNK):
            digest.update(block)
            try:
                out = decomp.decompress(block)
                while decomp.eof and decomp.unused_data:
                    rest = decomp.unused_data
                    decomp = zstandard.ZstdDecompressor().decompressobj()
                    out += decomp.decompress(rest)
            except zstandard.ZstdError as exc:
                raise DataError(f"is corrupt zstd data ({exc})", where=where) from None
            if out:
                yield out
        if not decomp.eof:
            raise DataError(
                "is a truncated zstd file (the stream ends before its end marker); copy it again",
                where=where,
            )


def unclosed_quote(path: Path, quote: str) -> int | None:
    """The line on which a quoted field opens and never closes (it runs to the end of the file),
    or None. Quoted fields may hold line breaks, so only a quote still open at the end counts."""
    mark = quote.encode()[0]
    odd = False  # inside a quoted field at the start of the next line
    opened = None
    lines_before = 0
    with open(path, "rb") as handle:
        carry = b""
        while True:
            chunk = handle.read(CHUNK)
            block = carry + chunk
            if chunk:
                cut = block.rfind(b"\n")
                carry, block = (block, b"") if cut < 0 else (block[cut + 1 :], block[: cut + 1])
            else:
                carry = b""
            if block:
                arr = np.frombuffer(block, dtype=np.uint8)
                ends = np.flatnonzero(arr == 10)
                if not chunk and (not len(ends) or ends[-1] != len(block) - 1):
                    ends = np.append(ends, len(block))
                quotes = np.flatnonzero(arr == mark)
                per_line = np.diff(np.searchsorted(quotes, ends, side="left"), prepend=0)
                after = (np.cumsum(per_line) + odd) % 2 == 1  # inside a quote after each line
                before = np.concatenate(([odd], after[:-1]))
                opens = np.flatnonzero(after & ~before)
                if len(opens):
                    opened = lines_before + int(opens[-1]) + 1
                odd = bool(after[-1]) if len(after) else odd
                lines_before += len(ends)
            if not chunk:
                break
    return opened if odd else None


def read_lines(path: Path, line_numbers: list[int], limit: int = 1000) -> dict[int, str]:
    """The text of the given 1-based physical lines of a plain file (for rejects), each cut to `limit`."""
    wanted = np.array(sorted(set(line_numbers)), dtype=np.int64)
    found: dict[int, str] = {}
    if not len(wanted):
        return found
    lines_before = 0
    carry = b""
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(CHUNK)
            block = carry + chunk
            if not chunk:
                ends = np.array([len(block)]) if block else np.zeros(0, dtype=np.int64)
                carry = b""
            else:
                cut = block.rfind(b"\n")
                carry, block = (block, b"") if cut < 0 else (block[cut + 1 :], block[: cut + 1])
                ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
            if len(ends):
                lo, hi = lines_before + 1, lines_before + len(ends)
                sel = wanted[(wanted >= lo) & (wanted <= hi)]
                for number in sel.tolist():
                    j = number - lines_before - 1
                    start = 0 if j == 0 else int(ends[j - 1]) + 1
                    text = block[start : int(ends[j])].rstrip(b"\r").decode("utf-8", errors="replace")
                    found[number] = text[:limit]
                lines_before += len(ends)
            if not chunk:
                break
    return found
