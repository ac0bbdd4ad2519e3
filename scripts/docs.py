"""The documents' result tables, generated from the outputs they report, so they cannot drift.

Two sources:
- `make demo`'s outputs. `snapshot` writes each demo step's tables, as its command draws them
  (`result.to_markdown()`), to `docs/demo/<step>.md`; timings, which change from run to run, are
  left out. Those files are committed: they are the demo's results.
- the benchmarks' figures, `benchmarks/results/<name>.json` (written by `make bench`).

A document names what it shows in a marked block, filled by `fill`:

    <!-- include demo/benchmark.md part=2 -->     the 2nd part (table or line) of docs/demo/benchmark.md
    ...                                           (`part=1-3`: a range; no part: the whole file)
    <!-- end include -->

    <!-- bench evaluate -->                       the table of benchmarks/results/evaluate.json
    ...
    <!-- end bench -->

Commands:
    python scripts/docs.py snapshot [DEMO_DIR]    docs/demo/ from make demo's outputs, then fill
    python scripts/docs.py fill                   rewrite every marked block of README.md and docs/*.md
    python scripts/docs.py check [--demo DIR]     exit 1 naming each block that differs from its source;
                                                  with --demo, also each docs/demo/ file that differs
                                                  from what make demo wrote there (`make docs-check`)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
DEMO_DOCS = DOCS / "demo"
RESULTS = REPO / "benchmarks" / "results"

# make demo's steps: (file in docs/demo, output directory under the demo directory, the command)
DEMO_STEPS = [
    ("dataset", "movielens", "persotool datasets info build/demo/movielens"),
    ("split", "split", "persotool split build/demo/movielens --strategy leave-last --leave-last 10 --valid ..."),
    ("tune-ease", "tune-ease", "persotool tune build/demo/split --space ease --trials 12"),
    ("benchmark", "benchmark", "persotool benchmark build/demo/split --config benchmark --add ease-tuned=..."),
    ("world", "world", "persotool calibrate build/demo/movielens"),
    ("backtest", "backtest", "persotool backtest build/demo/movielens --cutoff 0.8"),
    (
        "feedback-loop",
        "feedback-loop",
        "persotool simulate build/demo/movielens --config demo/simulation-feedback.toml",
    ),
    ("ab-test", "ab-test", "persotool simulate build/demo/movielens --config demo/simulation.toml"),
]

BLOCK = re.compile(r"(<!-- (include|bench) (\S+)(?: ([^>]*?))? -->\n)(.*?)(<!-- end \2 -->)", re.S)
TIMING = re.compile(r"(^| )(fit s|seconds|duration|elapsed|time s)( |$)", re.I)


# ---------------------------------------------------------------- make demo's outputs


def demo_markdown(demo: Path) -> dict[str, str]:
    """Each demo step's tables as its command draws them, timings left out."""
    import persotool as pt
    from persotool.kernels import render

    pages = {}
    for name, folder, command in DEMO_STEPS:
        result = pt.open_result(demo / folder)
        if name == "dataset":
            from persotool.stages.ingest.info import DatasetInfo

            view = DatasetInfo(result.path)
        else:
            view = result
        blocks = [_untimed(block) for block in view.blocks()]
        notes = [f"note: {note}" for note in view.notes()]
        body = render.to_markdown(blocks + notes)
        body = body.replace(str(demo.resolve()), "build/demo").replace(str(demo), "build/demo")
        header = f"<!-- written by scripts/docs.py snapshot from make demo's {folder}/: do not edit -->\n"
        pages[name] = f"{header}`{command}`\n\n{body}"
    return pages


def _untimed(block):
    """A block without the cells that time the run or name its MLflow run (they differ between two
    identical runs)."""
    from dataclasses import replace

    from persotool.kernels.render import Table

    if not isinstance(block, Table):
        return block
    keep = [i for i, column in enumerate(block.columns) if not TIMING.search(_plain(column))]
    rows = [
        [row[i] for i in keep]
        for row in block.rows
        if not TIMING.search(_plain(row[0])) and not _plain(row[0]).startswith("mlflow")  # per run, or untracked
    ]
    return replace(block, columns=[block.columns[i] for i in keep], rows=rows)


def _plain(text: str) -> str:
    from persotool.kernels.render import plain

    return plain(text).replace("\n", " ").strip()


def snapshot(demo: Path) -> None:
    DEMO_DOCS.mkdir(parents=True, exist_ok=True)
    for name, text in demo_markdown(demo).items():
        (DEMO_DOCS / f"{name}.md").write_text(text)


