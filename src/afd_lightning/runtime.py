"""The import path of the entry points' shared floor before it was split; use the modules named below.

* :mod:`afd_lightning.config_paths`: ``config_dir``, ``TRAIN_CONFIG_PATH``, ``EVAL_CONFIG_PATH``;
* :mod:`afd_lightning.instantiation`: ``instantiate``, ``call``, ``check_model_fits``;
* :mod:`afd_lightning.threads`: ``set_threads``;
* :mod:`afd_lightning.cli`: ``run_cli``, ``remove_if_only_own_logs``;
* :mod:`afd_lightning.stored_config`: building configs read back from a file.
"""

from __future__ import annotations

from afd_lightning.cli import remove_if_only_own_logs, run_cli
from afd_lightning.config_paths import CONFIG_MODULES, EVAL_CONFIG_PATH, TRAIN_CONFIG_PATH, config_dir
from afd_lightning.instantiation import call, check_model_fits, instantiate
from afd_lightning.threads import set_threads

__all__ = [
    "CONFIG_MODULES",
    "EVAL_CONFIG_PATH",
    "TRAIN_CONFIG_PATH",
    "call",
    "check_model_fits",
    "config_dir",
    "instantiate",
    "remove_if_only_own_logs",
    "run_cli",
    "set_threads",
]
