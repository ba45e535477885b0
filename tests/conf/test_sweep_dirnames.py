"""Sweep directory names hold only the keys that change the recipe (Hydra's override_dirname.exclude_keys)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

import afd_lightning  # noqa: F401  (registers the config resolvers)
from afd_lightning.config.paths import config_dir


@pytest.mark.slow
def test_run_settings_stay_out_of_sweep_directory_names():
    overrides = [
        "method=nt",
        "seed=1",
        "dataset.batch_size=32",
        "threads=1",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "logger=csv",
        "paths.log_dir=/tmp/somewhere",
        "overwrite=true",
        "tags=[a,b]",
    ]
    with initialize_config_dir(config_dir=str(config_dir("train")), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.job.override_dirname == "dataset.batch_size-32__method-nt__seed-1"
