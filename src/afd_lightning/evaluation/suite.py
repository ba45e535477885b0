"""Run an attack suite on several models over one set of test samples: curves, analyses, checks.

``evaluate_models`` is the Python API behind ``eval.py``; it takes built models and attacks and one
:class:`SuiteSettings`, so tests (and notebooks) can evaluate any ``nn.Module`` -- e.g. one with deliberately
masked gradients::

    evaluate_models({"NT": model}, x, y, attacks, SuiteSettings(table_eps=0.2, natural=["NT"]))
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from afd_lightning.attacks import attack_mode
from afd_lightning.errors import ConfigError
from afd_lightning.evaluation.attacks.advertorch import TransferAttack
from afd_lightning.evaluation.attacks.base import EvalAttack
from afd_lightning.evaluation.checks import saturation as saturation_
from afd_lightning.evaluation.checks.checker import run_checks
from afd_lightning.evaluation.checks.registry import Evidence
from afd_lightning.evaluation.checks.settings import CheckSettings
from afd_lightning.evaluation.parallel import (
    ANALYSES_RANK,
    Job,
    job_rank,
    join_curves,
    run_jobs,
    shard_ranges,
    shard_seed,
)
from afd_lightning.evaluation.report.schema import CheckResult, ModelRecord, WorstCase
from afd_lightning.evaluation.stats import wilson_interval
from afd_lightning.evaluation.sweep import Curve, attack_seed, predict, run_curve

log = logging.getLogger(__name__)


@dataclass
class ModelResult:
    """One model's in-memory results (per-sample curves); :meth:`record` is what results.json keeps."""

    name: str
    clean_accuracy: float
    correct: torch.Tensor
    curves: dict[str, Curve] = field(default_factory=dict)
    analyses: dict = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    diagnostics: list[CheckResult] = field(default_factory=list)  # attack diagnostics, not model failures
    worst_case: WorstCase | None = None
    worst_robust: torch.Tensor | None = None
    saturation: dict | None = None
    attacks: dict[str, dict] = field(default_factory=dict)  # describe() of every attack run, transfer included
    seconds: float = 0.0
    table_eps: float | None = None

    def saturation_fractions(self) -> tuple[float | None, float | None]:
        """Fractions of all evaluated samples with p(y) = 1.0 in float32, and with a vanishing input gradient."""
        n = len(self.correct)
        if not self.saturation or not n:
            return None, None
        return round(self.saturation["p_one"] / n, 6), round(self.saturation["grad_below"] / n, 6)

    def pgd_aa_gap(self) -> float | None:
        """PGD-L∞ minus AutoAttack accuracy at the table ε, where both attacked every sample there."""
        n = len(self.correct)
        pgd, aa = self.curves.get("pgd_linf"), self.curves.get("autoattack")
        if self.table_eps is None or pgd is None or aa is None or pgd.n < n or aa.n < n:
            return None
        p, a = pgd.robust_at(self.table_eps), aa.robust_at(self.table_eps)
        if p is None or a is None:
            return None
        return round(float(p[:n].float().mean()) - float(a[:n].float().mean()), 6)

    def record(self, checkpoint: str | None = None) -> ModelRecord:
        p_one, grad_below = self.saturation_fractions()
        return ModelRecord(
            clean_accuracy=self.clean_accuracy,
            n_samples=int(len(self.correct)),
            checkpoint=checkpoint,
            attacks={k: c.to_record(self.attacks[k]["label"], self.attacks[k]["kind"]) for k, c in self.curves.items()},
            checks=list(self.checks),
            worst_case=self.worst_case,
            saturation=self.saturation,
            analyses=self.analyses,
            seconds=round(self.seconds, 3),
            diagnostics=list(self.diagnostics),
            p_one_fraction=p_one,
            grad_below_fraction=grad_below,
            pgd_aa_gap=self.pgd_aa_gap(),
        )


def worst_case(curves: Mapping[str, Curve], attacks: Mapping[str, EvalAttack], eps: float | None, n: int):
    """Per sample, robust only if every L∞ attack (white-box or transfer) that ran at ``eps`` on all samples failed."""
    if eps is None:
        return None, None
    used, rows = [], []
    for name, c in curves.items():
        if attacks[name].norm != "linf" or c.n < n or (r := c.robust_at(eps)) is None:
            continue
        used.append(name)
        rows.append(r[:n].cpu())
    if not used:
        return None, None
    stack = torch.stack(rows)
    robust = stack.all(0)
    others = {}
    for i, name in enumerate(used):  # samples that this attack alone broke
        rest = torch.cat([stack[:i], stack[i + 1 :]]).all(0) if len(used) > 1 else torch.ones(n, dtype=torch.bool)
        others[name] = int((~stack[i] & rest).sum())
    acc = float(robust.float().mean())
    lo, hi = wilson_interval(acc, n)
    return WorstCase(
        eps=float(eps), accuracy=acc, n_samples=n, attacks=used, ci_low=lo, ci_high=hi, broken_by=others
    ), robust


