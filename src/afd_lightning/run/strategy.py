"""The Lightning strategy a run uses when it asks for ``strategy=auto``: one rule for ``afd-train`` and the library."""

from __future__ import annotations

from typing import Any


def choose_strategy(devices: Any = 1, num_nodes: Any = 1, strategy: Any = "auto", automatic_optimization: bool = True):
    """DDP when more than one device or node is asked for; otherwise Lightning's ``auto``.

    A manually optimised method (AFD's three updates each touch part of the parameters, Algorithm 1) needs DDP's
    unused-parameter detection. ``devices`` as Lightning takes it: an int (``-1`` = all), a string (``"2"``,
    ``"0,1"``; ``"0,"`` is one device index) or a list of indices. Any explicit ``strategy`` is returned as given.
    """
    if strategy != "auto":
        return strategy
    if isinstance(devices, str):
        multi = devices not in ("1", "auto") and not devices.endswith(",")
    elif isinstance(devices, int):
        multi = devices > 1 or devices == -1
    else:  # a list of device indices (a list, tuple or OmegaConf ListConfig)
        multi = len(devices) > 1
    if not (multi or (num_nodes or 1) > 1):
        return "auto"
    return "ddp" if automatic_optimization else "ddp_find_unused_parameters_true"
