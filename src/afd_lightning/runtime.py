"""The floor both entry points stand on: where the configs are, building objects from them, clear errors.

``train.py`` and ``evaluate.py`` are siblings over this module and never import each other.

Two kinds of config reach :mod:`hydra.utils.instantiate` here:

* configs the user composed on the command line (:func:`instantiate`): whatever the user names runs,
  as with any Hydra program;
* configs read back from a file, i.e. a checkpoint's stored run config: data, never code. They are
  built only through :mod:`afd_lightning.stored_config`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from afd_lightning.errors import AFDUserError, ConfigError

log = logging.getLogger(__name__)

# The top-level conf/ of the repository, installed as the package afd_lightning.conf (pyproject.toml).
CONFIG_MODULES = {"train": "afd_lightning.conf.train", "eval": "afd_lightning.conf.eval"}
TRAIN_CONFIG_PATH = f"pkg://{CONFIG_MODULES['train']}"
EVAL_CONFIG_PATH = f"pkg://{CONFIG_MODULES['eval']}"


def config_dir(root: str = "train") -> Path:
    """The folder of the shipped configs (``train`` or ``eval``), e.g. for ``hydra.initialize_config_dir``."""
    import importlib.resources

    return Path(str(importlib.resources.files(CONFIG_MODULES[root])))


def call(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` with Hydra's instantiation errors unwrapped to our own clear errors."""
    from hydra.errors import InstantiationException

    try:
        return fn(*args, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, AFDUserError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def instantiate(node, **kwargs):
    """Build an object from a config the *user* composed (``hydra.utils.instantiate`` with clear errors)."""
    from hydra.utils import instantiate as _instantiate

    return call(_instantiate, node, **kwargs)


# --- checks shared by training and evaluation ----------------------------------------------------------


def check_model_fits(model, datamodule) -> None:
    """A dummy forward pass: a network that cannot take the dataset's images fails here, before training."""
    import torch

    from afd_lightning.attacks import attack_mode

    shape = (2, datamodule.channels, datamodule.image_size, datamodule.image_size)
    name = type(datamodule).__name__
    try:
        with attack_mode(model), torch.no_grad():
            out = model(torch.zeros(shape))
    except RuntimeError as err:
        raise ConfigError(
            f"the model cannot take {name} images of shape {tuple(shape[1:])}: {str(err).splitlines()[0]}. "
            "Pick a model that fits (model=...)"
        ) from err
    if tuple(out.shape) != (2, datamodule.num_classes):
        raise ConfigError(
            f"the model outputs {tuple(out.shape[1:])} logits but {name} has {datamodule.num_classes} classes"
        )


def set_threads(setting: int | str = "auto") -> int:
    """Set torch's intra-op CPU threads for this process from the ``threads`` config key; returns the number.

    * a positive integer: that many threads;
    * ``auto``: torch's current count (its default: the cores, or an earlier ``torch.set_num_threads``)
      minus the cores other processes were using over 0.2 s (read from /proc/stat), rounded, at
      least 1. An idle machine keeps every core; a busy neighbour on a 2-core machine leaves 1
      (thread barriers on shared cores cost more than the second thread gives: docs/performance.md).
      ``OMP_NUM_THREADS``, when set, wins. Without /proc, torch's default stays. The choice is logged.
    """
    import os
    import resource
    import time

    import torch

    if setting != "auto":
        try:
            n = int(setting)
        except (TypeError, ValueError):
            n = 0
        if isinstance(setting, bool) or n < 1 or str(n) != str(setting).strip():
            raise ConfigError(f"threads={setting!r} must be auto or a positive integer (torch CPU threads)")
        torch.set_num_threads(n)
        log.info("threads: %d (set)", n)
        return n
    if os.environ.get("OMP_NUM_THREADS"):
        log.info("threads: %d (auto: OMP_NUM_THREADS=%s)", torch.get_num_threads(), os.environ["OMP_NUM_THREADS"])
        return torch.get_num_threads()
    cores = torch.get_num_threads()

    def busy_s() -> tuple[float, float]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        own = resource.getrusage(resource.RUSAGE_SELF)
        return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK"), own.ru_utime + own.ru_stime

    try:
        (machine0, own0), t0 = busy_s(), time.perf_counter()
        time.sleep(0.2)
        (machine1, own1), wall = busy_s(), time.perf_counter() - t0
    except (OSError, ValueError, IndexError):
        log.info("threads: %d (auto: torch's default; no /proc/stat to read the load from)", torch.get_num_threads())
        return torch.get_num_threads()
    others = max(0.0, (machine1 - machine0) - (own1 - own0)) / wall
    n = max(1, min(cores, round(cores - others)))
    torch.set_num_threads(n)
    log.info("threads: %d (auto: %d cores, other processes using %.1f of them)", n, cores, others)
    return n


def run_cli(run: Callable, cfg):
    """Run an entry point's ``run(cfg)``; a user error becomes one clear line and exit status 1."""
    try:
        return run(cfg)
    except AFDUserError as err:
        log.error("%s", err)
        raise SystemExit(f"error: {err}") from None