def demo_part(name: str, spec: str | None) -> str:
    """Part(s) of a docs/demo page: its blocks are separated by blank lines after the command line."""
    path = DEMO_DOCS / name
    if not path.is_file():
        raise SystemExit(f"docs: {path.relative_to(REPO)} is missing: run make demo, then make docs")
    parts = _parts(path.read_text())
    if not spec:
        return "\n\n".join(parts) + "\n"
    match = re.fullmatch(r"part=(\d+)(?:-(\d+))?", spec.strip())
    if not match:
        raise SystemExit(f"docs: {spec!r} in an include of {name}: expected part=N or part=N-M")
    first, last = int(match[1]), int(match[2] or match[1])
    if not 1 <= first <= last <= len(parts):
        raise SystemExit(f"docs: {name} has {len(parts)} parts; an include asks for {first}-{last}")
    return "\n\n".join(parts[first - 1 : last]) + "\n"


def _parts(text: str) -> list[str]:
    """The blocks of a page, after its header comment and command line: a table with its title and
    caption is one part, a line of text another."""
    lines = text.split("\n")[3:]
    parts, current = [], []
    for line in lines:
        if line.startswith("**") and current:  # a table's title starts a new part
            parts.append("\n".join(current).strip())
            current = []
        if not line.strip() and current and not current[-1].startswith("|") and not current[-1].startswith("**"):
            parts.append("\n".join(current).strip())
            current = []
            continue
        current.append(line)
    if "\n".join(current).strip():
        parts.append("\n".join(current).strip())
    return [part for part in parts if part]


# ---------------------------------------------------------------- the benchmarks' figures


def _table(columns: list[str], rows: list[list], note: str = "") -> str:
    def numeric(i: int) -> bool:
        cells = [str(row[i]).strip("*+- ") for row in rows if str(row[i]).strip()]
        return bool(cells) and all(cell[:1].isdigit() for cell in cells)

    align = [":---"] + ["---:" if numeric(i) else ":---" for i in range(1, len(columns))]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + (f"\n\n{note}" if note else "") + "\n"


def _s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds // 60:.0f} min {seconds % 60:.0f} s"


def _machine(report: dict) -> str:
    m = report.get("machine")
    return f"Python {m['python']}, {m['cpus']} cores" if m else "not recorded in the results file"


def bench_ingest(r: dict) -> str:
    out = []
    names = {
        "polars_floor": "polars read_csv + write_parquet (floor)",
        "persotool": "persotool ingest",
        "pandas": "pandas read_csv + drop_duplicates + to_parquet",
    }
    for log, label in (("epoch_ms", "epoch-ms log"), ("iso", "ISO-8601 log")):
        if log not in r:
            continue
        part = r[log]
        rows = []
        for key, name in names.items():
            v = part["variants"].get(key)
            if v is None:
                continue
            runs = ", ".join(f"{s:.1f}" for s in v.get("all_seconds", []))
            rows.append(
                [
                    name,
                    _s(v["seconds"]),
                    f"{part['rows'] / v['seconds'] / 1e6:.2f} M",
                    f"{v['peak_rss_mb'] / 1024:.1f} GiB",
                    runs,
                ]
            )
        size = f"{part['csv_bytes'] / 1e6:,.0f} MB"
        out.append(_table([f"{label}, {part['rows']:,} rows, {size}", "time", "rows/s", "peak RSS", "runs (s)"], rows))
        targets = r["targets"]
        out.append(
            f"persotool / floor = **{part['ratio_to_floor']:.2f}x** (target <= {targets['ratio_to_floor_max']:g}x); "
            f"persotool is **{part['speedup_vs_pandas']:.2f}x** faster than pandas (target >= "
            f"{targets['speedup_vs_pandas_min']:g}x); peak RSS target <= {targets['peak_rss_mb_max'] / 1024:g} GiB: "
            f"{'met' if part['meets_targets'] else 'missed'}.\n"
        )
    return "\n".join(out) + f"\nMachine: {_machine(r)}; median of {r.get('repeat', '?')} runs each.\n"


