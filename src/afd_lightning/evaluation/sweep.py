"""Accuracy-vs-eps curves: survivors-only sweeps for eps-ball attacks, one run for minimum-norm attacks.

Survivors (the default, ``mode="survivors"``): eps-balls are nested, so a sample fooled at eps
is fooled at every larger eps.  Only the samples still correctly classified at the previous eps
are attacked at the next one; misclassified clean samples are never attacked.  The curve is the
robust accuracy of "any perturbation of norm <= eps", which for every sample equals the running
AND of independent per-eps results (tested), at a fraction of the cost.

Independent (``mode="independent"``): every eps attacks every clean-correct sample from scratch,
and minimum-norm attacks are rerun once per eps -- the naive way, kept to check the fast one and
to time it (benchmarks/bench_eval.py).  Its curve can rise with eps when an attack that worked at
a small eps fails at a larger one; survivors never reports that as robustness.

Minimum-norm attacks: robust at eps iff the sample is clean-correct and its smallest adversarial
norm found is > eps; a sample the attack failed on (norm inf) counts as robust at every eps.
Every accuracy is over all evaluated samples, so eps 0 gives the clean accuracy.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from afd_lightning.evaluation.analysis.auc import normalized_auc
from afd_lightning.evaluation.attacks.base import EvalAttack, MinNormAttack
from afd_lightning.evaluation.report.schema import CurveRecord, accuracy_at, eps_index
from afd_lightning.evaluation.stats import wilson_interval

SWEEP_MODES = ("survivors", "independent")
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass
class Curve:
    """One attack's robust-accuracy curve for one model, with the per-sample results behind it."""

    attack: str
    norm: str
    eps: list[float]
    robust: torch.Tensor  # bool (len(eps), n): sample i robust at eps k
    samples: torch.Tensor  # long (n,): indices into the evaluation subset
    min_norms: torch.Tensor | None = None  # float (n,) for minimum-norm attacks
    attacked: list[int] = field(default_factory=list)  # samples attacked at each eps (cost)
    seconds: float = 0.0
    mode: str = "survivors"
    info: dict = field(default_factory=dict)
    stages: dict[str, torch.Tensor] = field(default_factory=dict)  # AutoAttack: robust after each of its attacks

    @property
    def n(self) -> int:
        return int(self.robust.shape[1])

    @property
    def accuracy(self) -> list[float]:
        return [float(r.float().mean()) if self.n else math.nan for r in self.robust]

    @property
    def auc(self) -> float | None:
        """Normalised AUC; None for an attack run at fewer than two ε > 0 (a two-point area means nothing)."""
        return normalized_auc(self.eps, self.accuracy) if sum(e > 0 for e in self.eps) >= 2 else None

    def robust_at(self, eps: float) -> torch.Tensor | None:
        """Per-sample robustness (bool, n) at ``eps``; None if the curve did not measure it."""
        if self.min_norms is not None:
            return self.min_norms > eps
        k = eps_index(self.eps, eps)
        return None if k is None else self.robust[k]

    def accuracy_at(self, eps: float) -> float | None:
        """Accuracy at ``eps`` if the curve has it (a minimum-norm curve has every eps)."""
        if self.min_norms is not None:
            return float(self.min_norms.gt(eps).float().mean())
        return accuracy_at(self.eps, self.accuracy, eps)

    def robust_through(self) -> str:
        """Per sample, through how many of ``eps`` (from the first) it stayed robust, one base-36 digit each.

        The compact per-image record of results.json (``CurveRecord.robust_through``), which the paired test
        of ``afd-summarize --compare`` reads; "" where a sample is robust at some ε after failing at a smaller
        one (an independent sweep), since one count per sample cannot say that, and beyond 35 points.
        """
        steps = len(self.eps)
        if not self.n or steps > 35:
            return ""
        through = self.robust.sum(0)
        if not torch.equal(self.robust.cpu(), torch.arange(steps)[:, None] < through.cpu()[None, :]):
            return ""
        return "".join(_BASE36[int(k)] for k in through)

    def to_record(self, label: str = "", kind: str = "norm_ball") -> CurveRecord:
        acc = self.accuracy
        ci = [wilson_interval(a, self.n) for a in acc]
        rec = CurveRecord(
            attack=self.attack,
            norm=self.norm,
            eps=list(self.eps),
            accuracy=acc,
            n_samples=self.n,
            label=label or self.attack,
            kind=kind,
            auc=self.auc,
            ci_low=[lo for lo, _ in ci],
            ci_high=[hi for _, hi in ci],
            attacked_per_eps=list(self.attacked),
            seconds=round(self.seconds, 3),
            sweep_mode=self.mode,
            robust_through=self.robust_through(),
        )
        if self.min_norms is not None:
            finite = self.min_norms[torch.isfinite(self.min_norms) & (self.min_norms > 0)]
            rec.median_min_norm = float(finite.median()) if len(finite) else None
            rec.attack_failed = int(torch.isinf(self.min_norms).sum())
        if self.stages:
            rec.breakdown = {k: [float(r.float().mean()) for r in v] for k, v in self.stages.items()}
        return rec


