"""The tests' kept configs and compositions (tests/helpers/hydra_cache.py) are what Hydra composes from the files."""

from __future__ import annotations

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from helpers import hydra_cache
from helpers.compose import compose_train

CASES = [
    ["dataset=cifar10", "method=afd"],
    ["dataset=mnist", "method=trades", "attack=mim", "attack.eps=0.1"],
    ["experiment=paper_digits_afd"],
]


@pytest.fixture
def hydra_alone():
    """Hydra's own loading for the test's body; the kept configs again afterwards."""
    hydra_cache.uninstall()
    try:
        yield
    finally:
        hydra_cache.install()


def _as_yaml(overrides):
    return OmegaConf.to_yaml(compose_train(overrides), resolve=False)


@pytest.mark.slow
def test_kept_configs_compose_what_hydra_composes(hydra_alone):
    expected = [_as_yaml(case) for case in CASES]
    hydra_cache.install()
    hits, composed_hits = hydra_cache.stats["hits"], hydra_cache.stats["composed_hits"]
    first = [_as_yaml(case) for case in CASES]  # the later cases read files the first one parsed
    assert hydra_cache.stats["hits"] > hits and hydra_cache.stats["composed_hits"] == composed_hits
    again = [_as_yaml(case) for case in CASES]  # the kept compositions
    assert hydra_cache.stats["composed_hits"] == composed_hits + len(CASES)
    assert first == again == expected


def test_a_composed_config_edited_by_a_test_leaves_the_next_compose_as_it_was():
    cfg = compose_train(["dataset=digits"])
    cfg.dataset.batch_size = 12345
    cfg.method.optimizer_cls.lr = -1.0
    fresh = compose_train(["dataset=digits"])
    assert fresh.dataset.batch_size != 12345 and fresh.method.optimizer_cls.lr == 0.1


def test_a_rewritten_file_is_read_again_and_a_broken_one_fails_every_time(tmp_path):
    (tmp_path / "app.yaml").write_text("value: 1\n")

    def load():
        with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
            return compose(config_name="app")

    assert load().value == 1
    (tmp_path / "app.yaml").write_text("value: 2\n")  # same name, new bytes
    assert load().value == 2
    (tmp_path / "app.yaml").write_text("value: [unclosed\n")
    for _ in range(2):  # an error is not kept as if it were a config
        with pytest.raises(yaml.YAMLError, match="app.yaml"):
            load()
