"""The simulate stage's config (a TOML file; `simulation` is the shipped default): the world, user
behaviour, arms, analysis, feedback loop and robustness. The model lives with the simulation
kernel, which every stage that simulates (calibrate, backtest, simulate) shares; this is its home
for the command and the API."""

from persotool.kernels.simulation.spec import SimulationConfig

__all__ = ["SimulationConfig"]
