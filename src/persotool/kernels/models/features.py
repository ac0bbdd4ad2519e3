"""User and item features as the models take them: the `features` lists of a dataset's users and
items tables as 0/1 sparse matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp


def feature_matrix(dataset: Path, kind: str, n: int) -> tuple[sp.csr_matrix | None, list[str]]:
    """The `features` lists of users.parquet / items.parquet as an n x features 0/1 CSR matrix."""
    path = Path(dataset) / f"{kind}s.parquet"
    if not path.is_file():
        return None, []
    table = pl.read_parquet(path)
    if "features" not in table.columns:
        return None, []
    exploded = table.select(f"{kind}_idx", "features").explode("features").drop_nulls("features")
    if exploded.is_empty():
        return None, []
    names = sorted(exploded["features"].unique().to_list())
    codes = exploded["features"].cast(pl.Enum(names)).to_physical().to_numpy()
    rows = exploded[f"{kind}_idx"].to_numpy()
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, codes)), shape=(n, len(names)))
    return matrix, names
