"""A persotool recommender as an MLflow model (pyfunc), defined in code, never pickled.

MLflow stores this file with the model ("models from code") and the model's artifact: the model
directory's arrays and JSON, unchanged, plus its dataset's id maps (`serving.package`). Loading
runs this file and reads the arrays through persotool's own loader (digests verified, no pickle).

Input: a table with a `user_id` column and optionally `k` (the list length, default 10; the first
row's value holds for the request). Output: user_id, item_id, rank, score, source (model, or the
popularity fallback for a user training never saw or an id the dataset never had)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

DEFAULT_K = 10


class PersotoolRecommender(PythonModel):
    def load_context(self, context) -> None:
        import polars as pl

        from persotool.kernels.models import serving
        from persotool.kernels.models.registry import load

        root = Path(context.artifacts["model"])
        self.model = load(root)
        self.user_ids = pl.read_parquet(root / serving.USER_IDS)
        self.item_ids = pl.read_parquet(root / serving.ITEM_IDS)["item_id"]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        import polars as pl

        from persotool.kernels.models.serving import id_lists

        frame = model_input if isinstance(model_input, pl.DataFrame) else pl.from_pandas(model_input)
        if "user_id" not in frame.columns:
            raise ValueError(f"the input needs a user_id column (it has {', '.join(frame.columns)})")
        k = int(frame["k"][0]) if "k" in frame.columns and len(frame) else int((params or {}).get("k", DEFAULT_K))
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return id_lists(self.model, frame["user_id"], self.user_ids, self.item_ids, k).to_pandas()


mlflow.models.set_model(PersotoolRecommender())
