"""`persotool calibrate`: fit the simulator's user model on the logs into a world directory."""

from persotool.cli.stage import Source, Spec

EXAMPLES = """
[bold]Examples[/bold]

  persotool calibrate build/movielens -o build/world

  persotool calibrate build/movielens --until 2014-01-01 -o build/world-2013
  # then in the simulation config:  [world] source = "build/world-2013"
"""

SPEC = Spec(
    name="calibrate",
    summary="Fit the simulator's user model on the logs: each user's chance of an active day, of going "
    "dormant and of coming back, with Beta heterogeneity, by likelihood. Writes a world directory "
    "(parameters, their uncertainty, fit diagnostics, the window) that `simulate` loads.",
    examples=EXAMPLES,
    source=Source("A dataset directory from `persotool ingest`."),
    after='Written to {out}. Use it with \\[world] source = "{out}" in a simulation config.',
)
