"""Recommenders behind one small protocol (`fit`, `score`, `recommend`, `save`, `load`)."""
