"""Where the shipped configs are: the top-level ``conf/`` of the repository, installed as ``afd_lightning.conf``."""

from __future__ import annotations

from pathlib import Path

# The top-level conf/ of the repository, installed as the package afd_lightning.conf (pyproject.toml).
CONFIG_MODULES = {"train": "afd_lightning.conf.train", "eval": "afd_lightning.conf.eval"}
TRAIN_CONFIG_PATH = f"pkg://{CONFIG_MODULES['train']}"
EVAL_CONFIG_PATH = f"pkg://{CONFIG_MODULES['eval']}"


def config_dir(root: str = "train") -> Path:
    """The folder of the shipped configs (``train`` or ``eval``), e.g. for ``hydra.initialize_config_dir``."""
    import importlib.resources

    return Path(str(importlib.resources.files(CONFIG_MODULES[root])))
