"""Honesty checks: the symptoms of gradient masking and weak attacks, as named pass / FAIL / n/a results.

Each check is a function of one model's :class:`~.registry.Evidence` and the :class:`~.settings.CheckSettings`,
registered under its name (``@register``), which is its key under ``checks.run`` in ``conf/eval/eval.yaml``
and its name in results.json. It returns a :class:`~afd_lightning.evaluation.report.schema.CheckResult`;
``passed`` is None ("n/a") where the check cannot fail on this suite or sweep. A check never raises out of
:func:`~.checker.run_checks`: a failed check is a finding to report, not a crash. Two attacks are compared per
sample, with Holm's correction over one check's comparisons (:func:`.paired.paired`).

The checks follow the AFD paper's Sec. 3 argument against obfuscated gradients, Athalye et al.
(2018) and Carlini et al. (2019):

* ``attack_self_test`` -- on a naturally trained (NT) model every attack reaches <= 5% accuracy at
  its largest ε (<= 10% gradient-free; transfer attacks at the largest ε of their white-box sweep; a single
  step at its best ε, saturated samples aside: :func:`single_step_point`);
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
and are reported apart, as *attack diagnostics* (``Evidence.diagnostics``, ``ModelRecord.diagnostics``),
never counted as a model failure:

* an attack that does not follow the classification loss in input space (``objective="embedding"``:
  PGD on ``‖E(x′) − E(x)‖²``, which may leave the label alone) or a targeted one (one target class) set
  against an untargeted attack: ``iterative_beats_single_step`` compares only untargeted label-loss attacks;
* a single step of length ε >= the erase budget (L∞ 0.5: every pixel can reach the grey image): one FGSM
  step that large lands on a corner of the cube, so whether it fools the model depends on how far it
  overshoots, not on what the model learned (``iterative_beats_single_step``, ``white_box_beats_black_box``
  and ``monotone_in_eps`` of a single-step attack at such an ε); for the same reason ``attack_self_test``
  judges a single step at its best ε and not on samples whose softmax is saturated (one step has only the
  underflowed gradient at x to follow there), and reports what its largest ε alone said as a diagnostic.

A stronger attack of the same threat model beating PGD (AutoAttack or PGD-100×3 against PGD-40) stays a
model check: it is a true finding about PGD's number (``pgd_linf_not_beaten``, ``worst_case_near_pgd``).
"""

from __future__ import annotations

import torch

from afd_lightning.evaluation.attacks.advertorch import TransferAttack
from afd_lightning.evaluation.checks.paired import (
    Pair,
    fmt,
    label_loss_untargeted,
    objective,
    overshooting_step,
    own_robust,
    paired,
    robust_at,
    set_aside,
    unbounded_eps,
    white_box,
)
from afd_lightning.evaluation.checks.registry import Evidence, register
from afd_lightning.evaluation.checks.settings import CheckSettings
from afd_lightning.evaluation.report.schema import CheckResult
from afd_lightning.evaluation.stats import binomial_tail, one_sided_p, paired_counts, paired_gap_significant

# The checks run in this file's order unless ``checks.run`` in eval.yaml gives another.


@register
def attack_self_test(ev: Evidence, s: CheckSettings) -> CheckResult:
    if not ev.natural:
        return CheckResult("attack_self_test", None, "n/a: runs on a naturally trained (NT) model only")
    numbers, bad, aside = {}, [], []
    for name, c in ev.curves.items():
        a = ev.attacks[name]
        limit = s.self_test_max_gradient_free if a.gradient_free else s.self_test_max
        eps = c.eps[-1]
        acc = c.accuracy_at(eps)
        assert acc is not None  # eps is the curve's own last point
        entry: dict = {}
        if not a.iterative and (point := single_step_point(ev, name)) is not None:
            eps, judged, entry = point
            if entry and acc > limit + 1e-6:  # what the largest eps alone would have said: an attack diagnostic
                why = f"judged at eps={eps:g}: {fmt(judged)}"
                if entry.get("saturated_set_aside"):
                    why += f" with {entry['saturated_set_aside']} saturated samples set aside"
                aside.append(f"{name} leaves {fmt(acc)} of an NT model correct at eps={c.eps[-1]:g} ({why})")
            acc = judged
        failed = acc > limit + 1e-6  # float32 means: 2/40 is 0.0500000007
        if failed and objective(a) == "embedding":
            # Like with like: embedding-space PGD maximises ||E(x') - E(x)||^2, not a label loss, so how many labels
            # it leaves on an NT model says how well that objective misleads Dc, not whether the attack works.
            aside.append(
                f"{name} leaves {fmt(acc)} of an NT model correct at eps={eps:g} (its objective is not a label loss)"
            )
            failed = False
            entry = {**entry, "objective": "embedding"}
        numbers[name] = {"eps": eps, "accuracy": round(acc, 4), "limit": limit, "n": c.n, "failed": failed, **entry}
        if failed:
            bad.append(f"{name} leaves {fmt(acc)} of an NT model correct at eps={eps:g} (limit {fmt(limit)})")
    if aside:
        ev.diagnostics.append(
            CheckResult(
                "attack_self_test",
                False,
                "attack diagnostic (a single step is judged at its best eps, on the samples whose softmax is not "
                "saturated; an attack whose objective is not a label loss is not judged): " + "; ".join(aside),
            )
        )
    if not numbers:
        return CheckResult("attack_self_test", None, "n/a: no attacks")
    return CheckResult("attack_self_test", not bad, "; ".join(bad) or "ok: every attack breaks the NT model", numbers)