def bench_evaluate(r: dict) -> str:
    rows = [
        ["persotool evaluate (6 metrics@10 + AUC)", _s(r["seconds"]), "", ""],
        [
            "numpy matmul + argpartition (floor)",
            _s(r["floor_seconds"]),
            f"persotool / floor = **{r['ratio_to_floor']:.2f}x**",
            "<= 2x: " + ("met" if r["ratio_to_floor"] <= 2 else "missed"),
        ],
        [
            "lightfm.evaluation (precision, recall, AUC)",
            _s(r["lightfm_seconds"]),
            f"persotool is **{r['speedup_vs_lightfm']:.1f}x faster**",
            ">= 5x: " + ("met" if r["speedup_vs_lightfm"] >= 5 else "missed"),
        ],
        [f"LightFM training, {r['fit_epochs']} epochs, bare `LightFM.fit`", _s(r["bare_fit_seconds"]), "", ""],
        [
            "the same through persotool (`train`'s model)",
            _s(r["fit_seconds"]),
            f"overhead **{r['fit_overhead']:+.1%}**",
            "within 5%: " + ("met" if r["fit_overhead"] <= 0.05 else "missed"),
        ],
    ]
    note = (
        f"{r['users']:,} users x {r['items']:,} items, {r['train_interactions']:,} training and "
        f"{r['test_interactions']:,} test interactions, {r['components']}-factor LightFM-WARP, "
        f"{r['threads']} thread."
    )
    return _table(["latest run", "time", "ratio", "target"], rows, note)


def bench_simulate(r: dict) -> str:
    rows = [
        [
            "day loop",
            _s(r["day_loop_seconds"]),
            f"**{r['user_days_per_second'] / 1e6:.2f} M** user-days/s",
            ">= 1 M: " + ("met" if r["user_days_per_second"] >= 1e6 else "missed"),
        ],
        ["building the world", _s(r["world_seconds"]), "", ""],
        ["every arm's candidate lists", _s(r["candidates_seconds"]), "", ""],
        ["end to end", _s(r["total_seconds"]), f"{r['user_days_per_second_end_to_end'] / 1e6:.2f} M user-days/s", ""],
    ]
    note = f"{r['users']:,} users x {r['days']} days x {r['arms']} arms = {r['user_days']:,} user-days; {_machine(r)}."
    return _table(["phase", "time", "rate", "target"], rows, note)


def bench_backtest(r: dict) -> str:
    rows = [
        ["calibrate the bundled MovieLens log", _s(r["calibrate_movielens_seconds"]), r["target"]["calibrate_seconds"]]
    ]
    out = []
    for key, label in (("backtest_movielens", "MovieLens (bundled)"), ("backtest_synthetic", "synthetic log")):
        part = r[key]
        phases = part["seconds"]
        split = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items() if name != "total")
        rows.append([f"back-test, {label} ({split})", _s(phases["total"]), ""])
        columns = [
            "real",
            "simulated",
            "model (closed form)",
            "model (best mixing)",
            "persistence",
            "historical rate",
            "recency + frequency",
        ]
        table = [
            [
                name,
                *(_g(q.get(c)) for c in columns),
                _g(q.get("noise")),
                q.get("verdict", "") + (f" vs {q['best_naive']}" if q.get("best_naive") else ""),
            ]
            for name, q in part["quantities"].items()
        ]
        window = part["window"]
        verdict = part["verdict"]
        note = (
            f"Calibrated {window['start'][:10]} to {window['until'][:10]}, {window['held_out_days']:,} days held out; "
            f"{verdict['returning_users']:,} of {verdict['known_users']:,} known users returned. "
            + " ".join(part.get("notes", []))
        ).strip()
        out.append(_table([f"{label}: quantity", *columns, "noise ±", "verdict"], table, note))
    head = _table(["run", "time", "target"], rows, f"Machine: {_machine(r)}.")
    return [head, *out, _across(r.get("across", []))]  # part=1: timings; 2: MovieLens; 3: synthetic; 4: across


def _across(rows: list[dict]) -> str:
    """The back-tests across logs and cutoffs: aggregates against the logs, who returns, the truth."""

    def off(pair: dict) -> str:
        real, sim = pair["real"], pair["simulated"]
        return f"{real:.3f} / {sim:.3f} ({(sim - real) / real:+.0%})" if real else "n/a"

    table = []
    for row in rows:
        weights = row["truth_weights"] or {}
        link = row["return_link"].get("before the cutoff", ["", None])
        few = f"too few held-out users ({row['truth_users']})"
        table.append(
            [
                row["log"],
                f"{row['cutoff']:g}",
                off(row["returning_share"]),
                off(row["active_days"]),
                f"{row['auc']['simulated']:.3f} / {row['auc']['recency + frequency']:.3f} ({row['auc_verdict']})",
                ", ".join(f"{f} {w:.2f}" for f, w in weights.items() if w >= 0.005) or "n/a",
                f"{row['best_family']} +{row['best_family_gain']:.3f}" if row["best_family"] else few,
                f"{row['popularity_auc']:.3f} / {row['best_family_auc']:.3f}" if row["best_family"] else few,
                link[0] + (f" ({link[1]:+.2f})" if link[1] is not None else ""),
            ]
        )
    return _table(
        [
            "log",
            "cutoff",
            "returning share: logs / sim",
            "active days: logs / sim",
            "AUC returning: sim / rec+freq",
            "auto truth weights",
            "best family (nats)",
            "AUC held-out items: popularity / best",
            "return link",
        ],
        table,
        "within 25% is the target for the aggregates; nats: log-likelihood gain per held-out engagement over "
        "popularity; return link: log-odds of returning within 30 days per rating point, before the cutoff",
    )


