"""Names for models side by side: the method, and what differs between runs of the same method.

Two seeds of AT read ``AT (seed=0)`` and ``AT (seed=1)``, not ``AT`` and ``AT-2``; two recipes read by the keys
that differ (``TRADES (method.beta=1)``); runs with the same recipe and seed by their run directory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

MAX_KEYS = 3  # more differing keys than this: the run directory names the run better
_EXTRA_KEYS = ("seed", "trainer.max_epochs", "experiment")  # not recipe sections, but they change the weights


def _recipe_items(config: Mapping) -> dict[str, object]:
    from afd_lightning.config.keys import RECIPE_KEYS, RUNTIME_KEYS
    from afd_lightning.config.run_config import _flatten

    flat = _flatten({k: config.get(k) for k in RECIPE_KEYS if config.get(k) is not None})
    flat.update({k: v for k, v in _flatten(dict(config)).items() if k in _EXTRA_KEYS})
    return {k: v for k, v in flat.items() if not any(k == r or k.startswith(r.rstrip(".") + ".") for r in RUNTIME_KEYS)}


def _run_name(path: str) -> str:
    ckpt = Path(path)
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return f"{run.name}/{ckpt.name}" if ckpt.name != "last.ckpt" else run.name


def distinct_labels(bases: Sequence[str], configs: Sequence[Mapping], paths: Sequence[str]) -> list[str]:
    """One label per model: ``bases[i]`` alone when unique, else with what sets the model apart from the others
    of the same base (differing recipe keys and seed, or its run directory)."""
    labels = list(bases)
    for base in dict.fromkeys(bases):
        group = [i for i, b in enumerate(bases) if b == base]
        if len(group) < 2:
            continue
        items = [_recipe_items(configs[i]) for i in group]
        keys = sorted({k for it in items for k in it if len({repr(x.get(k)) for x in items}) > 1})
        keys.sort(key=lambda k: (k != "seed", k))  # the seed first: the usual difference
        if keys and len(keys) <= MAX_KEYS:
            for i, it in zip(group, items):
                labels[i] = f"{base} ({', '.join(f'{k}={it.get(k)}' for k in keys)})"
        else:
            for i in group:
                labels[i] = f"{base} ({_run_name(paths[i])})"
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):  # the same run given twice: still distinct keys
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label} #{seen[label]}"
    return labels
