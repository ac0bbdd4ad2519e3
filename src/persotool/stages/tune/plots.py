"""A study's plots: optimization history, parameter importances and, for two metrics, the Pareto
front (matplotlib, no plotly)."""

from pathlib import Path

PLOTS = ("history.png", "importances.png", "pareto.png")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_all(table, cfg, front, space, study, out: Path, atomic) -> list[str]:
    if table.is_empty():
        return []
    written = []
    metric = cfg.metrics[0]
    done = table.filter(table["state"] == "complete").sort("number")
    plt = _plt()
    if len(done):
        fig, ax = plt.subplots(figsize=(6.5, 4))
        values = done[metric].to_numpy()
        maximize = cfg.resolved_directions()[0] == "maximize"
        running = values.copy()
        for i in range(1, len(running)):
            running[i] = max(running[i], running[i - 1]) if maximize else min(running[i], running[i - 1])
        ax.scatter(done["number"], values, s=14, color="#3b6ea5", label="trial")
        ax.step(done["number"], running, where="post", color="#a53b3b", label="best so far")
        ax.set(xlabel="trial", ylabel=f"{metric} (validation)", title=f"{space.model}: optimization history")
        ax.legend(fontsize=8)
        fig.tight_layout()
        atomic(out / "history.png", lambda p: fig.savefig(p, dpi=110, format="png"))
        plt.close(fig)
        written.append("history.png")
    importances = _importances(study, len(done))
    if importances:
        fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(importances) + 1.2))
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names], color="#3b6ea5")
        ax.set(xlabel="importance (fANOVA)", title=f"What moves {metric}")
        fig.tight_layout()
        atomic(out / "importances.png", lambda p: fig.savefig(p, dpi=110, format="png"))
        plt.close(fig)
        written.append("importances.png")
    if len(cfg.metrics) == 2 and len(done):
        x, y = cfg.metrics
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.scatter(done[x], done[y], s=12, color="#999999", label="trial")
        on_front = sorted(front, key=lambda t: t.values[0])
        ax.plot(
            [t.values[0] for t in on_front],
            [t.values[1] for t in on_front],
            "o-",
            color="#a53b3b",
            label="Pareto front",
        )
        ax.set(xlabel=x, ylabel=y, title="Trade-off on the validation part")
        ax.legend(fontsize=8)
        fig.tight_layout()
        atomic(out / "pareto.png", lambda p: fig.savefig(p, dpi=110, format="png"))
        plt.close(fig)
        written.append("pareto.png")
    return written


def _importances(study, complete: int) -> dict[str, float]:
    if complete < 4:
        return {}
    import optuna

    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        return optuna.importance.get_param_importances(study, evaluator=evaluator, target=lambda t: t.values[0])
    except (ValueError, RuntimeError, ImportError):
        return {}
