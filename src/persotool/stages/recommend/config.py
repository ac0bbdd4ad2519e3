"""The recommend stage's config: for whom, how many items, and whether items a user already has
may be recommended again."""

from pathlib import Path

from pydantic import Field, model_validator

from persotool.kernels.config import Strict


class RecommendConfig(Strict):
    """Whose lists, and how long."""

    users: Path | None = Field(
        None, description="a file of user ids: one per line, or a CSV/Parquet table with a user_id column"
    )
    all_users: bool = Field(False, description="every user of the model's dataset")
    k: int = Field(20, ge=1, le=10_000, description="items per list")
    exclude_seen: bool = Field(
        True,
        description="never recommend what the user already had in training",
        json_schema_extra={"off": "recommend items the user already had in training too"},
    )
    batch_users: int = Field(8192, ge=1, description="users scored at once (memory: batch x items x 4 bytes)")

    @model_validator(mode="after")
    def _whom(self) -> "RecommendConfig":
        if (self.users is None) == (not self.all_users):
            raise ValueError("say whose lists to make: `users` (a file of user ids) or `all_users`, not both")
        return self