def single_step_point(ev: Evidence, name: str) -> tuple[float, float, dict] | None:
    """Where a single-step attack's self-test is judged: (eps, accuracy there, what changed), or None for no eps > 0.

    Like with like: one step is judged by what one step can do, not by the largest eps of its sweep.

    * **Its best eps**, the one leaving the fewest samples correct. A step at least as long as the erase budget
      overshoots (an independent sweep rises there: ``monotone_in_eps``'s attack diagnostic), so the largest eps
      need not be its best. In a survivors sweep, whose accuracy only falls with eps, the best is the largest.
    * **Samples with a saturated softmax set aside** (white box only): one step reads the cross-entropy gradient at
      ``x`` and nothing else, and where p(y) = 1.0 in float32 (or the gradient is below ``grad_threshold``) that
      gradient is the underflow of ~1e-12 probabilities; a single step along it fails on an NT model for that
      reason (7 of the 8 samples FGSM left at eps 0.8 on the digits NT seed-0 model, all 360 test images). Those
      samples are ``no_saturation``'s to judge; iterative attacks (random start, many gradients) get no such pass.

    ``what changed`` is empty when neither applies, so the entry in results.json is the plain one.
    """
    c = ev.curves[name]
    saturated = ev.saturated[: c.n].cpu() if ev.saturated is not None and white_box(ev, name) else None
    best = None
    for eps in c.eps:
        robust = c.robust_at(eps) if eps > 0 else None
        if robust is None:
            continue
        robust = robust.cpu()
        judged = robust & ~saturated if saturated is not None else robust
        acc = float(judged.float().mean())
        if best is None or acc <= best[1]:  # ties: the larger eps
            best = (eps, acc, int((robust & ~judged).sum()))
    if best is None:
        return None
    eps, acc, set_aside = best
    entry: dict = {}
    if eps != c.eps[-1]:
        entry["largest_eps_accuracy"] = round(float(c.accuracy_at(c.eps[-1]) or 0.0), 4)
    if set_aside:
        entry["saturated_set_aside"] = set_aside
    if not entry:  # the plain verdict at the largest eps, with its plain number
        acc = float(c.accuracy_at(eps) or 0.0)
    return eps, acc, entry


