"""A world directory from `calibrate`: the fitted visit model, its uncertainty, diagnostics and
calibration window; `simulate` loads it with `[world] source = "DIR"`."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from persotool.kernels import render, storage
from persotool.kernels.artifact import Artifact, Manifest, Ref
from persotool.kernels.simulation.calibration import WorldFile
from persotool.stages.backtest.result import link_blocks, truth_blocks

REJECTED = 0.01  # the in-sample check's p-value below which the fit is called rejected


class WorldManifest(Manifest):
    """A world directory's manifest, checked field by field with the bounds a simulation needs."""

    dataset: Ref
    window: dict[str, Any]
    model: str
    fit: dict[str, Any]
    grid: dict[str, Any]
    engagement: dict[str, Any]
    diagnostics: dict[str, Any]
    users: int
    seconds: float
    truth: dict[str, Any] = Field(default_factory=dict)
    return_link: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _loadable(self) -> WorldManifest:
        WorldFile.model_validate(self.model_dump())
        return self


class World(Artifact):
    """A world directory from `calibrate`: the fitted visit model, its uncertainty, diagnostics
    and calibration window; `simulate` loads it with `[world] source = "DIR"`."""

    kind = "world"
    manifest_model = WorldManifest
    tables = ("users.parquet",)
    manifest: WorldManifest

    @property
    def digest(self) -> str:
        m = self.manifest
        return storage.config_hash({"dataset": m.dataset.digest, "window": m.window, "fit": m.fit["params"]})

    @property
    def users(self):
        """What the model concludes about each user at the cutoff."""
        return self.table("users")

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "output": str(self.path),
            "digest": self.digest,
            "dataset": m.dataset.model_dump(),
            "window": m.window,
            "model": m.model,
            "fit": {k: v for k, v in m.fit.items() if k != "log_cov"},
            "diagnostics": m.diagnostics,
            "engagement": {k: v for k, v in m.engagement.items() if k != "per_active_day"},
            "users": m.users,
            "truth": m.truth,
            "return_link": m.return_link,
            "seconds": m.seconds,
            "mlflow_run_id": self.mlflow_run_id,
        }

    def blocks(self) -> list[render.Block]:
        m = self.manifest
        fit, se = m.fit["params"], m.fit["standard_errors"]
        check = m.diagnostics["active_days"]
        means = m.fit["means"]
        return [
            render.key_values(
                f"World {self.path}",
                [
                    ("dataset", m.dataset.path),
                    ("window", f"{m.window['start'][:10]} to {m.window['until'][:10]} ({m.window['days']} days)"),
                    ("users", f"{m.users:,}"),
                    ("model", m.model),
                    (
                        "log-likelihood",
                        f"{m.fit['log_likelihood']:.1f}" + ("" if m.fit["converged"] else " (not converged)"),
                    ),
                    ("mean daily active-day chance", f"{means['visit_chance']:.4f}"),
                    ("mean daily leaving chance", f"{means['leaving_chance']:.4f}"),
                    ("mean daily return chance", f"{means['return_chance']:.6f}"),
                    ("interactions per active day", f"{m.engagement['mean']:.2f}"),
                    ("seconds", f"{m.seconds:.1f}"),
                    ("mlflow run", self.run_cell()),
                ],
            ),
            render.Table(
                "Fitted parameters (Beta distributions of the daily chances)",
                ["parameter", "of", "value", "standard error"],
                [
                    [name, of, render.number(fit[name]), render.number(se[name])]
                    for name, of in zip(
                        ("alpha", "beta", "gamma", "delta", "epsilon", "zeta"),
                        ("active day", "active day", "leaving", "leaving", "return", "return"),
                        strict=True,
                    )
                ],
                left={"parameter", "of"},
            ),
            render.Table(
                f"In-sample check: users by active days after the first (chi-square p = {check['p_value']:.3g})",
                ["active days", "logs", "fitted model"],
                [
                    [b, str(o), f"{e:.1f}"]
                    for b, o, e in zip(check["bins"], check["observed"], check["expected"], strict=True)
                ],
                left={"active days"},
            ),
            *truth_blocks(m.truth, "in the window's last 20%"),
            *link_blocks({"window": m.return_link}),
        ]

    def notes(self) -> list[str]:
        """A fit the in-sample check rejects, or one that did not converge, is said out loud."""
        m, notes = self.manifest, []
        check = m.diagnostics["active_days"]
        if check["p_value"] < REJECTED:
            notes.append(
                f"the in-sample check rejects the fit (chi-square p = {check['p_value']:.2g}): the fitted model does "
                "not reproduce how many days users were active in the window (see active_days.png); simulations "
                "built on it inherit that misfit, and `backtest` measures what it costs"
            )
        if not m.fit["converged"]:
            notes.append("the likelihood fit did not converge: its parameters and standard errors are not reliable")
        return notes

    def measures(self) -> dict[str, float]:
        m = self.manifest
        found = {f"fit.{k}": float(v) for k, v in m.fit["params"].items()}
        found |= {f"mean.{k}": float(v) for k, v in m.fit["means"].items()}
        found["log_likelihood"] = float(m.fit["log_likelihood"])
        found["active_days_check_p"] = float(m.diagnostics["active_days"]["p_value"])
        found |= {f"truth_weight.{f}": float(w) for f, w in m.truth.get("weights", {}).items()}
        if "coefficient" in m.return_link:
            found["return_link.coefficient"] = float(m.return_link["coefficient"])
        return found
