"""The one place that imports advertorch.

advertorch 0.2.3 (the newest release) imports ``zero_gradients`` from
``torch.autograd.gradcheck``, a helper PyTorch removed in 1.9.  We put a
replacement into that module before advertorch is imported, so every
``import advertorch`` in this package goes through :func:`advertorch`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable

import torch


def _zero_gradients(x) -> None:
    if isinstance(x, torch.Tensor):
        if x.grad is not None:
            x.grad.detach_()
            x.grad.zero_()
    elif isinstance(x, Iterable):
        for t in x:
            _zero_gradients(t)


def advertorch():
    """Return the ``advertorch`` module, applying the compatibility shim first."""
    import torch.autograd.gradcheck  # noqa: F401  (makes sure the module is in sys.modules)

    gradcheck_module = sys.modules["torch.autograd.gradcheck"]
    if not hasattr(gradcheck_module, "zero_gradients"):
        gradcheck_module.zero_gradients = _zero_gradients
    module = importlib.import_module("advertorch")
    importlib.import_module("advertorch.attacks")
    return module
