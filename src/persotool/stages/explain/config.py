"""The explain stage's config: whose recommendations, how many, and how many reasons each."""

from pydantic import Field

from persotool.kernels.config import Strict


class ExplainConfig(Strict):
    """Which user's list to explain."""

    user: str = Field(description="the user id (as in the dataset)")
    k: int = Field(10, ge=1, le=1000, description="explain the user's top k items")
    reasons: int = Field(5, ge=1, le=100, description="reasons shown per item (the rest summed into one)")
    exclude_seen: bool = Field(
        True,
        description="explain the list without what the user already had",
        json_schema_extra={"off": "items the user already had may be in the list"},
    )
