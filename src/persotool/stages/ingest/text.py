"""Reading a CSV or JSON Lines source as text: the delimiter, the header, byte-level checks (NUL
bytes, UTF-8, blank lines, ragged rows) and, when polars cannot read the file as it is, a copy it
can (byte-order marks dropped, old Mac line ends, a multi-character delimiter replaced by one byte).
A fast path reads the head and verifies the rest in the background (`inspect_head`,
`verify_bytes`); otherwise one vectorised pass does it all (`prepare_text`)."""

from __future__ import annotations

import codecs
import csv
from pathlib import Path

import numpy as np

from persotool.errors import DataError
from persotool.stages.ingest.sources import (
    CHUNK,
    DELIMITER_CANDIDATES,
    SUBSTITUTE,
    BackgroundDigest,
    EmptySource,
    PreparedText,
    Source,
    lower_priority,
    raw_blocks,
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
    digest = BackgroundDigest(background)
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
    return _TextPass(source, workdir, delimiter=delimiter, header=header, columns=columns, quote=quote).run()


class _TextPass:
    """One pass over a CSV or JSON Lines source, block by line-aligned block: the first block
    decides the encoding, the delimiter and whether polars needs a copy (`_begin`); every block is
    checked for NUL bytes and UTF-8 (`_check`), counted and scanned for blank lines and ragged rows
    (`_count`), and copied when needed."""

    def __init__(self, source: Source, workdir: Path, *, delimiter, header, columns, quote) -> None:
        self.source, self.workdir, self.header, self.quote = source, workdir, header, quote
        self.where = str(source.path)
        self.is_csv = source.format == "csv"
        if self.is_csv and delimiter is None and source.path.suffix.lower() in (".tsv", ".tab"):
            delimiter = "\t"
        self.delimiter = delimiter
        self.out_handle = None
        self.out_path = source.path
        self.sep_byte = b""
        self.expected_fields: int | None = len(columns) if (self.is_csv and not header and columns) else None
        self.header_names: list[str] | None = None
        self.lines_before = 0
        self.first = True
        self.has_quotes = False
        self.blank_lines: list[int] = []
        self.quote_byte = quote.encode() if quote else None
        self.decoder_check = codecs.getincrementaldecoder("utf-8")()
        self.cr_only = False

    def fail(self, line: int, message: str) -> DataError:
        return DataError(message, where=f"{self.where}:{line}")

    def run(self) -> PreparedText:
        digest = BackgroundDigest()
        carry = b""
        try:
            for number, chunk in enumerate(raw_blocks(self.source, digest)):
                if number == 0:
                    self.cr_only = _cr_only(chunk[: 1 << 16])
                if self.cr_only:
                    chunk = chunk.replace(b"\r", b"\n")  # old Mac line ends become line feeds
                block = carry + chunk
                cut = block.rfind(b"\n")
                if cut < 0:
                    carry = block
                    continue
                carry = block[cut + 1 :]
                self.process(block[: cut + 1], final=False)
            if carry or self.first:
                self.process(carry, final=True)
            elif not self.first and utf8_error(self.decoder_check, b"", final=True) is not None:
                raise self.fail(self.lines_before, "ends inside a UTF-8 sequence; expected UTF-8 text")
        finally:
            if self.out_handle is not None:
                self.out_handle.close()
        self.source.sha256 = digest.hexdigest()
        return self._result()

    def process(self, block: bytes, final: bool) -> None:
        if self.first:
            block = self._begin(block, final)
        block = self._check(block, final)
        n_lines = block.count(b"\n") + (1 if final and block and block[-1:] != b"\n" else 0)
        self._count(block, final, n_lines)
        self.lines_before += n_lines
        if self.out_handle is not None:
            self.out_handle.write(block)
            if final and block and block[-1:] != b"\n":
                self.out_handle.write(b"\n")

    def _begin(self, block: bytes, final: bool) -> bytes:
        """The first block: byte-order marks, the delimiter, the header, and whether polars can
        read the file as it is or needs a copy."""
        self.first = False
        source, where = self.source, self.where
        needs_copy = self.cr_only or source.compression is not None or block.startswith(codecs.BOM_UTF8)
        for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32")):
            if block.startswith(bom):
                raise DataError(
                    f"is {name} text (byte-order mark); expected UTF-8 (convert with: iconv -f {name} -t UTF-8)",
                    where=where,
                )
        for bom, name in ((codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
            if block.startswith(bom):
                raise DataError(
                    f"is {name} text (byte-order mark); expected UTF-8 (convert with: iconv -f {name} -t UTF-8)",
                    where=where,
                )
        if block.startswith(codecs.BOM_UTF8):
            block = block[len(codecs.BOM_UTF8) :]
        first_line = block.split(b"\n", 1)[0].rstrip(b"\r")
        if not first_line.strip() and final and not block.strip():
            raise EmptySource("has no data (only blank lines)", where=where)
        if self.is_csv:
            text = first_line.decode("utf-8", errors="replace")
            if self.delimiter is None:
                self.delimiter = sniff_delimiter(text)
            if len(self.delimiter) > 1 or needs_copy:
                self._copy_to(f"{source.path.name}.txt")
            self.sep_byte = SUBSTITUTE if len(self.delimiter) > 1 else self.delimiter.encode()
            if self.header:
                self.header_names = _split_header(text, self.delimiter, self.quote)
                self.expected_fields = len(self.header_names)
        elif needs_copy:
            self._copy_to(f"{source.path.name}.jsonl")
        return block

    def _copy_to(self, name: str) -> None:
        self.out_path = self.workdir / f"{len(list(self.workdir.iterdir()))}-{name}"
        self.out_handle = open(self.out_path, "wb")  # noqa: SIM115 - closed by run()

    def _check(self, block: bytes, final: bool) -> bytes:
        """NUL bytes and UTF-8, then a multi-character delimiter replaced by one byte polars reads."""
        nul = first_nul(block)
        if nul >= 0:
            line = self.lines_before + block.count(b"\n", 0, nul) + 1
            hint = " (UTF-16 text?)" if block.count(b"\x00") > len(block) // 4 else ""
            raise self.fail(line, f"contains a NUL byte{hint}; expected UTF-8 text")
        exc = utf8_error(self.decoder_check, block, final=final)
        if exc is not None:
            line = self.lines_before + block.count(b"\n", 0, exc.start) + 1
            col = exc.start - (block.rfind(b"\n", 0, exc.start) + 1) + 1
            raise self.fail(
                line,
                f"invalid UTF-8 byte 0x{block[exc.start]:02x} at column {col}; expected "
                "UTF-8 text (convert with: iconv -f LATIN1 -t UTF-8)",
            )
        if self.is_csv and len(self.delimiter) > 1:
            if SUBSTITUTE in block:
                raise self.fail(
                    self.lines_before + block.count(b"\n", 0, block.find(SUBSTITUTE)) + 1,
                    "contains byte 0x1f, which persotool needs to read a multi-character delimiter",
                )
            block = block.replace(self.delimiter.encode(), SUBSTITUTE)
        return block

    def _count(self, block: bytes, final: bool, n_lines: int) -> None:
        """Blank lines and ragged rows. Fast path: C-speed counts over the whole block; the per-line
        scan runs only when there may be blank lines or the delimiter count disagrees with a
        rectangular file."""
        maybe_blank = may_have_blank_line(block, at_line_start=True)  # blocks are line-aligned
        expected = self.expected_fields
        check_fields = self.is_csv and expected is not None
        has_q = check_fields and self.quote_byte is not None and self.quote_byte in block
        self.has_quotes = self.has_quotes or has_q
        rectangular = not check_fields or has_q or fields_fit(block.count(self.sep_byte), n_lines, expected)
        if maybe_blank or not rectangular:
            _scan_lines(
                block,
                final,
                self.lines_before,
                self.blank_lines,
                expected if check_fields and not has_q else None,
                self.sep_byte,
                lambda line, found: self.fail(
                    line,
                    f"has {found} fields, expected {expected} as in "
                    f"{'the header' if self.header else '`columns`'} (delimiter {self.delimiter!r}); "
                    "the file has ragged rows",
                ),
            )

    def _result(self) -> PreparedText:
        lines, blank = self.lines_before, self.blank_lines
        if lines == 0 or lines == len(blank):
            raise EmptySource("has no data (only blank lines)" if lines else "is empty", where=self.where)
        if self.is_csv and self.header and lines - len([b for b in blank if b > 1]) <= 1:
            raise EmptySource("has a header but no data rows", where=self.where)
        multi = self.is_csv and len(self.delimiter) > 1
        return PreparedText(
            path=self.out_path,
            delimiter=SUBSTITUTE.decode() if multi else (self.delimiter or ","),
            original_delimiter=self.delimiter or ",",
            header=self.header_names,
            lines=lines,
            has_quotes=self.has_quotes,
            blank_lines=blank,
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
