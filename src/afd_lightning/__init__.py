"""afd-lightning: Adversarial Feature Desensitization and robust-training baselines in PyTorch Lightning."""
from afd_lightning import resolvers as _resolvers

_resolvers.register()

__version__ = "0.1.0"


def load_classifier(path, map_location="cpu"):
    """The trained classifier from one of our checkpoints, in eval mode (images in [0, 1], NCHW -> logits)."""
    from afd_lightning.checkpoints import load_classifier as _load

    return _load(path, map_location=map_location)


__all__ = ["__version__", "load_classifier"]
