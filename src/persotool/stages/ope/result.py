"""An ope directory: estimates.csv (and .json), the action distributions made from recommendation lists
(policies/*.npy), forest.png, weights.png and the manifest (diagnostics, the reward model's
held-out fit, warnings)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from persotool.kernels import render
from persotool.kernels.artifact import Artifact, Manifest, Ref


class OpeManifest(Manifest):
    digest: str
    dataset: Ref
    config: dict[str, Any]
    impressions: int
    items: int
    positions: int
    logger_value: float
    propensities: str
    reward_model: dict[str, Any]
    policies: list[dict[str, Any]]
    estimates: list[dict[str, Any]]
    warnings: list[str]
    slates: str = ""
    files: dict[str, str]
    seconds: float


class OpeResult(Artifact):
    """Target policies valued on an impression log, every estimator with its interval."""

    kind = "ope"
    manifest_model = OpeManifest
    digest_field = "digest"
    manifest: OpeManifest

    @cached_property
    def estimates(self):
        import polars as pl

        return pl.read_csv(self.path / "estimates.csv")

    def selected(self) -> dict[str, dict[str, Any]]:
        """Each policy's selected estimate (SLOPE)."""
        return {row["policy"]: row for row in self.manifest.estimates if row["selected"]}

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "output": str(self.path),
            "impressions": m.impressions,
            "logger_value": m.logger_value,
            "propensities": m.propensities,
            "policies": [
                {
                    **{k: p[k] for k in ("name", "kind", "selected", "diagnostics", "note")},
                    "estimates": [e for e in m.estimates if e["policy"] == p["name"]],
                }
                for p in m.policies
            ],
            "reward_model": {k: v for k, v in m.reward_model.items() if k != "reliability"},
            "warnings": m.warnings,
            "slates": m.slates,
            "seconds": m.seconds,
            "mlflow_run_id": self.mlflow_run_id,
        }

    def measures(self) -> dict[str, float]:
        """For gates and MLflow: POLICY.value, POLICY.diff and its lower bound POLICY.diff_low (the
        selected estimator's, against the logger), the loss against the logger POLICY.loss = -diff and
        its upper bound POLICY.loss_high (`--max POLICY.loss_high=0.001`: the target may lose at most
        0.001 per impression), each estimator's POLICY.ESTIMATOR.value, and POLICY.ess."""
        out: dict[str, float] = {"logger_value": self.manifest.logger_value}
        for row in self.manifest.estimates:
            out[f"{row['policy']}.{row['estimator']}.value"] = row["value"]
            if row["selected"]:
                out[f"{row['policy']}.value"] = row["value"]
                out[f"{row['policy']}.diff"] = row["diff"]
                out[f"{row['policy']}.diff_low"] = row["diff_low"]
                out[f"{row['policy']}.loss"] = -row["diff"]
                out[f"{row['policy']}.loss_high"] = -row["diff_low"]
        for p in self.manifest.policies:
            out[f"{p['name']}.ess"] = p["diagnostics"]["ess"]
        return out

    def blocks(self) -> list[render.Block]:
        m = self.manifest
        level = m.config["level"]
        blocks: list[render.Block] = [
            render.key_values(
                f"Off-policy evaluation {self.path}",
                [
                    (
                        "log",
                        f"{m.dataset.path} ({m.impressions:,} impressions, {m.items:,} items, {m.positions} positions)",
                    ),
                    ("logger's on-policy value", f"{m.logger_value:.4g}"),
                    ("propensities", m.propensities),
                    ("reward model", _reward_line(m.reward_model)),
                    ("intervals", f"{level:.0%}, {m.config['interval']}"),
                    ("seconds", f"{m.seconds:.2f}"),
                    ("mlflow run", self.run_cell()),
                ],
            )
        ]
        for p in m.policies:
            d = p["diagnostics"]
            rows = []
            for e in (e for e in m.estimates if e["policy"] == p["name"]):
                name = e["estimator"] + (" *" if e["selected"] else "")
                rows.append(
                    [
                        name,
                        f"{e['value']:.4g}",
                        f"{e['low']:.4g}, {e['high']:.4g}",
                        f"{e['diff']:+.4g}",
                        f"{e['diff_low']:+.4g}, {e['diff_high']:+.4g}",
                    ]
                )
            title = f"{p['name']}: ESS {d['ess']:,.0f} of {m.impressions:,}, largest weight {d['max_weight']:.3g}" + (
                f"; {p['note']}" if p.get("note") else ""
            )
            blocks.append(
                render.Table(
                    title,
                    ["estimator", "value", "interval", "vs logger", "interval"],
                    rows,
                    caption="* selected by SLOPE: the most precise estimator whose interval agrees with every less "
                    "precise one (never DM: its interval leaves out the reward model's error)",
                    left={"estimator"},
                )
            )
        fit = m.reward_model
        blocks.append(
            render.Table(
                f"Reward model, held out (cross-fitted, L2 strength {fit.get('strength', '?')})",
                ["bin", "impressions", "predicted", "observed"],
                [
                    [str(r["bin"]), f"{r['impressions']:,}", f"{r['predicted']:.4g}", f"{r['observed']:.4g}"]
                    for r in fit["reliability"]
                ],
                caption="impressions binned by predicted reward: a calibrated model's bins have observed = predicted",
            )
        )
        return blocks

    def report_html(self) -> str:
        """report.html: the tables and both plots on one page."""
        import base64
        import html

        images = "".join(
            f'<figure><img src="data:image/png;base64,{base64.b64encode((self.path / p).read_bytes()).decode()}"'
            f' alt="{p}"></figure>'
            for p in ("forest.png", "weights.png")
            if (self.path / p).is_file()
        )
        warnings = "".join(f"<p><b>warning:</b> {html.escape(w)}</p>" for w in self.manifest.warnings)
        body = (
            f"<h1>Off-policy evaluation: {html.escape(self.path.name)}</h1>{warnings}"
            f"{render.to_html(self.blocks())}<h2>Plots</h2>{images}"
        )
        return render.html_page(self.path.name, body)

    def notes(self) -> list[str]:
        return [*self.manifest.warnings, *([self.manifest.slates] if self.manifest.slates else [])]


def _reward_line(fit: dict[str, Any]) -> str:
    better = "better" if fit["gain"] > 0 else "no better"
    return f"held-out {fit['loss']} {fit['held_out']:.4g} against the base rate's {fit['base_rate']:.4g} ({better})"
