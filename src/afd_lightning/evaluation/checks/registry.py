"""The honesty checks by name: each is a function of (one model's evidence, the settings), registered here.

``@register`` files a check under its function's name, which is also its key under ``checks.run`` in
``conf/eval/eval.yaml`` and its ``name`` in results.json: adding a check is one function
(in :mod:`.model_checks`) and one YAML key. :func:`afd_lightning.evaluation.checks.checker.run_checks` runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from afd_lightning.evaluation.attacks.base import EvalAttack
from afd_lightning.evaluation.checks.settings import CheckSettings
from afd_lightning.evaluation.report.schema import CheckResult, WorstCase
from afd_lightning.evaluation.sweep import Curve


@dataclass
class Evidence:
    """What one model's evaluation produced, as every check reads it.

    Args:
        curves: ``{attack_name: Curve}`` (transfer curves included, named ``<attack>_bb``).
        attacks: ``{attack_name: EvalAttack}`` for the same names.
        y: labels of the evaluated samples; ``correct``: the model's clean predictions right.
        dim: number of input values per image (C * H * W).
        natural: the model is naturally trained: the attack self-test runs on it.
        worst_case, worst_robust: the per-sample worst case over the L∞ attacks at ``table_eps`` (suite.py).
        saturation, saturated: the counts and per-sample mask of :func:`.saturation.measure`.
        table_eps: the Table 1 ε.
        diagnostics: where a check puts the comparisons it set aside as attack diagnostics (not model failures).
    """

    curves: Mapping[str, Curve]
    attacks: Mapping[str, EvalAttack]
    y: torch.Tensor
    correct: torch.Tensor
    dim: int
    natural: bool = False
    worst_case: WorstCase | None = None
    worst_robust: torch.Tensor | None = None
    saturation: dict | None = None
    saturated: torch.Tensor | None = None
    table_eps: float | None = None
    diagnostics: list[CheckResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.y, self.correct = self.y.cpu(), self.correct.cpu()


Check = Callable[[Evidence, CheckSettings], CheckResult]

CHECKS: dict[str, Check] = {}


def register(check: Check) -> Check:
    """File ``check`` under its function name (its config key and result name); a name is taken once."""
    name = check.__name__
    if name in CHECKS:
        raise ValueError(f"a check named {name!r} is registered twice")
    CHECKS[name] = check
    return check