def _g(value) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"


def bench_robustness(r: dict) -> list[str]:
    rows = [
        ["one world (the baseline)", _s(r["single_world_seconds"]), ""],
        [
            f"{r['worlds']} worlds, {r['workers']} workers",
            _s(r["worlds_seconds"]),
            f"{r['ratio_to_single_world']:.1f}x one world (ideal {r['ideal_ratio']:.0f}x)",
        ],
        ["each extra world", _s(r["seconds_per_extra_world"]), ""],
    ]
    times = _table(
        ["run", "wall time", "ratio"],
        rows,
        f"Target: {r['target']['worlds_seconds']}{'' if isinstance(r['target']['worlds_seconds'], str) else ' s'}. "
        f"Machine: {_machine(r)}.",
    )
    verdicts = []
    for key in sorted(k for k in r if isinstance(r[k], dict) and "per_world" in r[k]):
        v = r[key]
        low, high = v["ci"]
        true_low, true_high = v["true_effect_range"]
        rows = [
            [
                "all",
                len(v["per_world"]),
                f"{v['effect']:+.2f} [{low:+.2f}, {high:+.2f}]",
                f"{v['sign_probability']:.0%}",
                f"{v['power']:.0%}",
                f"{true_low:+.2f} to {true_high:+.2f}",
                v["verdict"],
            ]
        ]
        for truth in sorted({w["truth"] for w in v["per_world"]}):
            worlds = [w for w in v["per_world"] if w["truth"] == truth]
            effects = [w["effect"] for w in worlds]
            truths = [w["true_effect"] for w in worlds]
            rows.append(
                [
                    f"{truth} truth",
                    len(worlds),
                    f"{min(effects):+.2f} to {max(effects):+.2f}",
                    "",
                    "",
                    f"{min(truths):+.2f} to {max(truths):+.2f}",
                    "",
                ]
            )
        verdicts.append(
            _table(
                [
                    f"{v['arm']}: {v['metric']} ({v['family']})",
                    "worlds",
                    "predicted [95% predictive], or estimates",
                    "P(sign)",
                    "power",
                    "true effect",
                    "verdict",
                ],
                rows,
            )
        )
    return [times, *verdicts]  # part=1: timings; then one verdict table per reported metric


def bench_tune(r: dict) -> str:
    names = {
        "bare_optuna_in_memory": "bare Optuna loop, in-memory storage",
        "persotool_journal": "`pt.tune`, journal file",
        "persotool_sqlite_rdb": "`pt.tune`, sqlite RDB",
    }
    rows = []
    for key, name in names.items():
        v = r["variants"][key]
        extra = v.get("extra_overhead_vs_bare")
        rows.append(
            [
                name,
                _s(v["wall_seconds"]),
                f"{v['overhead_seconds']:.2f} s",
                v["trials_per_hour"],
                "" if extra is None else f"{extra:+.1%}",
            ]
        )
    note = (
        f"{r['trials']} {r['model']} trials on the demo split; target: persotool adds under 5%. Machine: {_machine(r)}."
    )
    return _table(["variant", "wall", "outside the trials", "trials/hour", "added vs bare"], rows, note)


def bench_cli_help(r: dict) -> str:
    medians = r["median_seconds"]
    rows = [[f"`{name}`", f"{seconds:.3f} s"] for name, seconds in medians.items()]
    base = r["baselines_median_seconds"]
    rows += [
        ["a two-command Typer app with rich panels (baseline)", f"{base['default_typer_app_help']:.3f} s"],
        ["bare `python -c pass`", f"{base['python_start']:.3f} s"],
    ]
    worst = max(medians.values())
    note = (
        f"Slowest persotool help: {worst:.3f} s = {worst / base['default_typer_app_help']:.2f}x the Typer baseline "
        f"(target 0.3 s: {'met' if worst <= 0.3 else 'missed'}); median of {r['repeat']} fresh processes. "
        f"Machine: {_machine(r)}."
    )
    return _table(["command", "median"], rows, note)


def bench_tracking(r: dict) -> str:
    rows = []
    for command, part in r["commands"].items():
        m = part["median_seconds"]
        rows.append([f"`{command}`", f"{m['untracked']:.2f} s", f"{m['recorder']:.2f} s", f"{m['inline']:.2f} s"])
    note = f"Median of {r['repeat']}. Machine: {_machine(r)}."
    return _table(["command", "untracked", "recorder", "inline"], rows, note)