class Progress:
    """A tqdm bar over (model, attack, eps) points; the description shows the current batch."""

    def __init__(self, total: int, enabled: bool = True):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="eps", dynamic_ncols=True, desc="evaluating")

    def __call__(self, what: str | None) -> None:
        if self.bar is None:
            return
        if what is None:
            self.bar.update(1)
        else:
            self.bar.set_description(what, refresh=True)

    def labelled(self, prefix: str) -> Callable[[str | None], None]:
        """This bar's callback with each description prefixed (one model's points)."""
        return lambda what: self(what if what is None else f"{prefix} {what}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def transfer_attacks(
    attacks: Sequence[EvalAttack], names: Sequence[str], source: nn.Module, table_eps: float
) -> list[TransferAttack]:
    """Black-box versions of the named eps-ball attacks, made on ``source``: at the Table 1 eps, and at the
    largest eps of the attack's own sweep (where white-box PGD erases an NT model: the self-test's eps)."""
    by_name = {a.name: a for a in attacks}
    out = []
    for name in names:
        inner = by_name.get(name)
        if inner is None:
            raise ConfigError(f"transfer attack {name!r} is not in the suite ({', '.join(by_name)})")
        if inner.kind != "norm_ball":
            raise ConfigError(f"transfer attack {name!r} must be an eps-ball attack (FGSM, PGD...), not {inner.kind}")
        out.append(TransferAttack(inner, source, [0.0, table_eps, max(inner.eps)]))
    return out


@dataclass(frozen=True)
class SweepSettings:
    """How each curve is swept (:func:`afd_lightning.evaluation.sweep.run_curve`), the same for every attack.

    Args:
        mode: ``survivors`` (only samples robust at the previous ε are attacked) or ``independent``.
        batch_size: images attacked at once.
        seed: the evaluation's seed; each attack reseeds from (seed, its name) and, per shard, its first sample.
        shard_size: images per shard of an attack with ``independent_samples`` (AutoAttack, APGD, Square), each
            shard its own job (:mod:`afd_lightning.evaluation.parallel`); None: one job per curve. The numbers
            depend on it, never on the number of workers.
    """

    mode: str = "survivors"
    batch_size: int = 500
    seed: int = 0
    shard_size: int | None = None


@dataclass(frozen=True)
class SuiteSettings:
    """Everything :func:`evaluate_models` needs besides the models, the samples and the attacks.

    Args:
        table_eps: the Table 1 ε (worst case, saturation survivors, transfer attacks); None: no such columns.
        sweep: how each curve is swept.
        checks: the honesty checks' settings (eval.yaml's ``checks:`` block).
        transfer: names of the suite's ε-ball attacks to repeat as black-box transfer from ``source``.
        natural: names of the naturally trained models, on which every attack must succeed (the self-test).
        analyses: run the embedding analyses too; ``num_classes`` for the gradient matrix (None: from ``y``).
        device: where each model is evaluated (float32, eval mode, frozen parameters, gradients on).
        workers: > 1 on a CPU: the (model, attack, shard) curves and the analyses run in that many processes with
            ``threads`` torch threads each (:mod:`afd_lightning.evaluation.parallel`); the results are the same.
        progress: a progress bar over (model, attack, ε).
    """

    table_eps: float | None = None
    sweep: SweepSettings = field(default_factory=SweepSettings)
    checks: CheckSettings = field(default_factory=CheckSettings)
    transfer: Sequence[str] = ()
    natural: Sequence[str] = ()
    analyses: bool = False
    num_classes: int | None = None
    device: str | torch.device = "cpu"
    workers: int = 1
    threads: int = 1
    progress: bool = False


