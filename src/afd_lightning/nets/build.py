"""Building a network from its config, with the throughput switches that are not part of the architecture."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
from omegaconf import DictConfig, OmegaConf

from afd_lightning.config.keys import runtime_keys
from afd_lightning.nets.protocol import check_arguments, check_network

# Keys of a model config that configure how the network runs, not what it is (afd_lightning.config.run_config).
PERF_KEYS = runtime_keys("model")


def build_model(model_cfg: Mapping | DictConfig) -> torch.nn.Module:
    """``hydra.utils.instantiate`` of a model config, then the optional throughput switches.

    * ``channels_last``: parameters in NHWC memory format (faster convolutions on recent GPUs;
      the encoder also converts its inputs).
    * ``compile``: ``torch.compile`` the encoder in place (state-dict keys unchanged).
    """
    from hydra.utils import instantiate

    cfg = (
        cast(dict, OmegaConf.to_container(model_cfg, resolve=True))
        if isinstance(model_cfg, DictConfig)
        else dict(model_cfg)
    )
    switches = {key: bool(cfg.pop(key, False)) for key in PERF_KEYS}
    check_arguments(cfg)  # a key the network does not take, named (not a TypeError from deep inside)
    model = instantiate(cfg)
    check_network(model, cfg.get("_target_"))  # every missing member of the interface, listed once
    model.channels_last = switches["channels_last"]
    if switches["channels_last"]:
        model.to(memory_format=torch.channels_last)
        # Inputs too, on every path (training, attacks, evaluation), as they enter the encoder.
        model.encoder.register_forward_pre_hook(_to_channels_last)
    if switches["compile"]:
        model.encoder.compile()
    return model


def _to_channels_last(module, args):
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
