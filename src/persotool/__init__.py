"""persotool: offline personalization experiments."""

__version__ = "0.1.0"
