"""`persotool datasets synth`: a synthetic interaction log with known ground truth."""

from persotool.cli.stage import Spec, register

EXAMPLES = """
[bold]Examples[/bold]

  persotool datasets synth -o build/synth --users 5000 --items 2000 --events 500000 --seed 7

  persotool ingest build/synth/events.csv --schema build/synth/schema.toml -o build/synth-ds
"""

SPEC = Spec(
    name="synth",
    summary="Write a synthetic interaction log with known ground truth (deterministic by --seed).",
    examples=EXAMPLES,
    flags={
        "churn_hazard_mean": "--churn",
        "opted_out_share": "--opted-out",
        "dirty_share": "--dirty",
    },
)


def register_command(app) -> None:
    from persotool.cli.datasets import group

    register(app, SPEC, parent=group(app), command_name="synth")
