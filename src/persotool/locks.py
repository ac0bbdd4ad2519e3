"""Advisory file locks between persotool processes (`flock` on a lock file that is removed after)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path


class Busy(Exception):
    """The lock is held by another process (and waiting was not asked for, or ran out)."""


@contextlib.contextmanager
def file_lock(path: Path, *, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed, removed on release). Raises `Busy`
    when another process holds it for longer than `wait` seconds (0: do not wait)."""
    import fcntl

    deadline = time.monotonic() + wait
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                raise Busy(str(path)) from None
            time.sleep(0.05)
            continue
        # The previous holder may have removed the file between our open and our lock.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
