"""Evaluation: metric functions (accuracy and beyond-accuracy) and the batched full-ranking evaluator."""
