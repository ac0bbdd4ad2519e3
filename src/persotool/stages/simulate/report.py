"""Plots and a self-contained HTML report of a simulated experiment: retention curves with bands,
daily engagement, effects with confidence intervals (true effects marked), sequential p-values,
and the fidelity of the simulated world to the logs."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from persotool.kernels.simulation.spec import SimulationConfig
    from persotool.stages.simulate.analysis import Analysis
    from persotool.stages.simulate.fidelity import Fidelity

PLOTS = ("retention.png", "daily.png", "effects.png", "sequential.png", "homogenization.png", "fidelity.png")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def survival_table(analysis: Analysis) -> pl.DataFrame:
    rows = []
    for arm, curve in analysis.survival.items():
        fit = curve["fit"]
        for t, s, lo, hi in zip(fit.times, fit.survival, fit.band_low, fit.band_high, strict=True):
            rows.append(
                {"arm": arm, "day": float(t), "survival": float(s), "band_low": float(lo), "band_high": float(hi)}
            )
    return pl.DataFrame(
        rows,
        schema={
            "arm": pl.String,
            "day": pl.Float64,
            "survival": pl.Float64,
            "band_low": pl.Float64,
            "band_high": pl.Float64,
        },
    )


def plot_retention(analysis: Analysis, days: int, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for arm, curve in analysis.survival.items():
        fit = curve["fit"]
        x = np.concatenate([[0], fit.times])
        y = np.concatenate([[1], fit.survival])
        line = ax.step(x, y, where="post", label=f"{arm} (RMST {fit.rmst:.2f} d)")[0]
        lo = np.concatenate([[1], fit.band_low])
        hi = np.concatenate([[1], fit.band_high])
        ax.fill_between(x, lo, hi, step="post", alpha=0.15, color=line.get_color())
    ax.set(
        xlim=(0, days),
        xlabel="days since first exposure",
        ylabel="still visiting",
        title="Retention to the last visit (Kaplan-Meier, 95% band; observed churn)",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_daily(analysis: Analysis, path: Path) -> None:
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for (arm,), group in analysis.per_day.group_by("arm", maintain_order=True):
        left.plot(group["day"], group["engagements_per_visitor"], label=arm)
        right.plot(group["day"], group["ctr"], label=arm)
    left.set(title="Engagements per visitor, per day (all users)", xlabel="day")
    right.set(title="CTR (engagements / impressions), per day", xlabel="day")
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_effects(analysis: Analysis, path: Path) -> None:
    plt = _plt()
    results = analysis.results
    if results.is_empty():
        fig = plt.figure(figsize=(4, 2))
        fig.savefig(path)
        plt.close(fig)
        return
    rel = results.with_columns(
        scale=pl.when(pl.col("control") != 0).then(pl.col("control").abs()).otherwise(1.0),
        label=pl.col("arm") + ": " + pl.col("metric"),
    )
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rel) + 1.2))
    y = np.arange(len(rel))
    scale = rel["scale"].to_numpy()
    effect = rel["effect"].to_numpy() / scale * 100
    low = rel["ci_low"].to_numpy() / scale * 100
    high = rel["ci_high"].to_numpy() / scale * 100
    true = rel["true_effect"].to_numpy() / scale * 100
    significant = rel["significant"].to_numpy()
    for chosen, color in ((significant, "#3b6ea5"), (~significant, "#999999")):
        if chosen.any():
            e = effect[chosen]
            ax.errorbar(e, y[chosen], xerr=[e - low[chosen], high[chosen] - e], fmt="o", ms=3, color=color, capsize=2)
    ax.scatter(true, y, marker="x", color="#a53b3b", s=18, label="true effect", zorder=3)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(y, rel["label"].to_list(), fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="effect, % of control", title="Effects against control (blue: significant within its family)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sequential(analysis: Analysis, alpha: float, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    seq = analysis.sequential
    if len(seq):
        for (arm, metric), group in seq.group_by("arm", "metric", maintain_order=True):
            ax.plot(group["day"], group["p_always_valid"], label=f"{arm}: {metric}")
    threshold = float(seq["threshold"][0]) if len(seq) else alpha
    ax.axhline(threshold, color="black", lw=0.7, ls="--")
    ax.set(
        yscale="log",
        xlabel="day of the test",
        ylabel="always-valid p (mSPRT)",
        title="Sequential monitoring (dashed: family-wise threshold)",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_homogenization(analysis: Analysis, path: Path) -> None:
    """Mean Jaccard of consumed sets, catalog coverage and Gini of exposure per day; dotted lines
    mark the days an arm retrained."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = (
        ("jaccard", "Mean Jaccard of consumed sets"),
        ("coverage", "Catalog coverage (items shown)"),
        ("gini", "Gini of exposure"),
    )
    for (arm,), group in analysis.per_day.group_by("arm", maintain_order=True):
        for ax, (column, _) in zip(axes, panels, strict=True):
            line = ax.plot(group["day"], group[column], label=arm)[0]
            for day in analysis.homogenization.get(arm, {}).get("retrained_on_days", []):
                ax.axvline(day, color=line.get_color(), lw=0.6, ls=":")
    for ax, (_, title) in zip(axes, panels, strict=True):
        ax.set(title=title, xlabel="day of the test")
    axes[0].legend(fontsize=8)
    fig.suptitle("Homogenization (dotted: retraining)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_fidelity(real: dict, simulated: dict, table: pl.DataFrame, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    distances = dict(zip(table["distribution"], table["ks_distance"], strict=True))
    for ax, name in zip(axes, real, strict=True):
        for label, sample in (("logs", real[name]), ("simulated", simulated[name])):
            if len(sample):
                xs = np.sort(sample)
                ax.step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post", label=label)
        ax.set_title(f"{name.replace('_', ' ')} (KS {distances.get(name, float('nan')):.2f})", fontsize=9)
        ax.set_ylabel("ECDF")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table_html(frame: pl.DataFrame, digits: int = 4) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows():
        cells = []
        for v in row:
            text = f"{v:.{digits}g}" if isinstance(v, float) else ("" if v is None else str(v))
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _flat_rows(values: dict, prefix: str = ""):
    """A nested mapping as (dotted field, readable value) rows: numbers to 4 significant digits, short
    lists inline, nothing shown as a Python or numpy repr."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flat_rows(value, name + ".")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, row in enumerate(value):  # a table's rows, named by their first field
                first, label = next(iter(row.items()), (None, i))
                yield from _flat_rows({k: v for k, v in row.items() if k != first}, f"{name}.{label}.")
        elif isinstance(value, list | tuple):
            shown = [_readable(v) for v in value[:12]]
            yield name, ", ".join(shown) + (f", ... ({len(value)} values)" if len(value) > 12 else "")
        else:
            yield name, _readable(value)


def _readable(value) -> str:
    import numbers

    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else ""
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}"
    return str(value)


def homogenization_table(analysis: Analysis | dict) -> pl.DataFrame:
    """One row per arm; from an Analysis or its `homogenization` mapping (results.json)."""
    homogenization = analysis if isinstance(analysis, dict) else analysis.homogenization
    return pl.DataFrame(
        [
            {
                "arm": arm,
                "mean_jaccard": h["jaccard"],
                "coverage": h["coverage"],
                "gini": h["gini"],
                "retrained_on_days": ", ".join(map(str, h["retrained_on_days"])) or "-",
            }
            for arm, h in homogenization.items()
        ]
    )


SECONDARY_NOTE = (
    "Not in any family, p uncorrected: the same test without CUPED (the tested estimate is the "
    "CUPED-adjusted one), and the log-rank test of the retention curves (the tested effect is RMST)."
)


def secondary_table(results: pl.DataFrame) -> pl.DataFrame:
    """The unadjusted Welch effects beside CUPED-tested metrics and the log-rank p-values, one row
    per arm and metric that has them: reported, never counted in a family."""
    rows = []
    for row in results.iter_rows(named=True):
        raw = row.get("raw_effect")
        if raw is not None and raw == raw:
            rows.append(
                {
                    "arm": row["arm"],
                    "metric": row["metric"],
                    "test": "Welch t without CUPED",
                    "effect": raw,
                    "ci_low": row["raw_ci_low"],
                    "ci_high": row["raw_ci_high"],
                    "p (uncorrected)": row["raw_p_value"],
                }
            )
        if row.get("logrank_p") is not None and row["logrank_p"] == row["logrank_p"]:
            rows.append(
                {
                    "arm": row["arm"],
                    "metric": "retention curve",
                    "test": "log-rank",
                    "p (uncorrected)": row["logrank_p"],
                }
            )
    schema = {
        "arm": pl.String,
        "metric": pl.String,
        "test": pl.String,
        "effect": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
        "p (uncorrected)": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def write_all(
    a: Analysis, cfg: SimulationConfig, fidelity: Fidelity, calibration: dict, folder: Path, summary: dict
) -> None:
    """Every plot, fidelity.csv and report.html of an experiment into `folder`. The report's
    tables are the blocks the terminal shows, drawn as HTML, then the plots, fidelity and
    calibration."""
    from persotool.kernels import render

    table, real, simulated = fidelity.table, fidelity.real, fidelity.simulated
    table.write_csv(folder / "fidelity.csv")
    plot_retention(a, cfg.days, folder / "retention.png")
    plot_daily(a, folder / "daily.png")
    plot_effects(a, folder / "effects.png")
    plot_sequential(a, cfg.analysis.alpha, folder / "sequential.png")
    plot_homogenization(a, folder / "homogenization.png")
    plot_fidelity(real, simulated, table, folder / "fidelity.png")
    images = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode((folder / p).read_bytes()).decode()}"'
        f' alt="{p}"></figure>'
        for p in PLOTS
    )
    rows = list(_flat_rows(calibration))
    calibration = pl.DataFrame({"field": [k for k, _ in rows], "value": [v for _, v in rows]})
    body = f"""<h1>Simulated A/B test: {html.escape(cfg.name)}</h1>
<p>{cfg.days} days after a {cfg.pre_days}-day pre-period under <b>{html.escape(cfg.control or "")}</b>. The true
effect of each metric is the same metric over the same users under every arm (common random numbers).</p>
{render.to_html(blocks(summary, a.results, cfg))}
<h2>Plots</h2>{images}
<h2>Fidelity to the logs</h2>{_table_html(table)}
<h2>Calibration</h2>{_table_html(calibration)}
"""
    (folder / "report.html").write_text(render.html_page(cfg.name, body), encoding="utf-8")


def blocks(summary: dict, results: pl.DataFrame, cfg: SimulationConfig) -> list:
    """What `persotool simulate` prints, report.html shows and an Experiment's Markdown holds: the
    design, one table per arm against control (every metric with its family and family-adjusted
    p), the tests outside the families, who each metric leaves out, the simulator's truth, the
    sequential monitoring, the robustness over worlds and homogenization."""
    shown: list = [_design_line(summary, cfg)]
    shown += _arm_tables(results, cfg)
    shown += _secondary_blocks(results)
    shown += _monitoring_lines(summary, results, cfg)
    shown += _robustness_blocks(summary)
    shown += _segment_blocks(summary)
    shown.append(_homogenization_block(summary))
    return shown


def _segment_blocks(summary: dict) -> list:
    """The primary and guardrail metrics per segment, harmed segments first (every metric is in
    segments.csv)."""
    from persotool.kernels import render

    segments = summary.get("segments")
    if not segments:
        return []
    rows = [r for r in segments["rows"] if r["family"] in ("primary", "guardrail")]
    cells = [
        [
            f"{r['segment_by']}: {r['segment']}",
            r["arm"],
            r["metric"],
            f"{r['users']:,}",
            f"{r['effect']:+.3g}",
            f"{r['ci_low']:+.3g},{r['ci_high']:+.3g}",
            f"{r['p_adjusted']:.2g}",
            f"{r['true_effect']:+.3g}",
            f"{r['rest_effect']:+.3g}",
            f"{r['heterogeneity_p_adjusted']:.2g}",
            "[red]harmed[/red]" if r["harmed"] else ("differs" if r["differential"] else ""),
        ]
        for r in rows
    ]
    harmed = ", ".join(f"{h['segment_by']} {h['segment']} ({h['arm']}: {h['metric']})" for h in segments["harmed"])
    return [
        render.Table(
            "Segments: " + (f"[red]harmed: {harmed}[/red]" if harmed else "no segment harmed"),
            ["segment", "arm", "metric", "users", "effect", "95% CI", "p", "true", "rest", "p vs rest", ""],
            cells,
            caption=f"p: {segments['correction']}. rest: the effect in every other user; p vs rest: the test "
            "that the two differ. harmed: a guardrail significantly worse in the segment; differs: the effect "
            "differs significantly from the rest's. Every metric: segments.csv."
            + "".join(
                f" Not tested ({', '.join(f'{arm} {n:,}' for arm, n in x['users'].items())} users, fewer than the "
                f"minimum per arm): {x['segment_by']} {x['segment']}."
                for x in segments["skipped"]
            ),
            left={"segment", "metric", ""},
            compact=True,
        )
    ]


def _design_line(summary: dict, cfg: SimulationConfig) -> str:
    sizes = ", ".join(f"{k} {v:,}" for k, v in summary["arm_sizes"].items())
    assigned = sum(summary["assigned"].values())
    srm_p = summary["sample_ratio_mismatch_p"]
    srm = "[red]mismatch![/red]" if srm_p < 0.001 else "ok"
    who = (
        f"triggered: users enter at their first visit of the test, {sum(summary['arm_sizes'].values()):,} of "
        f"{assigned:,} assigned"
        if summary["analysed"] == "triggered"
        else f"intention to treat: all {assigned:,} assigned users, visitors or not"
    )
    line = f"[bold]{cfg.name}[/bold]: {cfg.days} days; {who} ({sizes}); sample ratio {srm} (p = {srm_p:.3g})"
    checks = summary.get("balance") or []
    if checks:
        unbalanced = [row for row in checks if row["unbalanced"]]
        smallest = min(row["p_adjusted"] for row in checks)
        state = "[red]unbalanced![/red]" if unbalanced else "ok"
        line += f"; pre-period balance {state} ({len(checks)} checks, smallest p = {smallest:.2g} after Holm)"
    return line


def _arm_tables(results: pl.DataFrame, cfg: SimulationConfig) -> list:
    """One table per arm against control, a label row opening each family."""
    from persotool.kernels import render

    correction = {"holm": "Holm", "bonferroni": "Bonferroni", "none": "un"}[cfg.analysis.correction]
    caption = (
        f"95% CI; p {correction}-corrected within each family; ▲▼ significant. * CUPED-adjusted effect and "
        "interval (pre-period covariate); the means beside them are raw, so they need not subtract to the effect. "
        "Retention, churn and RMST count from each user's first exposure."
    )
    columns = ["metric", "control", "arm", "effect", "95% CI", "p", "true"]
    tables = []
    for (arm,), rows in results.group_by("arm", maintain_order=True):
        cells, family = [], None
        for row in rows.iter_rows(named=True):
            if row["family"] != family:
                family = row["family"]
                cells.append([f"[bold]{family}[/bold]", "", "", "", "", "", ""])
            mark = ""
            if row["significant"]:
                mark = " [green]▲[/green]" if row["effect"] > 0 else " [red]▼[/red]"
            cells.append(
                [
                    " " + row["metric"] + ("*" if str(row["method"]).endswith("CUPED") else ""),
                    f"{row['control']:.3g}",
                    f"{row['treatment']:.3g}",
                    f"{row['effect']:+.2g}",
                    f"{row['ci_low']:+.2g},{row['ci_high']:+.2g}",
                    f"{row['p_adjusted']:.2g}{mark}",
                    f"{row['true_effect']:+.2g}",
                ]
            )
        tables.append(render.Table(f"{arm} against {cfg.control}", columns, cells, caption=caption, compact=True))
    return tables


def _secondary_blocks(results: pl.DataFrame) -> list:
    from persotool.kernels import render

    secondary = secondary_table(results)
    if not len(secondary):
        return []
    cells = []
    for row in secondary.iter_rows(named=True):
        has = row["effect"] is not None
        cells.append(
            [
                row["arm"],
                row["metric"],
                row["test"],
                f"{row['effect']:+.3g}" if has else "",
                f"{row['ci_low']:+.2g},{row['ci_high']:+.2g}" if has else "",
                f"{row['p (uncorrected)']:.2g}",
            ]
        )
    return [
        render.Table(
            "Tests outside the families (p uncorrected)",
            ["arm", "metric", "test", "effect", "95% CI", "p"],
            cells,
            caption=SECONDARY_NOTE,
            left={"metric", "test"},
            compact=True,
        )
    ]


def _monitoring_lines(summary: dict, results: pl.DataFrame, cfg: SimulationConfig) -> list:
    """Who each metric leaves out, the simulator's hidden truth, and the sequential test's stops."""
    a, lines = cfg.analysis, []
    windows = results.filter(pl.col("left_out") > 0) if "left_out" in results.columns else results.clear()
    if len(windows):
        first_arm = windows["arm"][0]
        parts = [
            f"{row['metric']} {row['left_out']:,}"
            for row in windows.filter(pl.col("arm") == first_arm).iter_rows(named=True)
        ]
        lines.append(
            f"Users left out (their window ends after the test; {first_arm} and {cfg.control}): " + ", ".join(parts)
        )
    truth = summary.get("simulator_truth") or {}
    if truth:
        shares = ", ".join(f"{arm} {v['hidden_churn_share']:.1%}" for arm, v in truth.items())
        lines.append(f"[dim]Simulator truth, not observable: hidden churn state, all simulated users: {shares}[/dim]")
    monitored = [m for m in a.primary if m in ("engagements", "visits", "examined")]
    if monitored and "first_stop_day" in results.columns:
        stops = results.filter(pl.col("first_stop_day").is_not_null())
        said = "; ".join(
            f"{r['arm']} / {r['metric']} on day {r['first_stop_day']}" for r in stops.iter_rows(named=True)
        )
        lines.append(
            f"Sequential (mSPRT on arriving users' first {a.sequential_window} days, family-wise alpha {a.alpha:g} "
            f"over the primary metrics): " + (f"could have stopped: {said}" if said else "no stop before the end")
        )
    return lines


def _robustness_blocks(summary: dict) -> list:
    from persotool.kernels import render

    robust = summary.get("robustness")
    if not robust:
        return []

    def cell(value, fmt: str) -> str:
        return "n/a" if value is None or value != value else format(value, fmt)

    cells = [
        [
            r["arm"],
            r["metric"],
            cell(r["effect"], "+.3g"),
            f"{cell(r['ci'][0], '+.2g')},{cell(r['ci'][1], '+.2g')}",
            cell(r["sign_probability"], ".0%"),
            cell(r["power"], ".0%"),
            f"{cell(r['true_effect_range'][0], '+.2g')}..{cell(r['true_effect_range'][1], '+.2g')}",
            ("[green]robust[/green]" if r["robust"] else r["verdict"]),
        ]
        for r in robust["combined"]
        if r["family"] in ("primary", "guardrail")
    ]
    truths = ", ".join(f"{family} {count}" for family, count in robust.get("truth_counts", []))
    varied = ", ".join(f"{k} {lo:g}-{hi:g}" for k, (lo, hi) in robust.get("vary", {}).items()) or "nothing"
    return [
        render.Table(
            f"Robustness over {robust['worlds']} worlds (truths: {truths})",
            ["arm", "metric", "predicted", "95% predictive", "P(sign)", "power", "true range", "verdict"],
            cells,
            caption="Worlds differ in the logged users resampled, the visit model's parameters (posterior draws), "
            f"the truth family (drawn by held-out weight) and behaviour ({varied}). predicted: the mean true "
            "effect; 95% predictive: what one experiment of this size would estimate (true effects across "
            "worlds plus its assignment noise, counted once); P(sign): share of worlds whose true effect has "
            f"the predicted sign; robust when >= {robust['sign_probability']:.0%}; power: the experiment's "
            "chance to reject. Primary and guardrail metrics; all in robustness.csv.",
            left={"metric", "verdict"},
            compact=True,
        )
    ]


def _homogenization_block(summary: dict):
    from persotool.kernels import render

    cells = [
        [arm, f"{jaccard:.4f}", f"{coverage:.3f}", f"{gini:.3f}", days]
        for arm, jaccard, coverage, gini, days in homogenization_table(summary["homogenization"]).iter_rows()
    ]
    return render.Table(
        "Homogenization at the end of the test",
        ["arm", "Jaccard", "coverage", "Gini", "retrained on days"],
        cells,
        caption="Jaccard: mean over user pairs of consumed sets; coverage: share of items shown; Gini of exposure",
        left={"retrained on days"},
        compact=True,
    )