def bench_validate_simulation(r: dict) -> str:
    rows = []
    tolerance = f"5% +- {r['aa_tolerance']:.1%}"
    for key, label in (
        ("aa_two_equal_arms", "A/A, two equal arms"),
        ("aa_three_arms_20_30_50", "A/A, three arms 20/30/50%"),
    ):
        part = r[key]
        rates = list(part["false_positive_rate"].values())
        rows.append(
            [
                label,
                f"{r['replicates']:,}",
                f"every p-value's false-positive rate {min(rates):.1%} to {max(rates):.1%}",
                tolerance,
                "pass" if part["pass"] else "FAIL",
            ]
        )
        rows.append(
            [
                f"{label}: Holm primary family",
                f"{r['replicates']:,}",
                f"{part['primary_family_holm_rate']:.1%}",
                tolerance,
                "",
            ]
        )
        if "balance_warning_rate" in part:
            rows.append(
                [
                    f"{label}: pre-period balance warnings",
                    f"{r['replicates']:,}",
                    f"{part['balance_warning_rate']:.1%}",
                    "<= 5%",
                    "",
                ]
            )
        rows.append(
            [
                f"{label}: sequential test stops",
                f"{r['replicates']:,}",
                f"{part['sequential_primary_family_rate']:.1%} over the primary family",
                "<= 5%",
                "pass" if part["sequential_pass"] else "FAIL",
            ]
        )
    for key, label in (
        ("ab_coverage_triggered", "A/B, users entering at first visit"),
        ("ab_coverage_itt", "A/B, intention to treat"),
    ):
        cover = list(r[key].values())
        rows.append(
            [
                label,
                f"{r['ab_replicates']:,}",
                f"95% intervals cover the exact true effect in {min(cover):.1%} to {max(cover):.1%}",
                "about 95%",
                "pass" if r["ab_pass"] else "FAIL",
            ]
        )
    for part in r.get("aa_by_size", []):
        rates = part["false_positive_rate"]
        outside = part["outside_band"]
        worst = ", ".join(f"{k} {v:.1%}" for k, v in sorted(outside.items())) or "none"
        rows.append(
            [
                f"A/A by size, {part['enrolled']:,.0f} enrolled",
                f"{part['replicates']:,}",
                f"{len(rates)} p-values, rates {min(rates.values()):.1%} to {max(rates.values()):.1%}; "
                f"outside the 99% band: {worst}",
                f"5% +- {part['band_99']:.1%}",
                "",
            ]
        )
    for part in r.get("sequential_power", []):
        strong = part["stop_rate_where_fixed_p_below_0.001"]
        strong = "n/a" if strong is None else f"{strong:.0%}"
        day = "n/a" if part["median_stop_day"] is None else f"{part['median_stop_day']:.0f}"
        result = (
            f"stops in {part['sequential_stop_rate']:.0%} (fixed horizon rejects in "
            f"{part['fixed_horizon_power']:.0%}); "
            f"where the fixed-horizon p < 0.001 ({part['fixed_p_below_0.001']} runs): {strong}; median stop day {day}"
        )
        enrolled = f"A/B random against popular, {part['enrolled']:,.0f} enrolled: sequential test"
        rows.append([enrolled, f"{r.get('power_replicates', 200):,}", result, "most (> 50%)", ""])
    null = r.get("robustness_null")
    if null:
        rates, cover = null["null_robust_rate"], null["predictive_coverage"]
        label = f"robustness, {null['worlds_per_replicate']} worlds of a {null['population']:,}-user synthetic log"
        count = f"{null['replicates']:,} of a pool of {null['pool']}"
        rows.append(
            [
                f"{label}: null effect (two random arms) called robust",
                count,
                f"{min(rates.values()):.1%} to {max(rates.values()):.1%} over {len(rates)} metrics",
                "<= 10%",
                "pass" if null["null_pass"] else "FAIL",
            ]
        )
        oracle = null["oracle_robust_rate"].get("oracle:engagements")
        rows.append([f"{label}: oracle's engagement effect called robust", count, f"{oracle:.0%}", "most", ""])
        rows.append(
            [
                f"{label}: 95% predictive interval covers a fresh world's experiment",
                count,
                f"{min(cover.values()):.1%} to {max(cover.values()):.1%} over {len(cover)} (arm, metric)",
                "about 95%",
                "",
            ]
        )
    harm = r.get("planted_harm")
    if harm:
        power = harm["power"]
        rows.append(
            [
                f"planted harm: an arm serving each user's least liked items, {harm['population']:,} users",
                f"{harm['replicates']:,}",
                f"caught by churned in {power['churned']:.0%}, retention_d7 {power['retention_d7']:.0%}, "
                f"visits {power['visits']:.0%}, engagements {power['engagements']:.0%} (true engagement effect "
                f"{harm['true_effect']['engagements']:+.2f}, churned {harm['true_effect']['churned']:+.3f})",
                ">= 80% by a retention guardrail",
                "pass" if harm["pass"] else "FAIL",
            ]
        )
    note = (
        f"A world of {r['population']:,} users fitted to the bundled MovieLens log, {r['days']} days, alpha "
        f"{r['alpha']}; {_s(r['seconds'])}. Machine: {_machine(r)}."
    )
    return _table(["check", "assignments", "result", "tolerance", ""], rows, note)


