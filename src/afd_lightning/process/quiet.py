"""Messages a user can do nothing about, silenced where they come from; every other warning stays visible.

Each entry names its source and why no user of afd-lightning can act on it. tests/test_loggers.py
runs a training and an evaluation and fails on any warning these filters do not cover, so a new
message shows up there first. (A warning a user *can* act on, e.g. "GPU available but not used",
is never filtered; ``extras.ignore_warnings=true`` silences everything for those who ask.)
"""

from __future__ import annotations

import logging
import warnings

# (category, message regex, module regex of the code that warns, why nobody can act on it)
WARNINGS = [
    (
        FutureWarning,
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        r"pytorch_lightning\.utilities\._pytree",
        "Lightning 2.6's own use of a torch.utils._pytree API that torch 2.10+ deprecates; fixed by Lightning, not us",
    ),
    (
        UserWarning,
        r"Checkpoint directory .* exists and is not empty",
        r"pytorch_lightning\.callbacks\.model_checkpoint",
        "said on every resume; afd_lightning.run.rundir has already refused a checkpoints/ that is not this run's own",
    ),
]

# Lightning INFO lines that carry no information here: (logger name, message prefix, why).
LOG_LINES = [
    ("pytorch_lightning.utilities.rank_zero", "💡 Tip:", "an advertisement for Lightning's litlogger"),
    ("pytorch_lightning.utilities.rank_zero", "GPU available: False", "nothing to choose on a machine without GPUs"),
    ("pytorch_lightning.utilities.rank_zero", "TPU available: False", "nothing to choose without TPUs"),
    ("pytorch_lightning.utilities.rank_zero", "HPU available: False", "nothing to choose without HPUs"),
]


class _DropLines(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def silence_known_noise() -> None:
    """Install the filters above (idempotent: installing twice leaves one of each)."""
    for category, message, module, _why in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name in {name for name, _, _ in LOG_LINES}:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) for f in logger.filters):
            logger.addFilter(_DropLines(tuple(prefix for n, prefix, _ in LOG_LINES if n == name)))
