"""Errors that carry a message meant for the person running the job (no traceback needed)."""

from __future__ import annotations


class AFDUserError(Exception):
    """Bad input: the message says what is wrong and what to do."""


class ConfigError(AFDUserError, ValueError):
    """A configuration value that cannot work (negative eps, zero steps, shapes that do not fit...)."""


class NonFiniteLossError(AFDUserError, FloatingPointError):
    """A training loss became NaN or infinite; the run stops before the bad update is applied."""