def bench_ope(r: dict) -> str:
    s = r["seconds"]
    rows = [
        ["generate the log and write the target's action_dist.npy", _s(s["generate"]), ""],
        ["reward model (strength on a 200,000 sample, one cross-fit over all)", _s(s["reward_model"]), ""],
        [
            "seven estimators with intervals and diagnostics (persotool)",
            _s(s["estimators"]),
            f"{r['ratio_to_baseline']:.2f}x the baseline",
        ],
        [
            "the same seven, OBP's formulas in plain numpy on in-memory arrays (baseline)",
            _s(s["baseline_estimators"]),
            "",
        ],
        ["  the baseline's arrays loaded (the full prediction array built)", _s(s["baseline_load"]), ""],
        ["bootstrap, per resample", f"{s['bootstrap_per_resample']:.2f} s", ""],
    ]
    worst = max(r["agreement"].values())
    note = (
        f"{r['impressions']:,} impressions, {r['items']} items, {r['positions']} positions, one target (ESS "
        f"{r['ess']:,.0f}); persotool and the baseline agree to {worst:.1e}; peak RSS {r['peak_rss_gib']:.1f} GiB. "
        f"Target: reward model + estimators under {r['target']['estimators_seconds']} s at "
        f"{r['target']['at']:,} impressions: {'met' if r['met'] else 'missed'}. Machine: {_machine(r)}."
    )
    return _table(["step", "time", "ratio"], rows, note)


def bench_validate_ope(r: dict) -> list[str]:
    """part=1: the known-truth replicates; part=2: the Open Bandit Dataset's real A/B test."""
    truth = r["known_truth"]
    rows = []
    for target, t in truth["targets"].items():
        for name, e in t["estimators"].items():
            rows.append(
                [
                    f"{target} (value {t['value']:.4f}, ESS {t['ess']:,.0f})" if name == "IPS" else "",
                    name,
                    f"{e['bias']:+.4f} ± {e['bias_mc_se']:.4f}",
                    f"{e['rmse']:.4f}",
                    f"{e['coverage']:.1%}",
                    f"{e['width']:.4f}",
                ]
            )
    first = _table(
        ["target", "estimator", "bias ± MC s.e.", "RMSE", "95% coverage", "mean width"],
        rows,
        f"{truth['replicates']:,} seeded logs of {truth['impressions']:,} impressions each (8 items, 2 positions); "
        f"the logger's own value is {next(iter(truth['targets'].values()))['logger_value']:.4f}. "
        f"Machine: {_machine(r)}; {_s(r['seconds'])} with the real A/B below.",
    )
    ab = r["real_ab"]
    rows = []
    for direction, d in ab["directions"].items():
        for name, e in d["estimators"].items():
            label = (
                f"{direction}: on-policy {d['on_policy']:.4f} ± {d['on_policy_se']:.4f}, "
                f"ESS {d['diagnostics']['ess']:,.0f}"
                if name == "IPS"
                else ""
            )
            obp = ab["obp_figures"].get(name) if direction.startswith("bts") else None
            rows.append(
                [
                    label,
                    name
                    + (
                        f" ({'tau' if name == 'Switch-DR' else 'lambda'} {e['hyperparameter']})"
                        if name in ("Switch-DR", "DRos") and e["hyperparameter"] is not None
                        else ""
                    )
                    + (" (SLOPE)" if name == d["slope"] else ""),
                    f"{e['value']:.4f} [{e['low']:.4f}, {e['high']:.4f}]",
                    "yes" if e["covers"] else "no",
                    f"{e['relative_error']:.3f}",
                    f"{e['mean_relative_error_resampled']:.3f}",
                    f"{obp:.3f}" if obp is not None else "",
                ]
            )
    second = _table(
        ["direction", "estimator", "estimate [95% CI]", "covers", "rel. error", "mean rel. error, resampled", "OBP"],
        rows,
        f"Open Bandit Dataset sample, `all` campaign (10,000 impressions per policy); relative errors against the "
        f"other log's on-policy CTR; resampled: mean over {ab['resamples']} bootstrap resamples of the log, "
        "the reward model refitted on each, as OBP's benchmark reports (its figures in the last column). "
        f"Reward model held-out log loss against the base rate's: "
        + "; ".join(
            f"{k} {d['reward_model']['held_out']:.5f} vs {d['reward_model']['base_rate']:.5f}"
            for k, d in ab["directions"].items()
        )
        + ".",
    )
    return [first, second]


