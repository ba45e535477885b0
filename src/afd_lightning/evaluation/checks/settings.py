"""The settings every honesty check reads: one dataclass, built from eval.yaml's ``checks:`` block.

One object instead of a constructor argument per threshold: a check reads the fields it needs, and a new
threshold is one field here and one key in ``conf/eval/eval.yaml``. ``run`` says which of the registered checks
(:mod:`.registry`) run, in its order; ``None`` (the Python default) runs every registered check.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields

from afd_lightning.config.suggest import did_you_mean
from afd_lightning.errors import ConfigError
from afd_lightning.evaluation.stats import CORRECTIONS


@dataclass(frozen=True)
class CheckSettings:
    """Thresholds of the checks (``checks.*`` in eval.yaml, whose comments say what each means).

    Args:
        z, min_gap: significance of a paired gap (standard errors of McNemar's statistic, fraction of n).
        correction: ``holm``: ``z``'s level holds for all the comparisons one check makes together (Holm's
            step-down); ``none``: each comparison at ``z`` on its own.
        large_eps_ceiling: most accuracy left at an ε that can erase any image.
        self_test_max, self_test_max_gradient_free: most accuracy an attack may leave on an NT model.
        saturation_max_share: most PGD-L∞ survivors with p(y) = 1.0 or a vanishing gradient.
        grad_threshold: "vanishing": input-gradient L2 norm of the cross-entropy below this.
        run: the names of the checks to run, in order; None: every registered check, in registration order.
    """

    z: float = 2.0
    min_gap: float = 0.01
    large_eps_ceiling: float = 0.02
    self_test_max: float = 0.05
    self_test_max_gradient_free: float = 0.10
    saturation_max_share: float = 0.05
    grad_threshold: float = 1e-8
    correction: str = "holm"
    run: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, block: Mapping | None, known: Collection[str]) -> CheckSettings:
        """The settings of a ``checks:`` block; ``run`` maps each check's name to true/false (``known``: the
        registered names). Refuses, in one line, a key or check name that does not exist and a value of the
        wrong type, before any attack runs."""
        block = dict(block or {})
        numbers = {f.name for f in fields(cls)} - {"correction", "run"}
        values: dict = {}
        for key, value in block.items():
            key = str(key)
            if key in numbers:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ConfigError(f"checks.{key}={value!r} must be a finite number")
                if value < 0:
                    raise ConfigError(f"checks.{key}={value!r} must be >= 0")
                values[key] = float(value)
            elif key == "correction":
                if value not in CORRECTIONS:
                    raise ConfigError(
                        f"checks.correction={value!r} must be one of {', '.join(CORRECTIONS)} (how a check's "
                        "several paired comparisons share the z level; evaluation/stats.py)"
                    )
                values[key] = str(value)
            elif key == "run":
                values[key] = None if value is None else _run_list(value, known)
            else:
                raise ConfigError(did_you_mean(f"checks.{key}", key, [f.name for f in fields(cls)]))
        return cls(**values)


def _run_list(value, known: Collection[str]) -> tuple[str, ...]:
    """``{check: true|false}`` -> the names switched on, in the block's order."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"checks.run must map each check's name to true or false, got {value!r}")
    names = []
    for name, on in value.items():
        name = str(name)
        if name not in known:
            raise ConfigError(
                did_you_mean(f"checks.run.{name}", name, known) + f" (the checks: {', '.join(sorted(known))})"
            )
        if not isinstance(on, bool):
            raise ConfigError(f"checks.run.{name}={on!r} must be true or false")
        if on:
            names.append(name)
    return tuple(names)
