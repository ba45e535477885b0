"""``extras``: conveniences applied before training starts (the lightning-hydra-template convention).

``conf/train/extras/default.yaml``:

* ``print_config``: log the resolved config tree at the start (Hydra's ``train.log`` keeps it; the
  unresolved one is in ``.hydra/config.yaml``);
* ``ignore_warnings``: silence every Python warning (the known noise is silenced anyway, see
  :mod:`afd_lightning.process.quiet`; this is for users who want nothing at all).
"""

from __future__ import annotations

import logging
import warnings

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger(__name__)


def config_tree(cfg: DictConfig) -> str:
    """The config as YAML, resolved (as written, with a note, if some value cannot be resolved)."""
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except OmegaConfBaseException as err:
        return f"# not resolved ({type(err).__name__}: {err})\n" + OmegaConf.to_yaml(cfg)


def apply_extras(cfg: DictConfig, rank_zero: bool = True) -> None:
    """Apply ``cfg.extras`` (absent or null: nothing)."""
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if extras.get("print_config") and rank_zero:
        log.info("config:\n%s", config_tree(cfg))