def bench_loop_ope(r: dict) -> list[str]:
    """part=1: one arm estimated from the other's simulated log, against the simulator's exact
    value; part=2: coverage by the effective number of rewards, over the grid of worlds."""
    rows = []
    for pair, t in r["pairs"].items():
        for name, e in t["estimators"].items():
            rows.append(
                [
                    f"{pair}: value {t['value']:.4f}, own run {t['own_run']:.4f}, ESS {t['ess']:,.0f}, "
                    f"effective rewards {t['effective_rewards']:,.0f}"
                    if name == "IPS"
                    else "",
                    name,
                    f"{e['bias']:+.4f} ± {e['bias_mc_se']:.4f}",
                    f"{e['rmse']:.4f}",
                    f"{e['coverage']:.1%}",
                    f"{e['coverage_normal']:.1%}",
                    f"{e['covers_own_run']:.1%}",
                    f"{e['width']:.4f}",
                ]
            )
    first = _table(
        [
            "target from logger",
            "estimator",
            "bias ± MC s.e.",
            "RMSE",
            "covers the value",
            "normal interval",
            "covers own run",
            "width",
        ],
        rows,
        f"{r['seeds']} seeds of one world ({r['items']} items, slates of {r['slate_size']}, {r['days']} days, "
        f"{r['population']:,} simulated users, base click rate {r['base_engagement']}, epsilon {r['epsilon']}); "
        f"value: the target's exact value per impression on the logger's visits (covered by the default interval, "
        "and by a symmetric normal one); own run: its realised value in its own arm, covered by the default "
        f"interval. Machine: {_machine(r)}; {_s(r['seconds'])} with the grid below.",
    )
    g = r["grid"]
    names = list(g["bins"][0]["coverage"])
    rows = [
        [
            f"{b['low']:g}-{b['high']:g}" if b["high"] is not None else f"{b['low']:g} or more",
            f"{b['estimates']:,}",
            f"{b['ess'][0]:,.0f}-{b['ess'][1]:,.0f}" if b["ess"] else "",
            *(f"{b['coverage'][n]:.1%}" if b["coverage"][n] is not None else "" for n in names),
        ]
        for b in g["bins"]
    ]
    second = _table(
        ["effective rewards", "estimates", "ESS", *names],
        rows,
        f"Coverage of the exact value by 95% intervals, binned by ESS x the click rate; worlds with base click rates "
        f"{', '.join(map(str, g['bases']))} and epsilon {', '.join(map(str, g['epsilons']))}, {g['seeds']} seeds "
        "each, both directions.",
    )
    return [first, second]


def bench_obp_reference(r: dict) -> str:
    rows = [
        [name, f"{e['persotool']:.15f}", f"{e['obp']:.15f}", f"{e['difference']:.1e}"]
        for name, e in r["estimators"].items()
    ]
    rows.append(["time (best of 3)", _s(r["seconds"]["persotool"]), _s(r["seconds"]["obp"]), ""])
    note = (
        f"{r['impressions']:,} impressions, {r['items']} items, {r['positions']} positions, the same arrays on both "
        f"sides; OBP {r['obp']} in its own virtualenv. persotool's time is all seven estimators with their "
        f"intervals and threshold tuning (tuned: tau {r['thresholds']['Switch-DR']:g}, lambda "
        f"{r['thresholds']['DRos']:g}); OBP's is its six point estimates with the thresholds given: OBP takes "
        f"{r['ratio_obp_to_persotool']:.1f}x persotool's time. Machine: {_machine(r)}."
    )
    return _table(["estimator", "persotool", "OBP", "difference"], rows, note)


