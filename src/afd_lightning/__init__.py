"""afd-lightning: Adversarial Feature Desensitization and robust-training baselines in PyTorch Lightning."""

from afd_lightning.config import resolvers as _resolvers

_resolvers.register()

__version__ = "0.1.0"


def load_classifier(path, map_location="cpu", expect_dataset=None, expect_model=None, trust=(), model=None):
    """The trained classifier from one of our checkpoints, in eval mode (images in [0, 1], NCHW -> logits).

    ``expect_dataset`` / ``expect_model`` refuse a checkpoint from another dataset or network
    (see :func:`afd_lightning.store.checkpoint.check_expected`). ``path`` may also be an ``afd-export`` folder.
    ``trust``: module prefixes of your own networks the stored config may name (``["mynets"]``; docs/byon.md).
    ``model``: a network you built; the weights are loaded into it.
    """
    from afd_lightning.store.classifier import load_classifier as _load

    return _load(
        path,
        map_location=map_location,
        expect_dataset=expect_dataset,
        expect_model=expect_model,
        trust=trust,
        model=model,
    )


__all__ = ["__version__", "load_classifier"]
