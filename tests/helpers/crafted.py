"""Crafted checkpoints: what train.py stores for a tiny digits run, built in-process (no training), then edited.

Each crafted file holds only dicts, strings, numbers and tensors, so it passes ``torch.load(weights_only=True)``;
what it tests is what the loaders do with the stored config.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from afd_lightning.config.paths import config_dir
from afd_lightning.run.instantiation import instantiate

FAST = ["threads=1", "logger=none", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]


def genuine_parts(method: str = "nt", output_dir: Path | str = "/nonexistent/run") -> tuple[dict, dict]:
    """(resolved run config, method state_dict) of an untrained digits run: what a checkpoint of it stores."""
    from afd_lightning.nets.build import build_model

    with initialize_config_dir(config_dir=str(config_dir("train")), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*FAST, f"method={method}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    built = instantiate(
        cfg.method, model=model, attack=instantiate(cfg.attack), eval_attack=instantiate(cfg.eval_attack)
    )
    return OmegaConf.to_container(cfg, resolve=True), built.state_dict()


def write(path: Path, config: dict, state: dict) -> Path:
    """A checkpoint laid out as Lightning and train.py write it (config under hyper_parameters and our own key)."""
    torch.save(
        {"state_dict": state, "hyper_parameters": config, "afd_lightning": {"config": config}, "epoch": 0},
        path,
    )
    return Path(path)


def edited(parts: tuple[dict, dict], path: Path, edit) -> Path:
    """A copy of the genuine checkpoint whose config ``edit(config)`` changed in place."""
    config, state = parts
    config = copy.deepcopy(config)
    edit(config)
    return write(path, config, state)
