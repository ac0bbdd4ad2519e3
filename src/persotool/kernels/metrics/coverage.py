"""What an evaluation can tell apart: how many evaluated users had training history and how many
relevant held-out items were seen in training. When none were, every model falls back to the same
ranking (or cannot rank the items at all), and the metrics compare nothing."""

from __future__ import annotations

from typing import Any

import polars as pl


def cold_counts(train: pl.DataFrame, truth: pl.DataFrame) -> dict[str, int]:
    """Users with a relevant held-out item, and how many of them (and of the relevant pairs) are
    cold: a user with no training interaction, an item no training interaction touched."""
    relevant = truth.filter(pl.col("relevant")) if "relevant" in truth.columns else truth
    users = relevant["user_idx"].unique()
    trained_users = train["user_idx"].unique()
    trained_items = train["item_idx"].unique()
    return {
        "users": len(users),
        "cold_users": int((~users.is_in(trained_users.implode())).sum()),
        "pairs": len(relevant),
        "pairs_with_cold_item": int((~relevant["item_idx"].is_in(trained_items.implode())).sum()),
    }


def cold_notes(counts: dict[str, Any]) -> list[str]:
    """What to say when most of an evaluation is cold start."""
    notes = []
    users, cold = counts.get("users", 0), counts.get("cold_users", 0)
    if users and cold == users:
        notes.append(
            f"every one of the {users:,} evaluated users has no training history: every model can only rank "
            "them by its fallback (popularity), so these metrics cannot tell the models apart"
        )
    elif users and cold * 2 >= users:
        notes.append(f"{cold:,} of {users:,} evaluated users ({cold / users:.0%}) have no training history")
    pairs, cold_items = counts.get("pairs", 0), counts.get("pairs_with_cold_item", 0)
    if pairs and cold_items == pairs:
        notes.append(
            f"no relevant held-out item was seen in training ({pairs:,} pairs): no model that learns from "
            "interactions can rank them, and every score here is near zero whatever the model"
        )
    elif pairs and cold_items * 2 >= pairs:
        share = cold_items / pairs
        notes.append(
            f"{cold_items:,} of {pairs:,} relevant held-out pairs ({share:.0%}) are of items unseen in training"
        )
    return notes
