"""``afd_lightning.load_classifier``: a trained network from a checkpoint or an export folder, nothing run from either."""

from __future__ import annotations

from torch import nn

from afd_lightning.store.checkpoint import classifier_from, load_checkpoint
from afd_lightning.store.export import is_export, load_export


def load_classifier(
    path,
    map_location="cpu",
    expect_dataset: str | None = None,
    expect_model=None,
    trust=(),
    model: nn.Module | None = None,
) -> nn.Module:
    """Rebuild the run's network from the stored config and load its weights; returns it in eval mode.

    Never runs code from the file (``weights_only=True``; the stored model config goes through the
    per-slot schema of :mod:`afd_lightning.store.stored_config`). ``expect_dataset`` / ``expect_model``
    (see :func:`check_expected`) refuse a checkpoint from another dataset or network with an
    error naming the file and the difference.

    ``trust``: module prefixes of your own package (e.g. ``["mynets"]``) whose networks the stored
    config may name; it comes from you, never from the file. ``model``: a network you built yourself
    (any ``nn.Module`` taking images in [0, 1], RobustBench's convention): the checkpoint's weights
    are loaded into it and nothing is built from the stored config.
    """
    if is_export(path):  # an afd-export folder (config.json + model.safetensors): no pickle is read
        return load_export(
            path, map_location, trust=trust, model=model, expect_dataset=expect_dataset, expect_model=expect_model
        )
    return classifier_from(
        load_checkpoint(path, map_location), path, map_location, expect_dataset, expect_model, trust, model
    )
