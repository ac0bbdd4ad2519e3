"""benchmark: several models on one split, each trained, evaluated on the same users and tested
against a baseline (paired t and Wilcoxon, Holm-corrected)."""

from persotool.stages import Stage

STAGE = Stage(
    name="benchmark",
    kind="benchmark",
    config="BenchmarkConfig",
    result="Benchmark",
    source="split",
    runtime=("progress",),
)
