"""Built-in source layouts (`--preset`), as plain config dictionaries merged under user settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from persotool.errors import ConfigError

MOVIELENS_CSV: dict[str, Any] = {
    "source": {"format": "csv", "delimiter": ",", "header": True},
    "columns": {
        "user": "userId",
        "item": "movieId",
        "time": "timestamp",
        "time_format": "s",
        "value": "rating",
    },
}
MOVIELENS_DAT: dict[str, Any] = {
    "source": {
        "format": "csv",
        "delimiter": "::",
        "header": False,
        "columns": ["userId", "movieId", "rating", "timestamp"],
    },
    "columns": MOVIELENS_CSV["columns"],
}
PRESETS = ("movielens",)


def preset(name: str, first_source: str | None) -> dict[str, Any]:
    """The config of a preset, choosing the layout from the first source and attaching the item
    attribute file (movies.csv / movies.dat) when it sits beside the ratings."""
    if name != "movielens":
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    path = Path(first_source) if first_source else None
    is_dat = bool(path and (path.suffix == ".dat" or path.name.endswith(".dat.gz")))
    config = {k: dict(v) for k, v in (MOVIELENS_DAT if is_dat else MOVIELENS_CSV).items()}
    folder = path if path and path.is_dir() else (path.parent if path else None)
    if folder is not None:
        if is_dat and (folder / "movies.dat").is_file():
            config["items"] = {
                "path": str(folder / "movies.dat"),
                "key": "movieId",
                "features": ["genres"],
                "separator": "|",
                "delimiter": "::",
                "header": False,
                "columns": ["movieId", "title", "genres"],
            }
        elif (folder / "movies.csv").is_file():
            config["items"] = {
                "path": str(folder / "movies.csv"),
                "key": "movieId",
                "features": ["genres"],
                "separator": "|",
            }
    return config
