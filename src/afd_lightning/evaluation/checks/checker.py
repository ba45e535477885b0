"""Honesty checks: the symptoms of gradient masking and weak attacks, as named pass / FAIL / n/a results.

Each check returns a :class:`~afd_lightning.evaluation.report.schema.CheckResult`; ``passed`` is None
("n/a") where the check cannot fail on this suite or sweep.  A check never raises: a failed check
is a finding to report, not a crash.

Attacks run on the same samples, so two attacks are compared per sample (McNemar): attack B
"beats" attack A when B broke significantly more of the samples A left standing than the reverse
(``z`` standard errors of the discordant count, and more than ``min_gap`` of the samples; see
:func:`~afd_lightning.evaluation.stats.paired_gap_significant`). A check that makes several comparisons
(an attack at every ε against PGD, say) holds that level for all of them together (Holm's correction,
:func:`~afd_lightning.evaluation.stats.significant_gaps`): with 30 comparisons at z = 2, one would
otherwise cross the line by chance about half the time, and an NT model failed ``pgd_linf_not_beaten`` so.

The checks follow the AFD paper's Sec. 3 argument against obfuscated gradients, Athalye et al.
(2018) and Carlini et al. (2019):

* ``attack_self_test`` -- on a naturally trained (NT) model every attack reaches <= 5% accuracy at
  its largest ε (<= 10% gradient-free; transfer attacks at the largest ε of their white-box sweep);
* ``monotone_in_eps`` -- independent sweeps do not rise with ε (n/a for survivors and min-norm curves,
  monotone by construction);
* ``large_eps_near_zero`` -- at an ε that can move every image to the grey image (L∞ >= 0.5,
  L2 >= 0.5 sqrt(d), L1 >= 0.5 d) iterative and min-norm attacks leave <= ``large_eps_ceiling``;
* ``iterative_beats_single_step`` -- FGSM breaks no significant set of samples PGD left;
* ``white_box_beats_black_box`` -- transfer breaks no significant set the white-box attack left;
* ``gradient_free_not_stronger`` -- SPSA / Boundary break no significant set every gradient attack left;
* ``more_steps_not_higher`` -- the short PGD breaks no significant set the longer one left;
* ``pgd_linf_not_beaten`` -- no other L∞ attack (AutoAttack, adaptive, MIM...) breaks a significant
  set PGD-L∞ left, i.e. the PGD numbers are not overestimates;
* ``worst_case_near_pgd`` -- the per-sample worst case over every L∞ attack is not far below PGD-L∞;
* ``no_saturation`` -- few of the samples cross-entropy PGD-L∞ leaves standing at the Table 1 ε have
  p(y) = 1.0 in float32 or a vanishing input gradient (there, "robust" may mean "no gradient to follow").

Like with like.  A model check compares attacks of one class: input-space gradient attacks of one norm,
the one expected to be at least as strong first (more steps, more restarts, a loss that does not saturate,
or white box against transfer).  Two kinds of comparison say more about the attacks than about the model,
and are reported apart, as *attack diagnostics* (:attr:`Checker.diagnostics`, ``ModelRecord.diagnostics``),
never counted as a model failure:

* an attack that does not follow the classification loss in input space (``objective="embedding"``:
  PGD on ``‖E(x′) − E(x)‖²``, which may leave the label alone) or a targeted one (one target class) set
  against an untargeted attack: ``iterative_beats_single_step`` compares only untargeted label-loss attacks;
* a single step of length ε >= the erase budget (L∞ 0.5: every pixel can reach the grey image): one FGSM
  step that large lands on a corner of the cube, so whether it fools the model depends on how far it
  overshoots, not on what the model learned (``iterative_beats_single_step``, ``white_box_beats_black_box``
  and ``monotone_in_eps`` of a single-step attack at such an ε).

A stronger attack of the same threat model beating PGD (AutoAttack or PGD-100×3 against PGD-40) stays a
model check: it is a true finding about PGD's number (``pgd_linf_not_beaten``, ``worst_case_near_pgd``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from afd_lightning.evaluation.attacks.advertorch import TransferAttack
from afd_lightning.evaluation.attacks.base import EvalAttack
from afd_lightning.evaluation.report.schema import CheckResult, WorstCase
from afd_lightning.evaluation.stats import (
    binomial_tail,
    one_sided_p,
    paired_counts,
    paired_gap_significant,
    significant_gaps,
)
from afd_lightning.evaluation.sweep import Curve

# A paired comparison: (label "first vs second", per-sample robust under the first, robust under the second).
Pair = tuple[str, torch.Tensor, torch.Tensor]


def unbounded_eps(norm: str, dim: int) -> float:
    """The eps at which every image in [0, 1]^dim can be moved to the constant 0.5 image."""
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


def _fmt(p):
    return "n/a" if p is None else f"{100 * p:.1f}%"


class Checker:
    """Runs every check on one model's curves.

    Args:
        curves: ``{attack_name: Curve}`` for one model (transfer curves included, named ``<attack>_bb``).
        attacks: ``{attack_name: EvalAttack}`` for the same names.
        y: labels of the evaluated samples; ``correct``: the model's clean predictions right.
        dim: number of input values per image (C * H * W).
        natural: the model is naturally trained: run the attack self-test on it.
        worst_case, saturation: from :mod:`afd_lightning.evaluation.suite`.
        z, min_gap: significance of a paired gap (standard errors of McNemar's statistic, fraction of n).
        correction: ``holm`` (the default): ``z``'s level holds for all the comparisons one check makes together
            (Holm's step-down); ``none``: each comparison at ``z`` on its own.
        large_eps_ceiling: most accuracy left at an ε that can erase any image.
        self_test_max, self_test_max_gradient_free: most accuracy an attack may leave on an NT model.
        saturation_max_share: most clean-correct samples with p(y) = 1.0 or a vanishing gradient.
    """

    def __init__(
        self,
        curves: Mapping[str, Curve],
        attacks: Mapping[str, EvalAttack],
        y: torch.Tensor,
        correct: torch.Tensor,
        dim: int,
        natural: bool = False,
        worst_case: WorstCase | None = None,
        worst_robust: torch.Tensor | None = None,
        saturation: dict | None = None,
        saturated: torch.Tensor | None = None,
        table_eps: float | None = None,
        z: float = 2.0,
        min_gap: float = 0.01,
        large_eps_ceiling: float = 0.02,
        self_test_max: float = 0.05,
        self_test_max_gradient_free: float = 0.10,
        saturation_max_share: float = 0.05,
        grad_threshold: float = 1e-8,
        correction: str = "holm",
    ):
        self.curves, self.attacks, self.y, self.correct, self.dim = curves, attacks, y.cpu(), correct.cpu(), dim
        self.natural, self.worst_case, self.worst_robust, self.saturation = (
            natural,
            worst_case,
            worst_robust,
            saturation,
        )
        self.saturated = saturated
        self.table_eps = table_eps
        self.z, self.min_gap, self.large_eps_ceiling = z, min_gap, large_eps_ceiling
        self.correction = correction
        self.self_test_max, self.self_test_max_gf = self_test_max, self_test_max_gradient_free
        self.saturation_max_share = saturation_max_share
        self.diagnostics: list[CheckResult] = []

    def run(self) -> list[CheckResult]:
        """The model checks; the attack diagnostics (comparisons across attack classes) go to :attr:`diagnostics`."""
        self.diagnostics = []
        checks = [
            self.attack_self_test,
            self.monotone_in_eps,
            self.large_eps_near_zero,
            self.iterative_beats_single_step,
            self.white_box_beats_black_box,
            self.gradient_free_not_stronger,
            self.more_steps_not_higher,
            self.pgd_linf_not_beaten,
            self.worst_case_near_pgd,
            self.no_saturation,
        ]
        out = []
        for check in checks:
            try:
                out.append(check())
            except Exception as err:  # a check must never take the evaluation down
                out.append(CheckResult(check.__name__, None, f"could not run: {type(err).__name__}: {err}"))
        return out

    def _diagnose(self, name: str, pairs: list[Pair], why: str) -> None:
        """Record the pairs a check set aside (attacks of different classes) as an attack diagnostic."""
        if pairs:
            r = self._paired(name, pairs, why)
            r.details = f"attack diagnostic ({why}): {r.details}"
            self.diagnostics.append(r)

    # ------------------------------------------------------------------ helpers
    def _white_box(self, name: str) -> bool:
        a = self.attacks.get(name)
        return a is not None and a.kind != "transfer"

    def _paired(self, name: str, pairs: list[Pair], what: str) -> CheckResult:
        """pairs: (label "first vs second", robust under first, robust under second), the first expected at least
        as strong; FAIL iff the second breaks significantly more of the samples the first left than the reverse."""
        if not pairs:
            aside = any(d.name == name for d in self.diagnostics)
            why = " (its comparisons across attack classes are attack diagnostics)" if aside else ""
            return CheckResult(name, None, f"n/a: the suite has no {what}{why}")
        bad, numbers = [], {}
        counts = []
        for _, strong, weak in pairs:
            n = min(len(strong), len(weak))
            counts.append((*paired_counts(strong[:n], weak[:n]), n))
        verdicts = significant_gaps(counts, self.z, self.min_gap, self.correction)
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

    def _at(self, name, eps):
        return self.curves[name].robust_at(eps)

    # ------------------------------------------------------------------ checks
    def attack_self_test(self) -> CheckResult:
        if not self.natural:
            return CheckResult("attack_self_test", None, "n/a: runs on a naturally trained (NT) model only")
        numbers, bad = {}, []
        for name, c in self.curves.items():
            a = self.attacks[name]
            eps = c.eps[-1]
            acc = c.accuracy_at(eps)
            assert acc is not None  # eps is the curve's own last point
            limit = self.self_test_max_gf if a.gradient_free else self.self_test_max
            failed = acc > limit + 1e-6  # float32 means: 2/40 is 0.0500000007
            numbers[name] = {"eps": eps, "accuracy": round(acc, 4), "limit": limit, "n": c.n, "failed": failed}
            if failed:
                bad.append(f"{name} leaves {_fmt(acc)} of an NT model correct at eps={eps:g} (limit {_fmt(limit)})")
        if not numbers:
            return CheckResult("attack_self_test", None, "n/a: no attacks")
        return CheckResult(
            "attack_self_test", not bad, "; ".join(bad) or "ok: every attack breaks the NT model", numbers
        )

    def monotone_in_eps(self) -> CheckResult:
        numbers, bad, overshoots = {}, [], []
        for name, c in self.curves.items():
            if c.mode == "survivors" or c.min_norms is not None:
                continue
            acc = c.accuracy
            rises = []
            for k in range(len(acc) - 1):
                only_next, only_prev = paired_counts(c.robust[k + 1], c.robust[k])
                # robust at the larger eps but not the smaller one: the attack failed where it had worked
                if paired_gap_significant(only_next, only_prev, c.n, self.z, self.min_gap):
                    rise = (c.eps[k + 1], acc[k], acc[k + 1])
                    if overshooting_step(self.attacks[name], c.eps[k + 1], self.dim):
                        overshoots.append(f"{name} rises to {_fmt(acc[k + 1])} at eps={c.eps[k + 1]:g}")
                    else:
                        rises.append(rise)
            numbers[name] = {
                "eps": c.eps,
                "accuracy": [round(a, 4) for a in acc],
                "rises": rises,
                "failed": bool(rises),
            }
            bad += [f"{name} rises to {_fmt(a1)} at eps={e:g} from {_fmt(a0)}" for e, a0, a1 in rises]
        if overshoots:
            self.diagnostics.append(
                CheckResult(
                    "monotone_in_eps",
                    False,
                    "attack diagnostic (a single step >= the erase budget overshoots): " + "; ".join(overshoots),
                )
            )
        if not numbers:
            return CheckResult(
                "monotone_in_eps", None, "n/a: survivors sweeps and minimum-norm curves are monotone by construction"
            )
        return CheckResult(
            "monotone_in_eps", not bad, "; ".join(bad) or "ok: no curve rises with eps beyond noise", numbers
        )

    def large_eps_near_zero(self) -> CheckResult:
        numbers, bad = {}, []
        for name, c in self.curves.items():
            a = self.attacks[name]
            if not self._white_box(name) or a.gradient_free or not (a.iterative or a.kind == "min_norm"):
                continue
            limit = unbounded_eps(c.norm, self.dim)
            if c.eps[-1] < limit - 1e-9:
                continue
            n = c.n
            # Sound bound: every image can become the one grey image, so only its class can stay right.
            share = max(float(((self.y[:n] == k) & self.correct[:n]).float().mean()) for k in self.y[:n].unique())
            acc = c.accuracy[-1]
            numbers[name] = {
                "eps": c.eps[-1],
                "accuracy": round(acc, 4),
                "ceiling": self.large_eps_ceiling,
                "grey_image_bound": round(share, 4),
                "n": n,
                "failed": acc > self.large_eps_ceiling,
            }
            if acc > self.large_eps_ceiling:
                bad.append(
                    f"{name} leaves {_fmt(acc)} correct at eps={c.eps[-1]:g} (>= {limit:g} can turn every "
                    f"image grey; ceiling {_fmt(self.large_eps_ceiling)})"
                )
        if not numbers:
            return CheckResult(
                "large_eps_near_zero", None, "n/a: no iterative sweep reaches the eps that can erase any image"
            )
        return CheckResult("large_eps_near_zero", not bad, "; ".join(bad) or "ok: " + ", ".join(numbers), numbers)

    def iterative_beats_single_step(self) -> CheckResult:
        pairs: list[Pair] = []
        aside: list[Pair] = []
        for it, ci in self.curves.items():
            ai = self.attacks[it]
            if not self._white_box(it) or not ai.iterative or ai.gradient_free or ai.kind != "norm_ball":
                continue
            for ss in self.curves:
                a_s = self.attacks[ss]
                if not self._white_box(ss) or a_s.iterative or a_s.norm != ai.norm:
                    continue
                like = label_loss_untargeted(ai) and label_loss_untargeted(a_s)
                for e in ci.eps:
                    if e > 0 and (p := self._at(it, e)) is not None and (q := self._at(ss, e)) is not None:
                        pair = (f"{it} vs {ss} @ {e:g}", p, q)
                        (pairs if like and not overshooting_step(a_s, e, self.dim) else aside).append(pair)
        self._diagnose(
            "iterative_beats_single_step",
            aside,
            "another objective (embedding, targeted) or a single step >= the erase budget",
        )
        return self._paired(
            "iterative_beats_single_step", pairs, "iterative and single-step label-loss attack of one norm"
        )

    def white_box_beats_black_box(self) -> CheckResult:
        pairs: list[Pair] = []
        aside: list[Pair] = []
        for bb, cb in self.curves.items():
            a = self.attacks[bb]
            if not isinstance(a, TransferAttack) or a.inner.name not in self.curves:
                continue
            for e in cb.eps:
                if e > 0 and (p := self._at(a.inner.name, e)) is not None:
                    pair = (f"{a.inner.name} vs {bb} @ {e:g}", p, self._at(bb, e))
                    (aside if overshooting_step(a.inner, e, self.dim) else pairs).append(pair)
        self._diagnose("white_box_beats_black_box", aside, "a single step >= the erase budget overshoots")
        return self._paired("white_box_beats_black_box", pairs, "black-box transfer attack (pass source_ckpt=...)")

    def gradient_free_not_stronger(self) -> CheckResult:
        pairs = []
        for gf, cg in self.curves.items():
            ag = self.attacks[gf]
            if not ag.gradient_free or not self._white_box(gf):
                continue
            grads = [
                g
                for g, a in self.attacks.items()
                if g in self.curves and self._white_box(g) and not a.gradient_free and a.norm == ag.norm
            ]
            for e in cg.eps:
                rs = [r[: cg.n] for g in grads if e > 0 and (r := self._at(g, e)) is not None]
                if rs:  # robust to every gradient attack of this norm at e
                    pairs.append((f"gradient attacks vs {gf} @ {e:g}", torch.stack(rs).all(0), self._at(gf, e)))
        return self._paired(
            "gradient_free_not_stronger", pairs, "gradient-free attack with a gradient attack of the same norm and eps"
        )

    def more_steps_not_higher(self) -> CheckResult:
        pairs = []
        for strong, cs in self.curves.items():
            base = strong.removesuffix("_strong")
            if base == strong or base not in self.curves:
                continue
            for e in cs.eps:
                if e > 0 and (q := self._at(base, e)) is not None:
                    pairs.append((f"{strong} vs {base} @ {e:g}", self._at(strong, e), q))
        return self._paired("more_steps_not_higher", pairs, "stronger (more steps/restarts) PGD run")

    def pgd_linf_not_beaten(self) -> CheckResult:
        if "pgd_linf" not in self.curves:
            return CheckResult("pgd_linf_not_beaten", None, "n/a: no pgd_linf in the suite")
        pairs = []
        for name, c in self.curves.items():
            a = self.attacks[name]
            if name == "pgd_linf" or not self._white_box(name) or a.norm != "linf" or a.gradient_free:
                continue
            if not a.iterative:
                continue
            for e in c.eps:
                if e > 0 and (p := self._at("pgd_linf", e)) is not None and (q := self._at(name, e)) is not None:
                    # PGD must not leave standing a significant set of samples the other attack breaks.
                    pairs.append((f"pgd_linf vs {name} @ {e:g}", p, q))
        return self._paired("pgd_linf_not_beaten", pairs, "other iterative L∞ attack")

    def worst_case_near_pgd(self) -> CheckResult:
        wc = self.worst_case
        if wc is None or self.worst_robust is None or "pgd_linf" not in self.curves or len(wc.attacks) < 2:
            return CheckResult(
                "worst_case_near_pgd", None, "n/a: needs pgd_linf and another L∞ attack at the table eps"
            )
        pgd = self._at("pgd_linf", wc.eps)
        if pgd is None:
            return CheckResult("worst_case_near_pgd", None, f"n/a: pgd_linf did not run at eps={wc.eps:g}")
        r = self._paired(
            "worst_case_near_pgd", [(f"pgd_linf vs worst case @ {wc.eps:g}", pgd, self.worst_robust)], "worst case"
        )
        r.details = f"PGD-L∞ {_fmt(float(pgd.float().mean()))}, worst case {_fmt(wc.accuracy)}: " + r.details
        return r

    def no_saturation(self) -> CheckResult:
        s = self.saturation
        if not s or not s.get("n_correct") or self.saturated is None:
            return CheckResult("no_saturation", None, "n/a: not measured")
        survivors, where = self.correct, "clean-correct samples"
        pgd = self._at("pgd_linf", self.table_eps) if "pgd_linf" in self.curves and self.table_eps else None
        if pgd is not None:
            survivors, where = pgd.cpu(), f"samples PGD-L∞ leaves standing at eps={self.table_eps:g}"
        n = int(survivors.sum())
        hit = int((self.saturated[: len(survivors)] & survivors).sum())
        share = hit / n if n else 0.0
        numbers = {
            **s,
            "survivors": n,
            "saturated_survivors": hit,
            "share": round(share, 4),
            "max_share": self.saturation_max_share,
        }
        text = (
            f"{hit} of {n} {where} have p(y) = 1.0 in float32 or an input gradient below "
            f"{s['grad_threshold']:g} ({_fmt(share)}); over all {s['n_correct']} clean-correct samples: "
            f"{s['p_one']} with p(y) = 1.0, {s['grad_below']} with a vanishing gradient"
        )
        # a handful of survivors is noise, not masking: the saturated ones must also be > min_gap of all samples,
        # and their share significantly above max_share (one-sided binomial test at the level of ``z``): one
        # saturated sample among the 1 or 2 that PGD leaves on an NT model says nothing
        p_value = binomial_tail(hit, n, self.saturation_max_share)
        numbers["p"] = round(p_value, 6)
        ok = (
            share <= self.saturation_max_share
            or hit <= self.min_gap * len(self.correct)
            or p_value > one_sided_p(self.z)
        )
        return CheckResult("no_saturation", ok, ("ok: " if ok else "gradient masking risk: ") + text, numbers)
