"""The numpy kernels of ingest: dense time ranks and an in-place sort-and-dedupe of packed integer
codes, block by block so temporaries stay small and cache-warm."""

from __future__ import annotations

import numpy as np
import polars as pl

BLOCK = 1 << 16  # rows per block in the block-wise passes below: temporaries stay small and cache-warm


def _blocks(n: int, size: int | None = None):
    size = size or BLOCK
    for start in range(0, n, size):
        yield start, min(start + size, n)


def time_ranks(stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense 0-based ranks of int64 timestamps, written over `stamps` (returned as a uint64 view of
    the same memory), and the sorted distinct values they index (`distinct[rank]` gives the
    timestamps back). A log written in time order, the usual case, costs one running count of
    changes; any other order takes a dense rank."""
    n = len(stamps)
    rank = stamps.view(np.uint64)
    if n and bool((stamps[1:] >= stamps[:-1]).all()):
        change = np.empty(n, dtype=bool)
        change[:1] = True
        np.not_equal(stamps[1:], stamps[:-1], out=change[1:])
        distinct = stamps[change]
        carry = np.uint64(0)
        for start, stop in _blocks(n):
            block = rank[start:stop]
            block[...] = change[start:stop]
            np.cumsum(block, out=block)
            block += carry
            carry = block[-1]
        rank -= np.uint64(1)
        return rank, distinct
    ordered = np.sort(stamps)
    keep = np.empty(n, dtype=bool)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    distinct = ordered[keep]
    del ordered, keep
    rank[...] = pl.Series(stamps).rank("dense").to_numpy()
    rank -= np.uint64(1)
    return rank, distinct


def sort_unique(columns: list[np.ndarray], sizes: list[int] | None = None, packed: np.ndarray | None = None) -> int:
    """Sort the rows of `columns` (non-negative integer codes, most significant first) and drop
    exact duplicates, in place: afterwards the first m entries of every column (m is returned) hold
    the distinct rows in order. `sizes[k]`, when given, bounds column k's codes.

    When the codes of all columns fit in 64 bits together (they usually do: user, time rank, item,
    event type, rating level), each row is packed into one integer in `packed` (a uint64 buffer
    as long as the columns, allocated when not given; it may be one of the uint64 columns): one
    vectorised sort of the packed integers, duplicates become neighbours, and the columns are
    decoded back with shifts and masks, block by block. A column with a single code takes no bits.
    Wider keys fall back to a multi-column sort.
    """
    n = len(columns[0]) if columns else 0
    if sizes is None:
        sizes = [int(c.max()) + 1 if len(c) else 1 for c in columns]
    bits = [max(size - 1, 0).bit_length() for size in sizes]
    if sum(bits) > 64:
        frame = pl.DataFrame({f"k{j}": c for j, c in enumerate(columns)})
        frame = frame.unique().sort(frame.columns)
        for j, column in enumerate(columns):
            column[: len(frame)] = frame.get_column(f"k{j}").to_numpy()
        return len(frame)
    if packed is None:
        packed = np.empty(n, dtype=np.uint64)
    layout = []
    shift = 64
    for width in bits:
        shift -= width
        layout.append((np.uint64(shift), width, np.uint64((1 << width) - 1)))
    used = [(column, offset, mask) for column, (offset, width, mask) in zip(columns, layout, strict=True) if width]
    part = np.empty(min(n, BLOCK), dtype=np.uint64)
    acc = np.empty(min(n, BLOCK), dtype=np.uint64)
    for start, stop in _blocks(n):
        row, bits = acc[: stop - start], part[: stop - start]
        row[...] = 0
        for column, offset, _ in used:
            np.left_shift(column[start:stop], offset, out=bits, dtype=np.uint64, casting="unsafe")
            row |= bits
        packed[start:stop] = row  # after reading every column: `packed` may alias one of them
    packed.sort()
    keep = np.empty(n, dtype=bool)
    keep[:1] = True
    np.not_equal(packed[1:], packed[:-1], out=keep[1:])
    every = bool(keep.all())
    m = 0
    for start, stop in _blocks(n):
        k = stop - start if every else int(np.count_nonzero(keep[start:stop]))
        rows, bits = acc[:k], part[:k]  # a copy of the block: writing the outputs may overwrite `packed`
        if every:
            rows[...] = packed[start:stop]
        else:
            np.compress(keep[start:stop], packed[start:stop], out=rows)
        for column, (offset, width, mask) in zip(columns, layout, strict=True):
            if not width:
                column[m : m + k] = 0  # its only code
                continue
            np.right_shift(rows, offset, out=bits)
            np.bitwise_and(bits, mask, out=column[m : m + k], casting="unsafe")
        m += k
    return m


def _present(codes: np.ndarray, size: int) -> np.ndarray:
    """The distinct values of `codes` (integers in 0..size-1), sorted."""
    seen = np.zeros(size, dtype=bool)
    seen[codes] = True  # no full-length index copy, unlike bincount
    return np.flatnonzero(seen)
