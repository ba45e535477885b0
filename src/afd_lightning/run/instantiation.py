"""Building objects from the configs the *user* composed, with clear errors; the checks shared by both entry points.

``train.py`` and ``evaluate.py`` are siblings over this module and never import each other.

Two kinds of config reach :mod:`hydra.utils.instantiate`:

* configs the user composed on the command line (:func:`instantiate`, here): whatever the user names runs,
  as with any Hydra program;
* configs read back from a file, i.e. a checkpoint's stored run config: data, never code. They are
  built only through :mod:`afd_lightning.store.stored_config`.
"""

from __future__ import annotations

from collections.abc import Callable

from afd_lightning.errors import AFDUserError, ConfigError


def call(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` with Hydra's instantiation errors unwrapped to our own clear errors."""
    from hydra.errors import InstantiationException

    try:
        return fn(*args, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, AFDUserError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def instantiate(node, **kwargs):
    """Build an object from a config the *user* composed (``hydra.utils.instantiate`` with clear errors)."""
    from hydra.utils import instantiate as _instantiate

    return call(_instantiate, node, **kwargs)


def check_model_fits(model, datamodule) -> None:
    """A dummy forward pass: a network that cannot take the dataset's images fails here, before training."""
    import torch

    from afd_lightning.attacks import attack_mode

    shape = (2, datamodule.channels, datamodule.image_size, datamodule.image_size)
    name = type(datamodule).__name__
    try:
        with attack_mode(model), torch.no_grad():
            out = model(torch.zeros(shape))
    except RuntimeError as err:
        raise ConfigError(
            f"the model cannot take {name} images of shape {tuple(shape[1:])}: {str(err).splitlines()[0]}. "
            "Pick a model that fits (model=...)"
        ) from err
    if tuple(out.shape) != (2, datamodule.num_classes):
        raise ConfigError(
            f"the model outputs {tuple(out.shape[1:])} logits but {name} has {datamodule.num_classes} classes"
        )
