"""Compose the real Hydra configs with tiny, fast overrides (``compose_train``, ``FAST``, ``REPO``, ``CONF``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, open_dict

import afd_lightning  # noqa: F401  (registers the config resolvers)
from afd_lightning.config.paths import config_dir

from helpers import hydra_cache

hydra_cache.install()  # every compose in the test processes parses each config file once (see hydra_cache)

REPO = Path(__file__).resolve().parents[2]
CONF = config_dir("train")

# Small and fast: no logger files beyond CSV, no progress bars.
FAST = [
    "logger=csv",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.max_epochs=1",
    "dataset.meta.train_attack_steps=2",
    "dataset.meta.eval_attack_steps=2",
    # A fixed thread count: threads=auto gives 1 for digits (a function of the job and the machine, never of the
    # load), but the tests that compare runs bit for bit pin it so they do not depend on that rule either.
    "threads=1",
]


def compose_train(overrides: list[str], output_dir: Path | None = None, fast: bool = True) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` (after the FAST ones); output goes to ``output_dir``."""
    cfg = hydra_cache.compose(CONF, "train", (FAST if fast else []) + list(overrides))
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg
