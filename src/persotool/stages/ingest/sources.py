"""Raw log files: find them, tell what they are, and check their bytes before parsing.

One streaming pass per text file hashes the raw bytes, decompresses gzip/zstd, rejects what polars
would misread or report vaguely (NUL bytes, invalid UTF-8, UTF-16 text, ragged rows) with the line
it happens on, and rewrites multi-character delimiters such as MovieLens-1M's `::` to one byte.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
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


def discover(specs: list[str]) -> list[Path]:
    """Expand files, globs and directories (recursively, known suffixes only) into a file list."""
    found: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if any(ch in spec for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not matches:
                raise DataError("no files match this pattern", where=spec)
            found.extend(matches)
        elif path.is_dir():
            matches = sorted(
                p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".") and _declared(p)[0] is not None
            )
            if not matches:
                raise DataError(
                    "directory holds no log files (.csv .tsv .dat .jsonl .parquet, optionally .gz/.zst)",
                    where=spec,
                )
            found.extend(matches)
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(_not_a_file(path), where=spec)
    unique = list(dict.fromkeys(found))
    return unique


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
        raise DataError("is empty (0 bytes); expected a log file", where=str(path))
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


class _BackgroundDigest:
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


def _raw_blocks(source: Source, digest) -> Iterator[bytes]:
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


def sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in DELIMITER_CANDIDATES}
    best = max(DELIMITER_CANDIDATES, key=lambda d: (counts[d], -DELIMITER_CANDIDATES.index(d)))
    return best if counts[best] else ","


def _split_header(line: str, delimiter: str, quote: str | None) -> list[str]:
    if len(delimiter) == 1:
        reader = csv.reader(
            [line], delimiter=delimiter, quotechar=quote or '"', quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE
        )
        return next(reader, [])
    return line.split(delimiter)


def inspect_head(
    source: Source, *, delimiter: str | None, header: bool, columns: list[str] | None, quote: str | None
) -> PreparedText | None:
    """What the first line says (delimiter, header): enough to start parsing a plain file while
    `verify_bytes` checks it. None when the file needs the aligned pass of `prepare_text` anyway
    (compressed, multi-character delimiter, UTF-16/32)."""
    if source.compression is not None:
        return None
    with open(source.path, "rb") as handle:
        head = handle.read(1 << 16)
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None
    if _cr_only(head) or (source.format == "jsonl" and head.startswith(codecs.BOM_UTF8)):
        return None  # needs a normalised copy: old Mac line ends, or a BOM the JSON reader refuses
    first_line = head.removeprefix(codecs.BOM_UTF8).split(b"\n", 1)[0].rstrip(b"\r")
    header_names = None
    if source.format == "csv":
        if delimiter is None and source.path.suffix.lower() in (".tsv", ".tab"):
            delimiter = "\t"
        text = first_line.decode("utf-8", errors="replace")
        delimiter = delimiter or sniff_delimiter(text)
        if len(delimiter) > 1:
            return None
        if header:
            header_names = _split_header(text, delimiter, quote)
    expected = len(header_names) if header_names else (len(columns) if columns else None)
    return PreparedText(
        path=source.path,
        delimiter=delimiter or ",",
        original_delimiter=delimiter or ",",
        header=header_names,
        lines=0,
        expected_fields=expected,
    )


def _cr_only(head: bytes) -> bool:
    """Old Mac line ends: carriage returns and no line feed in the first block."""
    return b"\r" in head and b"\n" not in head


def _count_byte(chunk: bytes, needle: bytes) -> int:
    """Occurrences of `needle` in `chunk`: a vectorised compare for a single byte (several times
    faster than `bytes.count` on large chunks), `bytes.count` otherwise."""
    if len(needle) != 1 or len(chunk) < 1 << 16:
        return chunk.count(needle)
    return int(np.count_nonzero(np.frombuffer(chunk, dtype=np.uint8) == needle[0]))


# The byte checks, each defined once: `verify_bytes` asks them yes/no over raw chunks, and
# `prepare_text` asks them again over line-aligned blocks to find the line to report.


def first_nul(chunk: bytes) -> int:
    """Offset of the first NUL byte (-1: none): text files never hold one."""
    return chunk.find(b"\x00")


def utf8_error(decoder, chunk: bytes, final: bool = False) -> UnicodeDecodeError | None:
    """The first invalid UTF-8 sequence of `chunk`, fed to an incremental decoder (None: valid so
    far). ASCII chunks skip the decoder."""
    if chunk.isascii() and not final:
        return None
    try:
        decoder.decode(chunk, final=final)
    except UnicodeDecodeError as exc:
        return exc
    return None


def may_have_blank_line(chunk: bytes, at_line_start: bool) -> bool:
    """Whether `chunk` may contain an empty line (`at_line_start`: the chunk begins a line)."""
    return b"\n\n" in chunk or b"\n\r\n" in chunk or (at_line_start and chunk.startswith((b"\n", b"\r\n")))


def fields_fit(separators: int, lines: int, expected: int) -> bool:
    """A rectangular file: every line holds `expected` fields, i.e. expected - 1 separators."""
    return separators == lines * (expected - 1)


def verify_bytes(
    source: Source, head: PreparedText, *, header: bool, quote: str | None, background: bool = False
) -> bool:
    """The common case in one copy-free pass over raw chunks: plain UTF-8 without NUL bytes or
    blank lines, whose delimiter count says every line has the same number of fields. Sets the
    source digest and line count and returns True; False whenever anything needs a closer look
    (the aligned pass in `prepare_text` then finds the line to report). In the `background` it
    runs at the lowest priority, taking only CPU time the rest of the work leaves."""
    if background:
        lower_priority()
    is_csv = source.format == "csv"
    expected = head.expected_fields
    count_fields = is_csv and expected is not None and expected > 1
    sep = head.delimiter.encode()
    quote_byte = quote.encode() if quote else None
    digest = _BackgroundDigest(background)
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = seps = 0
    quoted = blank = False
    previous_last = b"\n"
    with open(source.path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if first_nul(chunk) >= 0 or utf8_error(decoder, chunk) is not None:
                return False
            newlines += _count_byte(chunk, b"\n")
            if count_fields:
                seps += _count_byte(chunk, sep)
                quoted = quoted or (quote_byte is not None and quote_byte in chunk)
            # A blank line breaks the delimiter count of a rectangular file; otherwise probe for one.
            if not count_fields or quoted:
                blank = blank or may_have_blank_line(chunk, previous_last == b"\n")
            previous_last = chunk[-1:]
    if utf8_error(decoder, b"", final=True) is not None:
        return False
    lines = newlines + (0 if previous_last == b"\n" else 1)
    if blank or lines == 0 or (header and lines <= 1):
        return False
    if count_fields and not quoted and not fields_fit(seps, lines, expected):
        return False
    source.sha256 = digest.hexdigest()
    head.lines = lines
    head.has_quotes = quoted
    return True


def prepare_text(
    source: Source,
    workdir: Path,
    *,
    delimiter: str | None,
    header: bool,
    columns: list[str] | None,
    quote: str | None,
    try_fast: bool = True,
) -> PreparedText:
    """Check a CSV or JSON Lines source line by line (vectorised) and make it readable by polars."""
    if try_fast:
        head = inspect_head(source, delimiter=delimiter, header=header, columns=columns, quote=quote)
        if head is not None and verify_bytes(source, head, header=header, quote=quote):
            return head
    where = str(source.path)
    digest = _BackgroundDigest()
    is_csv = source.format == "csv"
    if is_csv and delimiter is None and source.path.suffix.lower() in (".tsv", ".tab"):
        delimiter = "\t"
    out_handle = None
    out_path = source.path
    sep_byte = b""
    expected_fields: int | None = len(columns) if (is_csv and not header and columns) else None
    header_names: list[str] | None = None
    lines_before = 0
    carry = b""
    first = True
    has_quotes = False
    blank_lines: list[int] = []
    quote_byte = quote.encode() if quote else None
    decoder_check = codecs.getincrementaldecoder("utf-8")()

    def fail(line: int, message: str) -> DataError:
        return DataError(message, where=f"{where}:{line}")

    def process(block: bytes, final: bool) -> None:
        nonlocal first, delimiter, sep_byte, out_handle, out_path, expected_fields, header_names
        nonlocal lines_before, has_quotes
        if first:
            first = False
            # A copy is needed when polars cannot read the file as it is.
            needs_copy = cr_only or source.compression is not None or block.startswith(codecs.BOM_UTF8)
            if block.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
                raise DataError(
                    "is UTF-32 text (byte-order mark); expected UTF-8 (convert with: iconv -f UTF-32 -t UTF-8)",
                    where=where,
                )
            if block.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise DataError(
                    "is UTF-16 text (byte-order mark); expected UTF-8 (convert with: iconv -f UTF-16 -t UTF-8)",
                    where=where,
                )
            if block.startswith(codecs.BOM_UTF8):
                block = block[len(codecs.BOM_UTF8) :]
            first_line = block.split(b"\n", 1)[0].rstrip(b"\r")
            if not first_line.strip() and final and not block.strip():
                raise DataError("has no data (only blank lines)", where=where)
            if is_csv:
                text = first_line.decode("utf-8", errors="replace")
                if delimiter is None:
                    delimiter = sniff_delimiter(text)
                if len(delimiter) > 1 or needs_copy:
                    out_path = workdir / f"{len(list(workdir.iterdir()))}-{source.path.name}.txt"
                    out_handle = open(out_path, "wb")  # noqa: SIM115 - closed below
                sep_byte = SUBSTITUTE if len(delimiter) > 1 else delimiter.encode()
                if header:
                    header_names = _split_header(text, delimiter, quote)
                    expected_fields = len(header_names)
            elif needs_copy:
                out_path = workdir / f"{len(list(workdir.iterdir()))}-{source.path.name}.jsonl"
                out_handle = open(out_path, "wb")  # noqa: SIM115
        nul = first_nul(block)
        if nul >= 0:
            line = lines_before + block.count(b"\n", 0, nul) + 1
            hint = " (UTF-16 text?)" if block.count(b"\x00") > len(block) // 4 else ""
            raise fail(line, f"contains a NUL byte{hint}; expected UTF-8 text")
        exc = utf8_error(decoder_check, block, final=final)
        if exc is not None:
            line = lines_before + block.count(b"\n", 0, exc.start) + 1
            col = exc.start - (block.rfind(b"\n", 0, exc.start) + 1) + 1
            raise fail(
                line,
                f"invalid UTF-8 byte 0x{block[exc.start]:02x} at column {col}; expected "
                "UTF-8 text (convert with: iconv -f LATIN1 -t UTF-8)",
            )
        if is_csv and len(delimiter) > 1:
            if SUBSTITUTE in block:
                raise fail(
                    lines_before + block.count(b"\n", 0, block.find(SUBSTITUTE)) + 1,
                    "contains byte 0x1f, which persotool needs to read a multi-character delimiter",
                )
            block = block.replace(delimiter.encode(), SUBSTITUTE)
        n_lines = block.count(b"\n") + (1 if final and block and block[-1:] != b"\n" else 0)
        # Fast path: C-speed counts over the whole block. The per-line scan below runs only when
        # there may be blank lines or when the delimiter count disagrees with a rectangular file.
        maybe_blank = may_have_blank_line(block, at_line_start=True)  # blocks are line-aligned
        check_fields = is_csv and expected_fields is not None
        has_q = check_fields and quote_byte is not None and quote_byte in block
        has_quotes = has_quotes or has_q
        rectangular = not check_fields or has_q or fields_fit(block.count(sep_byte), n_lines, expected_fields)
        if maybe_blank or not rectangular:
            _scan_lines(
                block,
                final,
                lines_before,
                blank_lines,
                expected_fields if check_fields and not has_q else None,
                sep_byte,
                lambda line, found: fail(
                    line,
                    f"has {found} fields, expected {expected_fields} as in "
                    f"{'the header' if header else '`columns`'} (delimiter {delimiter!r}); "
                    "the file has ragged rows",
                ),
            )
        lines_before += n_lines
        if out_handle is not None:
            out_handle.write(block)
            if final and block and block[-1:] != b"\n":
                out_handle.write(b"\n")

    cr_only = False
    try:
        for number, chunk in enumerate(_raw_blocks(source, digest)):
            if number == 0:
                cr_only = _cr_only(chunk[: 1 << 16])
            if cr_only:
                chunk = chunk.replace(b"\r", b"\n")  # old Mac line ends become line feeds
            block = carry + chunk
            cut = block.rfind(b"\n")
            if cut < 0:
                carry = block
                continue
            carry = block[cut + 1 :]
            process(block[: cut + 1], final=False)
        if carry or first:
            process(carry, final=True)
        elif not first and utf8_error(decoder_check, b"", final=True) is not None:
            raise fail(lines_before, "ends inside a UTF-8 sequence; expected UTF-8 text")
    finally:
        if out_handle is not None:
            out_handle.close()
    source.sha256 = digest.hexdigest()
    if lines_before == 0 or lines_before == len(blank_lines):
        raise DataError("has no data (only blank lines)" if lines_before else "is empty", where=where)
    if is_csv and header and lines_before - len([b for b in blank_lines if b > 1]) <= 1:
        raise DataError("has a header but no data rows", where=where)
    polars_delimiter = SUBSTITUTE.decode() if is_csv and len(delimiter) > 1 else (delimiter or ",")
    return PreparedText(
        path=out_path,
        delimiter=polars_delimiter,
        original_delimiter=delimiter or ",",
        header=header_names,
        lines=lines_before,
        has_quotes=has_quotes,
        blank_lines=blank_lines,
    )


def _scan_lines(
    block: bytes,
    final: bool,
    lines_before: int,
    blank_lines: list[int],
    expected_fields: int | None,
    sep_byte: bytes,
    ragged,
) -> None:
    """Per-line pass (numpy): record blank lines and raise `ragged(line, fields)` on the first line
    whose field count differs from `expected_fields`."""
    arr = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    if final and (len(block) == 0 or block[-1:] != b"\n"):
        ends = np.append(ends, len(block))
    if not len(ends):
        return
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    cr = np.zeros(len(ends), dtype=bool)
    nonempty = lengths > 0
    cr[nonempty] = arr[ends[nonempty] - 1] == 13
    blank = (lengths - cr) == 0
    blank_lines.extend((lines_before + np.flatnonzero(blank) + 1).tolist())
    if expected_fields is None:
        return
    seps = np.flatnonzero(arr == sep_byte[0])
    fields = np.searchsorted(seps, ends) - np.searchsorted(seps, starts) + 1
    bad = np.flatnonzero((fields != expected_fields) & ~blank)
    if len(bad):
        j = int(bad[0])
        raise ragged(lines_before + j + 1, int(fields[j]))


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
