"""Honesty checks: the symptoms of gradient masking and weak attacks, as named pass/fail results.

Each check returns ``{"name", "passed", "detail", "numbers"}`` with ``passed`` True, False or None
(not applicable: the suite lacks the attacks it compares).  A check never raises: a failed check
is a finding to report, not a crash.  Accuracies are compared with a tolerance of
``max(min_tolerance, z * sqrt(p (1 - p) / n))`` (binomial sampling noise).

The checks follow the AFD paper's Sec. 3 argument against obfuscated gradients and Athalye et al.
(2018) / Carlini et al. (2019):

* ``monotone_in_eps`` -- accuracy does not rise with eps (by construction in the survivors sweep);
* ``large_eps_near_zero`` -- an iterative or minimum-norm attack whose largest eps lets it turn
  every image into the same grey image (L∞ >= 0.5, L2 >= 0.5 sqrt(d), L1 >= 0.5 d) leaves at most
  the largest class's share correct;
* ``iterative_beats_single_step`` -- PGD is no weaker than FGSM at the same eps;
* ``white_box_beats_black_box`` -- an attack on the model itself is no weaker than transfer;
* ``gradient_free_not_stronger`` -- SPSA / Boundary do not beat the gradient attacks of their norm;
* ``more_steps_not_higher`` -- more PGD steps and restarts do not raise accuracy;
* ``pgd_linf_not_beaten`` -- no stronger L∞ attack (more steps, MIM, AutoAttack) goes far below
  PGD-L∞, i.e. the PGD numbers in Table 1 are not overestimates.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from afd_lightning.evaluation.attacks import EvalAttack
from afd_lightning.evaluation.sweep import Curve


def tolerance(p: float, n: int, z: float = 2.0, min_tolerance: float = 0.02) -> float:
    if n <= 0 or not math.isfinite(p):
        return 1.0
    p = min(max(p, 0.0), 1.0)
    return max(min_tolerance, z * math.sqrt(p * (1 - p) / n))


def unbounded_eps(norm: str, dim: int) -> float:
    """The eps at which every image in [0, 1]^dim can be moved to the constant 0.5 image."""
    return {"linf": 0.5, "l2": 0.5 * math.sqrt(dim), "l1": 0.5 * dim}[norm]


def accuracy_on(curve: Curve, eps: float, n: int | None = None) -> float | None:
    """Accuracy of ``curve`` at ``eps`` over its first ``n`` samples (None: all); None if not measured."""
    n = curve.n if n is None else min(n, curve.n)
    if n == 0:
        return None
    if curve.min_norms is not None:
        return float((curve.min_norms[:n] > eps).float().mean())
    for k, e in enumerate(curve.eps):
        if math.isclose(e, eps, rel_tol=1e-6, abs_tol=1e-9):
            return float(curve.robust[k, :n].float().mean())
    return None


def _result(name, passed, detail, numbers) -> dict:
    return {"name": name, "passed": passed, "detail": detail, "numbers": numbers}


def _fmt(p):
    return "n/a" if p is None else f"{100 * p:.1f}%"


class Checker:
    """Runs every check on one model's curves.

    Args:
        curves: ``{attack_name: Curve}`` for one model (transfer curves included, named ``<attack>_bb``).
        attacks: ``{attack_name: EvalAttack}`` for the same names.
        y: labels of the evaluated samples; ``correct``: the model's clean predictions right.
        dim: number of input values per image (C * H * W).
    """

    def __init__(self, curves: Mapping[str, Curve], attacks: Mapping[str, EvalAttack], y: torch.Tensor,
                 correct: torch.Tensor, dim: int, z: float = 2.0, min_tolerance: float = 0.02):
        self.curves, self.attacks, self.y, self.correct, self.dim = curves, attacks, y.cpu(), correct.cpu(), dim
        self.z, self.min_tolerance = z, min_tolerance

    def tol(self, p: float, n: int) -> float:
        return tolerance(p, n, self.z, self.min_tolerance)

    def run(self) -> list[dict]:
        checks = [self.monotone_in_eps, self.large_eps_near_zero, self.iterative_beats_single_step,
                  self.white_box_beats_black_box, self.gradient_free_not_stronger,
                  self.more_steps_not_higher, self.pgd_linf_not_beaten]
        out = []
        for check in checks:
            try:
                out.append(check())
            except Exception as err:  # a check must never take the evaluation down
                out.append(_result(check.__name__, None, f"could not run: {type(err).__name__}: {err}", {}))
        return out

    # ------------------------------------------------------------------ helpers
    def _white_box(self, name: str) -> bool:
        a = self.attacks.get(name)
        return a is not None and a.kind != "transfer"

    def _compare(self, name, pairs, weaker_must_be_higher: bool, what: str) -> dict:
        """pairs: (label, acc_strong, acc_weak, n); pass iff acc_strong <= acc_weak + tol for each."""
        if not pairs:
            return _result(name, None, f"not applicable: the suite has no {what}", {})
        bad, numbers = [], {}
        for label, strong, weak, n in pairs:
            tol = self.tol(max(strong, weak), n)
            numbers[label] = {"expected_lower": round(strong, 4), "expected_higher": round(weak, 4),
                              "tolerance": round(tol, 4), "n": n}
            if strong > weak + tol:
                bad.append(f"{label}: {_fmt(strong)} > {_fmt(weak)} + {100 * tol:.1f}%")
        detail = "ok: " + "; ".join(numbers) if not bad else "; ".join(bad)
        return _result(name, not bad, detail, numbers)

    # ------------------------------------------------------------------ checks
    def monotone_in_eps(self) -> dict:
        numbers, bad = {}, []
        for name, c in self.curves.items():
            acc = c.accuracy
            rises = [(c.eps[k + 1], acc[k], acc[k + 1]) for k in range(len(acc) - 1)
                     if acc[k + 1] > acc[k] + self.tol(acc[k], c.n)]
            numbers[name] = {"eps": c.eps, "accuracy": [round(a, 4) for a in acc], "rises": rises}
            bad += [f"{name} rises to {_fmt(a1)} at eps={e:g} from {_fmt(a0)}" for e, a0, a1 in rises]
        if not numbers:
            return _result("monotone_in_eps", None, "not applicable: no curves", {})
        return _result("monotone_in_eps", not bad, "; ".join(bad) or "ok: no curve rises with eps beyond noise", numbers)

    def large_eps_near_zero(self) -> dict:
        numbers, bad = {}, []
        for name, c in self.curves.items():
            a = self.attacks[name]
            if not self._white_box(name) or not (a.iterative or a.kind == "min_norm"):
                continue
            limit = unbounded_eps(c.norm, self.dim)
            if c.eps[-1] < limit - 1e-9:
                continue
            n = c.n
            # A perfect attack maps every image to one grey image: only that image's class stays right.
            share = max(float(((self.y[:n] == k) & self.correct[:n]).float().mean()) for k in self.y[:n].unique())
            acc = c.accuracy[-1]
            tol = self.tol(share, n)
            numbers[name] = {"eps": c.eps[-1], "accuracy": round(acc, 4), "bound": round(share, 4),
                             "tolerance": round(tol, 4), "n": n}
            if acc > share + tol:
                bad.append(f"{name} leaves {_fmt(acc)} correct at eps={c.eps[-1]:g} (>= {limit:g} turns every "
                           f"image grey; at most {_fmt(share)} can stay correct)")
        if not numbers:
            return _result("large_eps_near_zero", None,
                           "not applicable: no iterative sweep reaches the eps that can erase any image", {})
        return _result("large_eps_near_zero", not bad, "; ".join(bad) or "ok: " + ", ".join(numbers), numbers)

    def iterative_beats_single_step(self) -> dict:
        pairs = []
        for it, ci in self.curves.items():
            ai = self.attacks[it]
            if not self._white_box(it) or not ai.iterative or ai.gradient_free or ai.kind != "norm_ball":
                continue
            for ss, cs in self.curves.items():
                a_s = self.attacks[ss]
                if not self._white_box(ss) or a_s.iterative or a_s.norm != ai.norm:
                    continue
                for e in ci.eps:
                    if e > 0 and (p := accuracy_on(ci, e)) is not None and (q := accuracy_on(cs, e)) is not None:
                        pairs.append((f"{it} vs {ss} @ {e:g}", p, q, min(ci.n, cs.n)))
        return self._compare("iterative_beats_single_step", pairs, True, "iterative and single-step attack of one norm")

    def white_box_beats_black_box(self) -> dict:
        pairs = []
        for bb, cb in self.curves.items():
            a = self.attacks[bb]
            if a.kind != "transfer":
                continue
            wb = getattr(a, "inner").name
            if wb not in self.curves:
                continue
            for e in cb.eps:
                if e > 0 and (p := accuracy_on(self.curves[wb], e)) is not None:
                    pairs.append((f"{wb} @ {e:g}", p, cb.accuracy[cb.eps.index(e)], min(cb.n, self.curves[wb].n)))
        return self._compare("white_box_beats_black_box", pairs, True,
                             "black-box transfer attack (pass source_ckpt=...)")

    def gradient_free_not_stronger(self) -> dict:
        pairs = []
        for gf, cg in self.curves.items():
            ag = self.attacks[gf]
            if not ag.gradient_free or not self._white_box(gf):
                continue
            grads = [g for g, a in self.attacks.items()
                     if g in self.curves and self._white_box(g) and not a.gradient_free and a.norm == ag.norm]
            for e in cg.eps:
                if e <= 0:
                    continue
                accs = [(g, accuracy_on(self.curves[g], e, cg.n)) for g in grads]
                accs = [(g, p) for g, p in accs if p is not None]
                if not accs:
                    continue
                best_g, best = min(accs, key=lambda t: t[1])
                pairs.append((f"{best_g} vs {gf} @ {e:g}", best, accuracy_on(cg, e), cg.n))
        return self._compare("gradient_free_not_stronger", pairs, True,
                             "gradient-free attack with a gradient attack of the same norm and eps")

    def more_steps_not_higher(self) -> dict:
        pairs = []
        for strong, cs in self.curves.items():
            base = strong.removesuffix("_strong")
            if base == strong or base not in self.curves:
                continue
            for e in cs.eps:
                if e > 0 and (q := accuracy_on(self.curves[base], e)) is not None:
                    pairs.append((f"{strong} vs {base} @ {e:g}", accuracy_on(cs, e), q, cs.n))
        return self._compare("more_steps_not_higher", pairs, True, "stronger (more steps/restarts) PGD run")

    def pgd_linf_not_beaten(self) -> dict:
        if "pgd_linf" not in self.curves:
            return _result("pgd_linf_not_beaten", None, "not applicable: no pgd_linf in the suite", {})
        base = self.curves["pgd_linf"]
        pairs = []
        for name, c in self.curves.items():
            a = self.attacks[name]
            if name == "pgd_linf" or not self._white_box(name) or a.norm != "linf" or a.gradient_free:
                continue
            if not a.iterative:
                continue
            for e in c.eps:
                if e > 0 and (p := accuracy_on(base, e)) is not None and (q := accuracy_on(c, e)) is not None:
                    # PGD-L∞ is the "strong" side here: it must not sit above the other attack by more than noise.
                    pairs.append((f"pgd_linf vs {name} @ {e:g}", p, q, min(base.n, c.n)))
        return self._compare("pgd_linf_not_beaten", pairs, True, "other iterative L∞ attack")
