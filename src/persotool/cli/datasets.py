"""`persotool datasets`: synthetic logs with known ground truth, and dataset summaries."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Make synthetic logs and inspect datasets.")
