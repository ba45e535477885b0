"""The recipe rule's key lists: which run-config keys decide what a run learns and which say how it runs (a leaf).

Read by the run config (resume and summary grouping), the stored-config schema and the network builder.
"""

from __future__ import annotations

# The sections of a run config that decide the trained weights.
RECIPE_KEYS = ("method", "model", "dataset", "attack")

# How a run runs, not what it learns (dotted prefixes of run-config keys and of command-line overrides).
RUNTIME_KEYS = (
    # throughput switches of the network (afd_lightning.nets.build applies them)
    "model.channels_last",
    "model.compile",
    # where the data files are and how they load
    "dataset.data_dir",
    "dataset.download",
    "dataset.fetch",
    "dataset.npm",
    "dataset.num_workers",
    "dataset.pin_memory",
    "dataset.persistent_workers",
    "dataset.prefetch_factor",
    # where outputs go, what the run shows, which hardware it runs on
    "paths.",
    "hydra.",
    "logger",
    "callbacks",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.accelerator",
    "trainer.devices",
    "threads",
    "overwrite",
)
# Also free on resume: the batch sizes (a resume on another machine may need others) and the settings of the
# evaluation attack (dataset.meta.eval_*), which feed val/ and test/ only.
RESUME_FREE_KEYS = (*RUNTIME_KEYS, "dataset.batch_size", "dataset.eval_batch_size", "dataset.meta.eval_")
# The test split does not depend on training augmentation either; of the dataset's meta block (threat model
# and training settings) only SPLIT_META names the images and labels.
SPLIT_FREE_KEYS = (*RESUME_FREE_KEYS, "dataset.augment")
SPLIT_META = ("name", "num_classes", "channels", "image_size")
# Command-line overrides that do not make another recipe: runtime keys, the seed, the preset's own name.
NOT_RECIPE_OVERRIDES = (*RUNTIME_KEYS, "seed", "experiment")


def runtime_keys(section: str) -> tuple[str, ...]:
    """The runtime keys directly inside one section, e.g. ``("channels_last", "compile")`` for ``model``."""
    prefix = f"{section}."
    return tuple(k[len(prefix) :] for k in RUNTIME_KEYS if k.startswith(prefix) and "." not in k[len(prefix) :])
