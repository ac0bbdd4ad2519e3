"""Public data the benchmarks use, fetched from the package index (the only network this project's
machines reach) into benchmarks/data/ on the first run."""

from __future__ import annotations

import re
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
