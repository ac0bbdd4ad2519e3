"""A/B simulation: a world calibrated from logs, arms as policies, a vectorised day loop, and the
statistics an experimentation platform would apply."""