@register
def monotone_in_eps(ev: Evidence, s: CheckSettings) -> CheckResult:
    numbers, bad, overshoots = {}, [], []
    for name, c in ev.curves.items():
        if c.mode == "survivors" or c.min_norms is not None:
            continue
        acc = c.accuracy
        rises = []
        for k in range(len(acc) - 1):
            only_next, only_prev = paired_counts(c.robust[k + 1], c.robust[k])
            # robust at the larger eps but not the smaller one: the attack failed where it had worked
            if paired_gap_significant(only_next, only_prev, c.n, s.z, s.min_gap):
                rise = (c.eps[k + 1], acc[k], acc[k + 1])
                if overshooting_step(ev.attacks[name], c.eps[k + 1], ev.dim):
                    overshoots.append(f"{name} rises to {fmt(acc[k + 1])} at eps={c.eps[k + 1]:g}")
                else:
                    rises.append(rise)
        numbers[name] = {
            "eps": c.eps,
            "accuracy": [round(a, 4) for a in acc],
            "rises": rises,
            "failed": bool(rises),
        }
        bad += [f"{name} rises to {fmt(a1)} at eps={e:g} from {fmt(a0)}" for e, a0, a1 in rises]
    if overshoots:
        ev.diagnostics.append(
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


@register
def large_eps_near_zero(ev: Evidence, s: CheckSettings) -> CheckResult:
    numbers, bad = {}, []
    for name, c in ev.curves.items():
        a = ev.attacks[name]
        if not white_box(ev, name) or a.gradient_free or not (a.iterative or a.kind == "min_norm"):
            continue
        limit = unbounded_eps(c.norm, ev.dim)
        if c.eps[-1] < limit - 1e-9:
            continue
        n = c.n
        # Sound bound: every image can become the one grey image, so only its class can stay right.
        share = max(float(((ev.y[:n] == k) & ev.correct[:n]).float().mean()) for k in ev.y[:n].unique())
        acc = c.accuracy[-1]
        numbers[name] = {
            "eps": c.eps[-1],
            "accuracy": round(acc, 4),
            "ceiling": s.large_eps_ceiling,
            "grey_image_bound": round(share, 4),
            "n": n,
            "failed": acc > s.large_eps_ceiling,
        }
        if acc > s.large_eps_ceiling:
            bad.append(
                f"{name} leaves {fmt(acc)} correct at eps={c.eps[-1]:g} (>= {limit:g} can turn every "
                f"image grey; ceiling {fmt(s.large_eps_ceiling)})"
            )
    if not numbers:
        return CheckResult(
            "large_eps_near_zero", None, "n/a: no iterative sweep reaches the eps that can erase any image"
        )
    return CheckResult("large_eps_near_zero", not bad, "; ".join(bad) or "ok: " + ", ".join(numbers), numbers)


@register
def iterative_beats_single_step(ev: Evidence, s: CheckSettings) -> CheckResult:
    pairs: list[Pair] = []
    aside: list[Pair] = []
    for it, ci in ev.curves.items():
        ai = ev.attacks[it]
        if not white_box(ev, it) or not ai.iterative or ai.gradient_free or ai.kind != "norm_ball":
            continue
        for ss in ev.curves:
            a_s = ev.attacks[ss]
            if not white_box(ev, ss) or a_s.iterative or a_s.norm != ai.norm:
                continue
            like = label_loss_untargeted(ai) and label_loss_untargeted(a_s)
            for e in ci.eps:
                if e > 0 and (p := robust_at(ev, it, e)) is not None and (q := robust_at(ev, ss, e)) is not None:
                    pair = (f"{it} vs {ss} @ {e:g}", p, q)
                    (pairs if like and not overshooting_step(a_s, e, ev.dim) else aside).append(pair)
    set_aside(
        ev,
        s,
        "iterative_beats_single_step",
        aside,
        "another objective (embedding, targeted) or a single step >= the erase budget",
    )
    return paired(
        ev, s, "iterative_beats_single_step", pairs, "iterative and single-step label-loss attack of one norm"
    )


@register
def white_box_beats_black_box(ev: Evidence, s: CheckSettings) -> CheckResult:
    pairs: list[Pair] = []
    aside: list[Pair] = []
    for bb, cb in ev.curves.items():
        a = ev.attacks[bb]
        if not isinstance(a, TransferAttack) or a.inner.name not in ev.curves:
            continue
        for e in cb.eps:
            if e > 0 and (p := robust_at(ev, a.inner.name, e)) is not None:
                pair = (f"{a.inner.name} vs {bb} @ {e:g}", p, own_robust(ev, bb, e))
                (aside if overshooting_step(a.inner, e, ev.dim) else pairs).append(pair)
    set_aside(ev, s, "white_box_beats_black_box", aside, "a single step >= the erase budget overshoots")
    return paired(ev, s, "white_box_beats_black_box", pairs, "black-box transfer attack (pass source_ckpt=...)")


@register
def gradient_free_not_stronger(ev: Evidence, s: CheckSettings) -> CheckResult:
    pairs = []
    for gf, cg in ev.curves.items():
        ag = ev.attacks[gf]
        if not ag.gradient_free or not white_box(ev, gf):
            continue
        grads = [
            g
            for g, a in ev.attacks.items()
            if g in ev.curves and white_box(ev, g) and not a.gradient_free and a.norm == ag.norm
        ]
        for e in cg.eps:
            rs = [r[: cg.n] for g in grads if e > 0 and (r := robust_at(ev, g, e)) is not None]
            if rs:  # robust to every gradient attack of this norm at e
                pairs.append((f"gradient attacks vs {gf} @ {e:g}", torch.stack(rs).all(0), own_robust(ev, gf, e)))
    return paired(
        ev,
        s,
        "gradient_free_not_stronger",
        pairs,
        "gradient-free attack with a gradient attack of the same norm and eps",
    )


@register
def more_steps_not_higher(ev: Evidence, s: CheckSettings) -> CheckResult:
    pairs = []
    for strong, cs in ev.curves.items():
        base = strong.removesuffix("_strong")
        if base == strong or base not in ev.curves:
            continue
        for e in cs.eps:
            if e > 0 and (q := robust_at(ev, base, e)) is not None:
                pairs.append((f"{strong} vs {base} @ {e:g}", own_robust(ev, strong, e), q))
    return paired(ev, s, "more_steps_not_higher", pairs, "stronger (more steps/restarts) PGD run")


@register
def pgd_linf_not_beaten(ev: Evidence, s: CheckSettings) -> CheckResult:
    if "pgd_linf" not in ev.curves:
        return CheckResult("pgd_linf_not_beaten", None, "n/a: no pgd_linf in the suite")
    pairs = []
    for name, c in ev.curves.items():
        a = ev.attacks[name]
        if name == "pgd_linf" or not white_box(ev, name) or a.norm != "linf" or a.gradient_free:
            continue
        if not a.iterative:
            continue
        for e in c.eps:
            if e > 0 and (p := robust_at(ev, "pgd_linf", e)) is not None and (q := robust_at(ev, name, e)) is not None:
                # PGD must not leave standing a significant set of samples the other attack breaks.
                pairs.append((f"pgd_linf vs {name} @ {e:g}", p, q))
    return paired(ev, s, "pgd_linf_not_beaten", pairs, "other iterative L∞ attack")


@register
def worst_case_near_pgd(ev: Evidence, s: CheckSettings) -> CheckResult:
    wc = ev.worst_case
    if wc is None or ev.worst_robust is None or "pgd_linf" not in ev.curves or len(wc.attacks) < 2:
        return CheckResult("worst_case_near_pgd", None, "n/a: needs pgd_linf and another L∞ attack at the table eps")
    pgd = robust_at(ev, "pgd_linf", wc.eps)
    if pgd is None:
        return CheckResult("worst_case_near_pgd", None, f"n/a: pgd_linf did not run at eps={wc.eps:g}")
    r = paired(
        ev, s, "worst_case_near_pgd", [(f"pgd_linf vs worst case @ {wc.eps:g}", pgd, ev.worst_robust)], "worst case"
    )
    r.details = f"PGD-L∞ {fmt(float(pgd.float().mean()))}, worst case {fmt(wc.accuracy)}: " + r.details
    return r


@register
def no_saturation(ev: Evidence, s: CheckSettings) -> CheckResult:
    sat = ev.saturation
    if not sat or not sat.get("n_correct") or ev.saturated is None:
        return CheckResult("no_saturation", None, "n/a: not measured")
    survivors, where = ev.correct, "clean-correct samples"
    pgd = robust_at(ev, "pgd_linf", ev.table_eps) if "pgd_linf" in ev.curves and ev.table_eps else None
    if pgd is not None:
        survivors, where = pgd.cpu(), f"samples PGD-L∞ leaves standing at eps={ev.table_eps:g}"
    n = int(survivors.sum())
    hit = int((ev.saturated[: len(survivors)] & survivors).sum())
    share = hit / n if n else 0.0
    numbers = {
        **sat,
        "survivors": n,
        "saturated_survivors": hit,
        "share": round(share, 4),
        "max_share": s.saturation_max_share,
    }
    text = (
        f"{hit} of {n} {where} have p(y) = 1.0 in float32 or an input gradient below "
        f"{sat['grad_threshold']:g} ({fmt(share)}); over all {sat['n_correct']} clean-correct samples: "
        f"{sat['p_one']} with p(y) = 1.0, {sat['grad_below']} with a vanishing gradient"
    )
    # a handful of survivors is noise, not masking: the saturated ones must also be > min_gap of all samples,
    # and their share significantly above max_share (one-sided binomial test at the level of ``z``): one
    # saturated sample among the 1 or 2 that PGD leaves on an NT model says nothing
    p_value = binomial_tail(hit, n, s.saturation_max_share)
    numbers["p"] = round(p_value, 6)
    ok = share <= s.saturation_max_share or hit <= s.min_gap * len(ev.correct) or p_value > one_sided_p(s.z)
    return CheckResult("no_saturation", ok, ("ok: " if ok else "gradient masking risk: ") + text, numbers)
