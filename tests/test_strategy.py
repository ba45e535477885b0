"""One strategy rule for afd-train and the library (afd_lightning.run.strategy.choose_strategy)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from afd_lightning.run.strategy import choose_strategy


@pytest.mark.parametrize(
    "devices, nodes, want",
    [
        (1, 1, "auto"),
        ("1", 1, "auto"),
        ("auto", 1, "auto"),
        ("0,", 1, "auto"),
        ([0], 1, "auto"),
        (2, 1, "ddp"),
        (-1, 1, "ddp"),
        ("0,1", 1, "ddp"),
        ([0, 1], 1, "ddp"),
        (1, 2, "ddp"),
        (OmegaConf.create([0, 1]), 1, "ddp"),
        (OmegaConf.create([3]), 1, "auto"),
    ],
)
def test_several_devices_or_nodes_mean_ddp(devices, nodes, want):
    assert choose_strategy(devices, nodes, "auto", True) == want
    manual = "ddp_find_unused_parameters_true" if want == "ddp" else "auto"
    assert choose_strategy(devices, nodes, "auto", False) == manual


def test_an_explicit_strategy_is_kept():
    assert choose_strategy(4, 1, "fsdp", False) == "fsdp"
