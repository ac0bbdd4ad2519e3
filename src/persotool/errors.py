"""The error tree: every failure a user can cause maps to one class, one exit code and one line.

Library code raises these; only the CLI turns them into a message on stderr and an exit status.
"""

from __future__ import annotations

# Exit statuses, documented in the README. 2 is click's own usage-error status.
EXIT_OK = 0
EXIT_GATE = 1  # a quality gate (e.g. `evaluate --min`) was not met
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_DATA = 4
EXIT_MODEL = 5
EXIT_TRACKING = 6
EXIT_OUTPUT = 7
EXIT_INTERNAL = 70


class PersotoolError(Exception):
    """Base of every error persotool reports to a user as one line."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class QualityGateFailed(PersotoolError):
    """A result fell short of a quality gate (`result.require(...)`, `--min`): the run itself
    worked, its output is complete, and the gate says it is not good enough."""

    exit_code = EXIT_GATE


class UsageError(PersotoolError):
    """The command line asks for something that cannot mean anything (a typo in a metric name...)."""

    exit_code = EXIT_USAGE


class ConfigError(PersotoolError):
    """A config file, preset or option is invalid or inconsistent."""

    exit_code = EXIT_CONFIG


class DataError(PersotoolError):
    """An input file cannot be read as what it claims to be, or its content is unusable."""

    exit_code = EXIT_DATA


class ModelError(PersotoolError):
    """A model cannot be built, trained, saved or loaded."""

    exit_code = EXIT_MODEL


# How tracking errors say that recording can be skipped; the CLI names its flag instead.
TRACKING_OFF = "turn tracking off"


class TrackingError(PersotoolError):
    """The MLflow tracking store cannot be reached or written."""

    exit_code = EXIT_TRACKING


class OutputError(PersotoolError):
    """An output path cannot be written (exists, not writable, not a directory, ...)."""

    exit_code = EXIT_OUTPUT
