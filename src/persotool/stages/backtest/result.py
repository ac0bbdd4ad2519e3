"""A back-test directory from `backtest`: the simulator's forecast of the held-out logs beside naive
forecasts and noise floors, with a verdict per quantity."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from persotool.kernels import render
from persotool.kernels.artifact import Artifact, Manifest, Ref


class BacktestManifest(Manifest):
    dataset: Ref
    window: dict[str, Any]
    config: dict[str, Any]
    config_hash: str
    fit: dict[str, Any]
    quantities: list[dict[str, Any]]
    truth_fit: dict[str, Any] = Field(default_factory=dict)
    return_link: dict[str, Any] = Field(default_factory=dict)
    verdict: dict[str, Any]
    seconds: dict[str, float]


class Backtest(Artifact):
    """A back-test directory from `backtest`: the simulator's forecast of the held-out logs beside
    naive forecasts and noise floors, with a verdict per quantity."""

    kind = "backtest"
    manifest_model = BacktestManifest
    tables = ("results.json", "quantities.csv", "per_user.parquet", "retention.parquet")
    manifest: BacktestManifest

    @property
    def per_user(self):
        return self.table("per_user")

    @property
    def retention(self):
        return self.table("retention")

    @property
    def quantities(self) -> list[dict[str, Any]]:
        return self.manifest.quantities

    def verdict(self, quantity: str) -> str:
        return next(q["verdict"] for q in self.quantities if q["quantity"] == quantity)

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "output": str(self.path),
            "dataset": m.dataset.model_dump(),
            "window": m.window,
            "fit": {k: v for k, v in m.fit.items() if k != "log_cov"},
            "quantities": m.quantities,
            "truth_fit": m.truth_fit,
            "return_link": m.return_link,
            "verdict": m.verdict,
            "notes": getattr(m, "notes", []),
            "seconds": m.seconds,
            "mlflow_run_id": self.mlflow_run_id,
        }

    def notes(self) -> list[str]:
        return list(getattr(self.manifest, "notes", []))

    def measures(self) -> dict[str, float]:
        """Every quantity's simulated figure by name, and `misfits`, the number of misfit verdicts:
        `require(ceilings={"misfits": 0})` fails a back-test with any misfit."""
        found = {
            q["quantity"]: float(q["simulated"])
            for q in self.manifest.quantities
            if isinstance(q.get("simulated"), int | float)
        }
        found["misfits"] = float(sum(q["verdict"] == "misfit" for q in self.manifest.quantities))
        return found

    def blocks(self) -> list[render.Block]:
        m = self.manifest
        w, v = m.window, m.verdict
        columns = [
            "quantity",
            "logs",
            "simulator",
            "persistence",
            "hist. rate",
            "rec+freq",
            "nobody",
            "noise ±",
            "verdict",
        ]
        rows = [
            [
                _label(q["quantity"]),
                _short(q.get("real")),
                _short(q.get("simulated")),
                _short(q.get("persistence")),
                _short(q.get("historical rate")),
                _short(q.get("recency + frequency")),
                _short(q.get("nobody returns")),
                _short(q.get("noise")),
                _verdict_cell(q["verdict"]) + (f" vs {_NAIVE[q['best_naive']]}" if q.get("best_naive") else ""),
            ]
            for q in m.quantities
        ]
        return [
            render.key_values(
                f"Back-test {self.path}",
                [
                    ("dataset", m.dataset.path),
                    ("calibrated on", f"{w['start'][:10]} to {w['until'][:10]} ({w['days']} days)"),
                    ("held out", f"{w['held_out_days']} days after the cutoff"),
                    ("known users", f"{v['known_users']:,} ({v['returning_users']:,} returned after the cutoff)"),
                    ("verdicts", ", ".join(f"{n} {k}" for k, n in v["counts"].items())),
                    ("seconds", f"{m.seconds['total']:.1f}"),
                    ("mlflow run", self.run_cell()),
                ],
            ),
            render.Table(
                "The simulator against the held-out logs",
                columns,
                rows,
                left={"quantity", "verdict"},
                compact=True,
                caption="aggregates: values; distributions: means, KS against a real-vs-resampled-real floor; "
                "per user: each forecast's score, the verdict against the best naive forecast (vs). "
                "rec+freq: a regression on recency and frequency fitted inside the calibration window; "
                "nobody: the forecast that nobody returns. better: better than the naive forecast; "
                "inconclusive: more than 25% off, but within the log's noise floor (too small to tell)",
            ),
            *truth_blocks(m.truth_fit, "after the cutoff"),
            *link_blocks(m.return_link),
        ]


def link_blocks(links: dict[str, dict[str, Any]]) -> list[render.Block]:
    """The return link (`return_link.fit`) of each period, as a table."""
    if not links:
        return []
    rows = []
    for period, link in links.items():
        if "coefficient" in link:
            low, high = link["ci"]
            rows.append(
                [period, f"{link['days']:,}", f"{link['coefficient']:+.3f}", f"{low:+.3f},{high:+.3f}", link["link"]]
            )
        else:
            rows.append([period, f"{link['days']:,}", "", "", f"{link['link']}: {link.get('note', '')}"])
    horizon = next(iter(links.values())).get("horizon_days", 30)
    return [
        render.Table(
            f"Does a better visit bring users back within {horizon} days?",
            ["period", "active days", "log-odds per rating point", "95% CI", "link"],
            rows,
            left={"period", "link"},
            compact=True,
            caption="a logistic regression of returning on the day's mean rating minus the user's own earlier mean, "
            "controlling for days since the previous active day and active days so far; with no link found the "
            "simulator keeps its default (behaviour.churn_satisfaction)",
        )
    ]


def truth_blocks(fit: dict[str, Any], when: str) -> list[render.Block]:
    """The truth families' scores on held-out behaviour, as a table (or the note saying why not)."""
    if not fit:
        return []
    if "families" not in fit:
        return [f"[dim]Truth families not scored: {fit.get('note', 'no held-out engagements')}[/dim]"]
    rows = [
        [
            r["family"],
            "" if r["weight"] is None else f"{r['weight']:.2f}",
            _short(r["auc"]),
            _short(r["ndcg@10"]),
            _short(r["loglik_gain"]),
            _short(r["beta"]),
            _short(r["loglik_gain_at_simulator"]),
        ]
        for r in fit["families"]
    ]
    at = fit.get("affinity_weight")
    return [
        render.Table(
            f"Truth families on held-out behaviour ({fit['users']:,} known users, {fit['engagements']:,} items "
            f"consumed {when})",
            ["truth", "weight", "AUC", "NDCG@10", "log-lik gain", "β fitted", f"gain at β={_short(at)}"],
            rows,
            left={"truth"},
            compact=True,
            caption="each family fitted before the cutoff ranks the items a user consumed after it among those "
            "they had not (AUC, NDCG@10) and predicts which item an engagement went to: nats per engagement "
            "over popularity alone, with the affinity weight the data supports (β fitted) and at the "
            "simulator's affinity_weight; weight: the family's share of an auto truth",
        )
    ]


_NAIVE = {
    "persistence": "persistence",
    "historical rate": "hist. rate",
    "recency + frequency": "rec+freq",
    "nobody returns": "nobody",
}
_LABELS = {
    "share of users returning": "returning share",
    "active days per user": "active days/user",
    "engagement share of the top 10% items": "top-10% item share",
    "gap between active days": "gap (days)",
    "interactions per active day": "interactions/day",
    "AUC of returning": "AUC returning",
    "Spearman of active days": "Spearman days",
    "MAE of active days": "MAE days",
}


def _label(quantity: str) -> str:
    if quantity.startswith("returned within "):
        return "returned ≤ " + quantity.removeprefix("returned within ").replace(" days", " d")
    return _LABELS.get(quantity, quantity)


def _short(value) -> str:
    """Three significant digits; blank when a forecast does not apply."""
    if value is None:
        return ""
    if isinstance(value, float) and value != value:
        return "n/a"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _verdict_cell(verdict: str) -> str:
    colour = {"misfit": "red", "better than the naive forecast": "green", "close": "dim", "inconclusive": "dim"}.get(
        verdict
    )
    verdict = "better" if verdict == "better than the naive forecast" else verdict
    return f"[{colour}]{verdict}[/{colour}]" if colour else verdict
