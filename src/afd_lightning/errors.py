"""Errors that carry a message meant for the person running the job (no traceback needed).

Every user-facing error derives from :class:`AFDUserError`: the entry points (``cli.run_cli``,
``afd-summarize``) print its message as one line and exit with status 1. Errors that belong to one
module are defined there (``RunDirectoryError`` in run/rundir.py, ``UnsafeConfigError`` in store/plain.py,
``DatasetNotFoundError`` in data/torchvision_data.py, ...), always over this base.
"""

from __future__ import annotations


class AFDUserError(Exception):
    """Bad input: the message says what is wrong and what to do."""


class ConfigError(AFDUserError, ValueError):
    """A configuration value that cannot work (negative eps, zero steps, shapes that do not fit...)."""


class NonFiniteLossError(AFDUserError, FloatingPointError):
    """A training loss became NaN or infinite; the run stops before the bad update is applied."""


class CheckpointError(AFDUserError):
    """A checkpoint that is missing, corrupt, unsafe, or not from this package."""