def evaluate_models(
    models: Mapping[str, nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Sequence[EvalAttack],
    settings: SuiteSettings | None = None,
    *,
    source: nn.Module | None = None,
    on_attack_done: Callable[[dict[str, ModelResult]], None] | None = None,
) -> dict[str, ModelResult]:
    """Every attack on every model, then the analyses and the honesty checks per model.

    ``x`` (N, C, H, W) in [0, 1] and ``y`` (N,) are the evaluation samples; ``settings`` says how (its defaults:
    survivors sweeps, seed 0, no table ε, no analyses, on the CPU in this process). ``source``: the model the
    transfer attacks (``settings.transfer``) are made on. ``on_attack_done(results)`` is called after each
    attack (to write partial results).
    """
    s = settings or SuiteSettings()
    device = torch.device(s.device)
    x, y = x.to(device).float(), y.to(device)
    attacks = list(attacks)
    if source is not None and s.transfer:
        if s.table_eps is None:
            raise ConfigError(f"transfer attacks {list(s.transfer)} run at the Table 1 eps: pass table_eps as well")
        source = source.to(device).float().eval()
        attacks += transfer_attacks(attacks, s.transfer, source, s.table_eps)
    by_name = {a.name: a for a in attacks}
    if len(by_name) != len(attacks):
        raise ConfigError(f"two attacks share a name: {[a.name for a in attacks]}")
    total = len(models) * sum(len(a.eps) for a in attacks)
    bar = Progress(total, enabled=s.progress)
    results: dict[str, ModelResult] = {}
    on_device: dict[str, nn.Module] = {}
    try:
        for model_name, model in models.items():
            model = on_device[model_name] = model.to(device).float()
            with attack_mode(model):
                correct = predict(model, x, s.sweep.batch_size) == y
            results[model_name] = ModelResult(
                model_name, float(correct.float().mean()), correct.cpu(), table_eps=s.table_eps
            )
        in_processes = s.workers > 1 and device.type == "cpu"
        analysed: dict[str, dict] = {}
        if in_processes:
            analysed = _curves_in_processes(on_device, results, attacks, x, y, s, bar, on_attack_done)
        for model_name, model in on_device.items():
            res = results[model_name]
            correct = res.correct.to(device)
            start = time.perf_counter()
            if not in_processes:
                for attack in attacks:
                    curve, described = _sharded_curve(model_name, model, attack, x, y, correct, s.sweep, bar)
                    res.attacks[attack.name] = described
                    res.curves[attack.name] = curve
                    _log_curve(model_name, attack.name, curve)
                    if on_attack_done is not None:
                        on_attack_done(results)
            res.saturation, saturated = saturation_.measure(
                model, x, y, correct, s.sweep.batch_size, s.checks.grad_threshold
            )
            res.worst_case, res.worst_robust = worst_case(res.curves, by_name, s.table_eps, len(y))
            if model_name in analysed:
                res.analyses = analysed[model_name]
            elif s.analyses:
                log.info("%s: embedding analyses (sparsity, gradient matrix, sensitivity, t-SNE)...", model_name)
                res.analyses = run_analyses(model, x, y, by_name, s)
            evidence = Evidence(
                res.curves,
                by_name,
                y,
                correct,
                dim=int(x[0].numel()),
                natural=model_name in s.natural,
                worst_case=res.worst_case,
                worst_robust=res.worst_robust,
                saturation=res.saturation,
                saturated=saturated,
                table_eps=s.table_eps,
            )
            res.checks, res.diagnostics = run_checks(evidence, s.checks)
            res.seconds += time.perf_counter() - start
            if on_attack_done is not None:
                on_attack_done(results)
    finally:
        bar.close()
    return results


def run_attack(model_name, model, attack, x, y, correct, sweep: SweepSettings, start: int = 0, progress=None):
    """One attack's curve on one model over the samples given (in this process or a worker): the curve and the
    attack's describe(). ``x``, ``y``, ``correct`` are the shard that starts at sample ``start`` (0: all)."""
    if hasattr(attack, "log_context"):
        attack.log_context = model_name
    seed = shard_seed(sweep.seed, start)
    with attack_mode(model), torch.enable_grad():
        curve = run_curve(model, attack, x, y, correct, sweep.mode, sweep.batch_size, seed, progress=progress)
    return curve, attack.describe()


def _sharded_curve(model_name, model, attack, x, y, correct, sweep: SweepSettings, bar: Progress):
    """One curve in this process, shard after shard as the workers would run them (the same numbers)."""
    ranges = shard_ranges(attack, len(x), sweep.shard_size)
    label = bar.labelled(model_name)
    if len(ranges) == 1:
        return run_attack(model_name, model, attack, x, y, correct, sweep, progress=label)
    parts = []
    for k, (a, b) in enumerate(ranges):
        shard = f"shard {k + 1}/{len(ranges)}"
        # the bar counts (attack, eps) points: the shards report their batches, the joined curve its points
        per_shard = lambda what, shard=shard: label(f"{shard} {what}") if what is not None else None
        curve, described = run_attack(model_name, model, attack, x[a:b], y[a:b], correct[a:b], sweep, a, per_shard)
        parts.append(curve)
    for _ in attack.eps:
        bar(None)
    return join_curves(parts), described


def _log_curve(model_name: str, attack_name: str, curve: Curve) -> None:
    log.info(
        "%s %s: %s (%.1fs)",
        model_name,
        attack_name,
        ", ".join(f"{e:g}:{100 * a:.1f}%" for e, a in zip(curve.eps, curve.accuracy)),
        curve.seconds,
    )


def _curves_in_processes(models, results, attacks, x, y, s: SuiteSettings, bar, on_attack_done) -> dict[str, dict]:
    """Every (model, attack, shard) curve, and each model's analyses, as jobs in ``s.workers`` processes.

    A curve is stored (joined from its shards, :func:`~afd_lightning.evaluation.parallel.join_curves`) when its
    last shard finishes, in the suite's attack order whatever order they finish in; returns the analyses.
    """
    jobs = []
    shards: dict[str, list[tuple[int, int]]] = {}
    for model_name, model in models.items():
        correct = results[model_name].correct
        for attack in attacks:
            shards[attack.name] = shard_ranges(attack, len(x), s.sweep.shard_size)
            for a, b in shards[attack.name]:
                args = (model_name, model, attack, x[a:b], y[a:b], correct[a:b], s.sweep, a)
                jobs.append(Job((model_name, attack.name, a), run_attack, args, job_rank(attack.name)))
        if s.analyses:
            jobs.append(
                Job((model_name, None, 0), run_analyses, (model, x, y, {a.name: a for a in attacks}, s), ANALYSES_RANK)
            )
    parts: dict[tuple[str, str], dict[int, Curve]] = {}
    finished: dict[str, dict[str, tuple]] = {name: {} for name in models}
    analysed: dict[str, dict] = {}
    log.info("evaluating in %d processes, %d thread(s) each: %d jobs", s.workers, s.threads, len(jobs))

    def done(job, result) -> None:
        model_name, attack_name, start = job.key
        if attack_name is None:
            analysed[model_name] = result
            log.info("%s: embedding analyses done", model_name)
            return
        curve_part, described = result
        got = parts.setdefault((model_name, attack_name), {})
        got[start] = curve_part
        if len(got) < len(shards[attack_name]):
            return
        curve = join_curves([got[a] for a, _ in shards[attack_name]])
        finished[model_name][attack_name] = (curve, described)
        res = results[model_name]
        res.seconds += curve.seconds
        res.curves = {a.name: finished[model_name][a.name][0] for a in attacks if a.name in finished[model_name]}
        res.attacks = {a.name: finished[model_name][a.name][1] for a in attacks if a.name in finished[model_name]}
        _log_curve(model_name, attack_name, curve)
        for _ in curve.eps:
            bar(None)
        if on_attack_done is not None:
            on_attack_done(results)

    run_jobs(jobs, s.workers, s.threads, done)
    return analysed


def run_analyses(model, x, y, attacks: Mapping[str, EvalAttack], s: SuiteSettings) -> dict:
    """The embedding analyses of :mod:`afd_lightning.evaluation.analysis.embedding` (Table A5, Figures 3, A1, A6-A8).

    Sensitivity and t-SNE use the suite's PGD-L∞ (or its first eps-ball attack) over its eps list.
    Each analysis that fails is recorded as ``{"error": ...}`` rather than stopping the report.
    """
    from afd_lightning.evaluation.analysis import embedding as analysis

    num_classes, batch_size, seed, table_eps = s.num_classes, s.sweep.batch_size, s.sweep.seed, s.table_eps
    out: dict = {}
    perturbers = [a for a in attacks.values() if a.kind == "norm_ball"]
    pgd = attacks.get("pgd_linf") if "pgd_linf" in attacks else next(iter(perturbers), None)
    x_cpu, y_cpu = x, y
    jobs = {
        "sparsity": lambda: analysis.embedding_sparsity(model, x_cpu, batch_size=batch_size),
        "gradient_matrix": lambda: analysis.class_gradient_matrix(
            model, x_cpu, y_cpu, num_classes or int(y.max()) + 1, batch_size=min(batch_size, 128)
        ),
    }
    if pgd is not None:
        eps_list = list(pgd.eps)
        tsne_eps = sorted({0.0, *(e for e in [table_eps] if e is not None and math.isfinite(e))})
        jobs["sensitivity"] = lambda: {
            "attack": pgd.name,
            **analysis.embedding_sensitivity(
                model, x_cpu, y_cpu, pgd.perturb, eps_list, batch_size=batch_size, seed=attack_seed(seed, "sensitivity")
            ),
        }
        jobs["tsne"] = lambda: {
            "attack": pgd.name,
            **analysis.tsne_embeddings(
                model,
                x_cpu,
                y_cpu,
                pgd.perturb,
                tsne_eps,
                n_samples=min(500, len(x_cpu)),
                seed=seed,
                batch_size=batch_size,
            ),
        }
    for key, job in jobs.items():
        start = time.perf_counter()
        log.info("analysis %s...", key)
        try:
            out[key] = job()
            log.info("analysis %s done (%.1fs)", key, time.perf_counter() - start)
        except Exception as err:  # an analysis must not lose the attack results
            log.warning("analysis %s failed: %s: %s", key, type(err).__name__, err)
            out[key] = {"error": f"{type(err).__name__}: {err}"}
    return out
