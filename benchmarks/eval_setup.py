"""What the evaluation benchmarks share: one checkpoint's eval config, model and samples, as eval.py builds them."""

from __future__ import annotations

from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from afd_lightning.config.paths import config_dir
from afd_lightning.evaluation.loading import load_models, load_samples


def load_eval(ckpt: str, n_samples: str, *overrides: str) -> tuple[DictConfig, Any, dict, Any, Any]:
    """``(cfg, loaded model, dataset meta, x, y)`` for ``ckpt``: the eval config composed with ``n_samples``
    and ``overrides`` (e.g. ``suite=paper``), its first model, and the evaluation samples; ``cfg.family`` is set
    from the dataset so that ``build_attacks(cfg)`` builds the suite for it."""
    with initialize_config_dir(config_dir=str(config_dir("eval")), version_base="1.3"):
        cfg = compose(
            "eval",
            overrides=[
                f"ckpt_path={ckpt}",
                *overrides,
                f"n_samples={n_samples}",
                "output_dir=/tmp/unused",
                "progress=false",
            ],
        )
    loaded, _ = load_models(cfg)
    lm = next(iter(loaded.values()))
    meta = lm.config["dataset"]["meta"]
    _, x, y, _, _ = load_samples(lm.config["dataset"], cfg)
    with open_dict(cfg):
        cfg.family = meta["family"]
    return cfg, lm, meta, x, y
