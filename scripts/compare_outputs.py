"""Compare two runs of `make demo` (two copies of build/demo): the digests of the dataset, the split
and every trained model, and every results table the demo writes, timing columns aside.

    python scripts/compare_outputs.py BEFORE_DIR AFTER_DIR

Prints each difference and exits 1 if there is one: a redesign that should not change outputs
proves it did not. Floats are compared exactly (the demo is seeded and single-threaded). A model's
content (its arrays, its model.json but for the version that wrote it) is compared beside its
digest, so a digest that changed with the model's content is told from one that changed alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# what changes from run to run by itself: timings, absolute paths, versions, run ids, worker pids
VOLATILE = ("worker", "seconds", "second", "fit_s", "eval_s", "path", "persotool_version", "mlflow", "started", "ended")


def _volatile(key: str) -> bool:
    return any(part in key.lower() for part in VOLATILE)


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not _volatile(str(k))}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return Path(value).name
    return value


def _manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def _table(path: Path):
    import polars as pl

    frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    return frame.select([c for c in frame.columns if not _volatile(c)])


def digests(root: Path) -> dict[str, str]:
    found = {
        "dataset": _manifest(root / "movielens")["dataset_digest"],
        "split": _manifest(root / "split")["split_digest"],
    }
    for model in sorted((root / "benchmark" / "models").iterdir()):
        found[f"model {model.name}"] = _manifest(model)["model_digest"]
        # the model itself: its arrays byte for byte, its model.json but for the writer's version
        meta = json.loads((model / "model.json").read_text())
        meta.pop("persotool_version", None)
        found[f"model {model.name} content"] = _sha256((model / "arrays.npz").read_bytes()) + _sha256(
            json.dumps(meta, sort_keys=True).encode()
        )
    return found


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:16]


TABLES = [
    "benchmark/results.csv",
    "benchmark/tests.csv",
    "benchmark/per_user.parquet",
    "tune-ease/trials.parquet",
    "backtest/quantities.csv",
    "backtest/per_user.parquet",
    "ab-test/results.csv",
    "ab-test/per_user.parquet",
    "ab-test/per_day.parquet",
    "feedback-loop/results.csv",
    "feedback-loop/per_user.parquet",
    "feedback-loop/per_day.parquet",
    "world/users.parquet",
]
MANIFEST_PARTS = {
    "tune-ease": ["best", "totals", "trials"],
    "world": ["fit", "engagement", "diagnostics", "users", "window"],
    "backtest": ["quantities", "verdict", "fit", "window"],
    "ab-test": ["arm_sizes", "srm_p", "user_days", "calibration"],
    "feedback-loop": ["arm_sizes", "srm_p", "user_days", "calibration", "retrained_on_days"],
}


def compare(before: Path, after: Path) -> list[str]:
    differences = []
    a, b = digests(before), digests(after)
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            differences.append(f"{key} digest: {a.get(key)} -> {b.get(key)}")
    for name in TABLES:
        left, right = before / name, after / name
        if not left.is_file() or not right.is_file():
            differences.append(f"{name}: missing on one side")
            continue
        x, y = _table(left), _table(right)
        if x.columns != y.columns or not x.equals(y):
            differences.append(f"{name}: the tables differ")
    for directory, keys in MANIFEST_PARTS.items():
        x, y = _manifest(before / directory), _manifest(after / directory)
        for key in keys:
            if _strip(x.get(key)) != _strip(y.get(key)):
                differences.append(f"{directory}/manifest.json {key}: differs")
    return differences


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    found = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    for line in found:
        print(line)
    print("identical" if not found else f"{len(found)} differences")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
