"""afd-lightning: Adversarial Feature Desensitization and robust-training baselines in PyTorch Lightning.

As a library (docs/library.md): ``afd_lightning.recipe("paper_digits_afd")`` builds a recipe's LightningModule,
LightningDataModule and Trainer arguments; ``afd_lightning.evaluate(model, dataset="digits")`` evaluates any
network; ``afd_lightning.load_classifier(path)`` reads a checkpoint or an export folder.
"""

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


def __getattr__(name: str):
    # The library API is imported on first use (`import afd_lightning` stays free of torch), by name: the entry
    # points import this package for its resolvers, and a static edge from here would tie them to afd_lightning.api.
    import importlib

    if name in ("recipe", "Recipe"):
        return getattr(importlib.import_module("afd_lightning.api"), name)
    if name == "evaluate":
        # The package attribute `evaluate` is the afd-eval module (Python binds a submodule to its package under its
        # name); that module is callable and calls afd_lightning.api.evaluate (see afd_lightning/evaluate.py).
        return importlib.import_module("afd_lightning.evaluate")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Recipe", "__version__", "evaluate", "load_classifier", "recipe"]
