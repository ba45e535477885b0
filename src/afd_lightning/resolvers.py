"""OmegaConf resolvers used by the configs (registered when afd_lightning is imported)."""
from __future__ import annotations

from omegaconf import OmegaConf


def _choice(group: str) -> str:
    """The option chosen for a config group in this Hydra run (``unset`` outside a Hydra run)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "unset"
    return str(HydraConfig.get().runtime.choices.get(group, "unset"))


def register() -> None:
    resolvers = {
        "afd.mul": lambda a, b: float(a) * float(b),
        "afd.div": lambda a, b: float(a) / float(b),
        "afd.choice": _choice,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