def bench_validate_segments(r: dict) -> str:
    margin = 1.96 * (r["alpha"] * (1 - r["alpha"]) / r["replicates"]) ** 0.5  # Monte Carlo error at 95%
    rows = [
        [
            f"planted harm in {r['segment']} ({r['segment_share']:.0%} of users; true effect "
            f"{r['true_effect']:+.2f} engagements, {r['true_effect_sd']:+.2f} sd)",
            "significant and negative",
            f"{r['found']:.1%}",
            ">= 90%",
        ],
        ["", "differs from the rest", f"{r['differential']:.1%}", ">= 90%"],
        [
            f"A/A, {r['aa_tests_per_replicate']} segment tests per experiment",
            "any segment significant",
            f"{r['aa_significant']:.1%}",
            f"<= {r['alpha']:.0%} +- {margin:.1%}",
        ],
        [
            "",
            "any segment differs from the rest",
            f"{r['aa_differential']:.1%}",
            f"<= {r['alpha']:.0%} +- {margin:.1%}",
        ],
    ]
    others = ", ".join(f"{e:+.2f}" for e in r["other_segments_true_effects"])
    note = (
        f"{r['replicates']} assignments of {r['population']:,} simulated users; segments: activity in five quantile "
        f"bins, Holm over every segment, metric and arm. The other segments' true engagement effects: {others} "
        f"(helped). Machine: {_machine(r)}; {_s(r['seconds'])}."
    )
    return _table(["check", "flag", "rate", "target"], rows, note)


BENCHES: dict[str, Callable[[dict], str]] = {
    name.removeprefix("bench_"): fn for name, fn in globals().items() if name.startswith("bench_") and callable(fn)
}


def bench_part(name: str, spec: str | None = None) -> str:
    path = RESULTS / f"{name}.json"
    if name not in BENCHES:
        raise SystemExit(f"docs: no table is defined for benchmark {name!r} (known: {', '.join(sorted(BENCHES))})")
    if not path.is_file():
        raise SystemExit(f"docs: {path.relative_to(REPO)} is missing: run make bench")
    try:
        rendered = BENCHES[name](json.loads(path.read_text()))
    except KeyError as error:
        raise SystemExit(f"docs: {path.relative_to(REPO)} has no field {error}: rerun its benchmark") from None
    parts = [rendered] if isinstance(rendered, str) else rendered
    if not spec:
        return "\n".join(parts)
    match = re.fullmatch(r"part=(\d+)", spec.strip())
    if not match or not 1 <= int(match[1]) <= len(parts):
        raise SystemExit(f"docs: {spec!r} in a bench block of {name}: it has parts 1 to {len(parts)}")
    return parts[int(match[1]) - 1]


# ---------------------------------------------------------------- the documents


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def filled(text: str) -> str:
    def one(match: re.Match) -> str:
        kind, name, spec = match[2], match[3], match[4]
        body = demo_part(name.removeprefix("demo/"), spec) if kind == "include" else bench_part(name, spec)
        return f"{match[1]}{body}{match[6]}"

    return BLOCK.sub(one, text)


def fill() -> None:
    for path in documents():
        text = path.read_text()
        new = filled(text)
        if new != text:
            path.write_text(new)
            print(f"updated {path.relative_to(REPO)}")


def check(demo: Path | None) -> int:
    problems = []
    if demo is not None:
        for name, text in demo_markdown(demo).items():
            page = DEMO_DOCS / f"{name}.md"
            if not page.is_file() or page.read_text() != text:
                problems.append(f"docs/demo/{name}.md differs from make demo's {demo}: run make docs")
    for path in documents():
        text = path.read_text()
        for block in BLOCK.finditer(text):
            expected = filled(block[0])
            if expected != block[0]:
                line = text[: block.start()].count("\n") + 1
                problems.append(
                    f"{path.relative_to(REPO)}:{line}: the {block[2]} of {block[3]} differs from its source"
                )
    problems += broken_links()
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("the documents match make demo's outputs and the benchmarks' results")
    return 1 if problems else 0


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def broken_links() -> list[str]:
    """Relative links of the documents whose file or heading does not exist."""
    problems = []
    for path in documents():
        for match in LINK.finditer(path.read_text()):
            target = match[1]
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            goal = (path.parent / file).resolve() if file else path
            if not goal.exists():
                problems.append(f"{path.relative_to(REPO)}: a link to {target}, which does not exist")
            elif anchor and goal.suffix == ".md" and anchor not in _anchors(goal):
                problems.append(f"{path.relative_to(REPO)}: a link to {target}, a heading {goal.name} does not have")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    snap = sub.add_parser("snapshot")
    snap.add_argument("demo", nargs="?", type=Path, default=REPO / "build" / "demo")
    sub.add_parser("fill")
    chk = sub.add_parser("check")
    chk.add_argument("--demo", type=Path)
    args = parser.parse_args(argv)
    if args.command == "snapshot":
        snapshot(args.demo)
        fill()
        return 0
    if args.command == "fill":
        fill()
        return 0
    return check(args.demo)


if __name__ == "__main__":
    sys.exit(main())
