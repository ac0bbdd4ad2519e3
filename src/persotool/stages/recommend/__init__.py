"""recommend: top-k lists of a trained model for real user ids, with real item ids, in the
user_id,item_id,rank,score layout `evaluate --recommendations` reads."""

from persotool.stages import Stage

STAGE = Stage(
    name="recommend", kind="recommendations", config="RecommendConfig", result="Recommendations", source="model"
)