def attack_seed(seed: int, name: str) -> int:
    """Each attack's own seed: an attack run alone gives the same numbers as inside the suite."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**31)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def _batches(idx: torch.Tensor, batch_size: int):
    for i in range(0, len(idx), batch_size):
        yield idx[i : i + batch_size]


def run_curve(
    model: nn.Module,
    attack: EvalAttack,
    x: torch.Tensor,
    y: torch.Tensor,
    correct: torch.Tensor,
    mode: str = "survivors",
    batch_size: int = 500,
    seed: int = 0,
    progress: Callable[[str | None], None] | None = None,
) -> Curve:
    """The curve of ``attack`` on ``(x, y)`` (already on the model's device); ``correct``: clean predictions right."""
    if mode not in SWEEP_MODES:
        from afd_lightning.errors import ConfigError

        raise ConfigError(f"sweep_mode={mode!r} must be one of {SWEEP_MODES}")
    n = len(x) if attack.n_samples is None else min(len(x), attack.n_samples)
    x, y, correct = x[:n], y[:n], correct[:n]
    torch.manual_seed(attack_seed(seed, attack.name))
    start = time.perf_counter()
    if isinstance(attack, MinNormAttack):
        curve = _min_norm_curve(model, attack, x, y, correct, mode, batch_size, progress)
    else:
        curve = _norm_ball_curve(model, attack, x, y, correct, mode, batch_size, progress)
    curve.seconds = time.perf_counter() - start
    curve.mode = mode
    return curve


def _norm_ball_curve(model, attack, x, y, correct, mode, batch_size, progress) -> Curve:
    robust = torch.zeros(len(attack.eps), len(x), dtype=torch.bool, device=x.device)
    stages: dict[str, torch.Tensor] = {}
    alive = correct.clone()
    attacked = []
    for k, eps in enumerate(attack.eps):
        if eps == 0:
            robust[k] = correct
            attacked.append(0)
            for stage in getattr(attack, "stage_names", ()):
                stages.setdefault(stage, torch.zeros_like(robust))[k] = correct
        else:
            idx = (alive if mode == "survivors" else correct).nonzero().flatten()
            attacked.append(len(idx))
            for b, batch in enumerate(_batches(idx, batch_size)):
                if progress:
                    progress(f"{attack.name} eps={eps:g} batch {b + 1}/{math.ceil(len(idx) / batch_size)}")
                x_adv = attack.perturb(model, x[batch], y[batch], eps)
                robust[k, batch] = predict(model, x_adv, batch_size) == y[batch]
                for stage, still in (getattr(attack, "last_stages", None) or {}).items():
                    stages.setdefault(stage, torch.zeros_like(robust))[k, batch] = still.to(robust.device)
        if mode == "survivors":
            alive = robust[k].clone()
        if progress:
            progress(None)
    return Curve(
        attack.name,
        attack.norm,
        list(attack.eps),
        robust.cpu(),
        torch.arange(len(x)),
        attacked=attacked,
        stages={k: v.cpu() for k, v in stages.items()},
    )


def _min_norms(model, attack, x, y, correct, batch_size, progress, what) -> torch.Tensor:
    norms = torch.zeros(len(x), device=x.device)  # clean mistakes: adversarial already at norm 0
    idx = correct.nonzero().flatten()
    for b, batch in enumerate(_batches(idx, batch_size)):
        if progress:
            progress(f"{attack.name} {what} batch {b + 1}/{math.ceil(len(idx) / batch_size)}")
        norms[batch] = attack.min_norms(model, x[batch], y[batch])
    return norms


def _min_norm_curve(model, attack, x, y, correct, mode, batch_size, progress) -> Curve:
    robust = torch.zeros(len(attack.eps), len(x), dtype=torch.bool)
    n_correct = int(correct.sum())
    if mode == "survivors":  # one run gives the whole curve
        norms = _min_norms(model, attack, x, y, correct, batch_size, progress, "min-norm").cpu()
        for k, eps in enumerate(attack.eps):
            robust[k] = norms > eps
            if progress:
                progress(None)
        attacked = [n_correct] + [0] * (len(attack.eps) - 1)
        return Curve(attack.name, attack.norm, list(attack.eps), robust, torch.arange(len(x)), norms, attacked)
    attacked = []
    for k, eps in enumerate(attack.eps):
        if eps == 0:
            robust[k] = correct.cpu()
            attacked.append(0)
        else:  # the naive way: a fresh run for every eps point
            norms = _min_norms(model, attack, x, y, correct, batch_size, progress, f"eps={eps:g}").cpu()
            robust[k] = norms > eps
            attacked.append(n_correct)
        if progress:
            progress(None)
    return Curve(attack.name, attack.norm, list(attack.eps), robust, torch.arange(len(x)), None, attacked)
