"""What the checks share: which attacks are alike, the erase budget, and the paired (McNemar) verdict.

Attacks run on the same samples, so two attacks are compared per sample: attack B "beats" attack A when B
broke significantly more of the samples A left standing than the reverse (``z`` standard errors of the
discordant count, and more than ``min_gap`` of the samples; see
:func:`~afd_lightning.evaluation.stats.paired_gap_significant`). A check that makes several comparisons holds
that level for all of them together (Holm's correction, :func:`~afd_lightning.evaluation.stats.significant_gaps`).
"""

from __future__ import annotations

import math

import torch

from afd_lightning.evaluation.attacks.base import EvalAttack
from afd_lightning.evaluation.checks.registry import Evidence
from afd_lightning.evaluation.checks.settings import CheckSettings
from afd_lightning.evaluation.report.schema import CheckResult
from afd_lightning.evaluation.stats import one_sided_p, paired_counts, significant_gaps

# A paired comparison: (label "first vs second", per-sample robust under the first, robust under the second).
Pair = tuple[str, torch.Tensor, torch.Tensor]


def unbounded_eps(norm: str, dim: int) -> float:
    """The eps at which every image in [0, 1]^dim can be moved to the constant 0.5 image (the erase budget)."""
    return {"linf": 0.5, "l2": 0.5 * math.sqrt(dim), "l1": 0.5 * dim}[norm]


def objective(attack: EvalAttack) -> str:
    """What an attack maximises: ``ce`` (cross-entropy, the default), ``margin``, ``dlr``, ``targeted``, ``embedding``."""
    inner = getattr(attack, "inner", attack)  # a transfer attack follows its white-box attack's loss
    return str(getattr(inner, "objective", "ce"))


def label_loss_untargeted(attack: EvalAttack) -> bool:
    """An untargeted attack on the classification loss in input space (cross-entropy, margin, DLR)."""
    return objective(attack) in ("ce", "margin", "dlr")


def overshooting_step(attack: EvalAttack, eps: float, dim: int) -> bool:
    """A single step at least as long as the erase budget: its result says how the step overshoots."""
    return not attack.iterative and eps >= unbounded_eps(attack.norm, dim) - 1e-9


def fmt(p: float | None) -> str:
    return "n/a" if p is None else f"{100 * p:.1f}%"


def white_box(ev: Evidence, name: str) -> bool:
    a = ev.attacks.get(name)
    return a is not None and a.kind != "transfer"


def robust_at(ev: Evidence, name: str, eps: float) -> torch.Tensor | None:
    return ev.curves[name].robust_at(eps)


def own_robust(ev: Evidence, name: str, eps: float) -> torch.Tensor:
    """Per-sample robustness at one of the curve's own eps, which it always measured."""
    robust = ev.curves[name].robust_at(eps)
    assert robust is not None, (name, eps)
    return robust


def paired(ev: Evidence, s: CheckSettings, name: str, pairs: list[Pair], what: str) -> CheckResult:
    """pairs: (label "first vs second", robust under first, robust under second), the first expected at least
    as strong; FAIL iff the second breaks significantly more of the samples the first left than the reverse."""
    if not pairs:
        aside = any(d.name == name for d in ev.diagnostics)
        why = " (its comparisons across attack classes are attack diagnostics)" if aside else ""
        return CheckResult(name, None, f"n/a: the suite has no {what}{why}")
    bad, numbers = [], {}
    counts = []
    for _, strong, weak in pairs:
        n = min(len(strong), len(weak))
        counts.append((*paired_counts(strong[:n], weak[:n]), n))
    verdicts = significant_gaps(counts, s.z, s.min_gap, s.correction)
    for (label, strong, weak), (only_weak, only_strong, n), failed in zip(pairs, counts, verdicts):
        numbers[label] = {
            "acc_first": round(float(strong[:n].float().mean()), 4),
            "acc_second": round(float(weak[:n].float().mean()), 4),
            "broken_only_by_second": only_weak,
            "broken_only_by_first": only_strong,
            "n": n,
            "p": round(one_sided_p((only_weak - only_strong) / math.sqrt(only_weak + only_strong)), 6)
            if only_weak > only_strong
            else 1.0,
            "failed": failed,
        }
        if failed:
            bad.append(
                f"{label}: {only_weak} samples broken only by the second, {only_strong} only by the first (n={n})"
            )
    details = "; ".join(bad) if bad else "ok: " + "; ".join(numbers)
    return CheckResult(name, not bad, details, numbers)


def set_aside(ev: Evidence, s: CheckSettings, name: str, pairs: list[Pair], why: str) -> None:
    """Record the pairs a check set aside (attacks of different classes) as an attack diagnostic."""
    if pairs:
        r = paired(ev, s, name, pairs, why)
        r.details = f"attack diagnostic ({why}): {r.details}"
        ev.diagnostics.append(r)
