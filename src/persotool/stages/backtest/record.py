"""What a back-test's MLflow run records: every quantity for the simulator and each naive
forecast as metrics, and the verdicts as tags."""

import re

from persotool.kernels.runspec import RunSpec, flatten
from persotool.stages.backtest.compare import SOURCES


def _key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def run_spec(backtest) -> RunSpec:
    m, out = backtest.manifest, backtest.path
    metrics: dict[str, float] = {}
    tags = {"persotool.dataset_digest": m.dataset.digest, "persotool.output": str(out.resolve())}
    for q in m.quantities:
        key = _key(q["quantity"])
        for source in SOURCES:
            value = q.get(source)
            if isinstance(value, int | float) and value == value:
                metrics[f"{key}.{_key(source)}"] = float(value)
        tags[f"verdict.{key}"] = q["verdict"]
    for row in m.truth_fit.get("families", []):
        family = _key(row["family"])
        metrics |= {f"truth.{family}.{k}": float(v) for k, v in row.items() if k != "family" and v is not None}
    for period, link in m.return_link.items():
        if "coefficient" in link:
            metrics[f"return_link.{_key(period)}"] = float(link["coefficient"])
    verdict = m.verdict
    metrics |= {f"verdicts.{_key(k)}": v for k, v in verdict["counts"].items()}
    metrics |= {"returning_users": verdict["returning_users"], "known_users": verdict["known_users"]}
    files = ("results.json", "quantities.csv", "retention.png", "active_days.png", "manifest.json")
    return RunSpec(
        name=f"{out.name} · backtest",
        command="backtest",
        output=out,
        params=flatten(m.config) | {"until": m.window["until"]},
        metrics=metrics,
        tags=tags,
        artifacts=[(out / f, "backtest") for f in files],
    )
