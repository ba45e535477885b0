"""A small, hand-built EvaluationResults for the readers' tests (tables, figures, W&B)."""

from __future__ import annotations

from afd_lightning.evaluation.report.schema import (
    AttackInfo,
    CheckResult,
    CurveRecord,
    EvaluationResults,
    ModelRecord,
    WorstCase,
)


def tiny_results() -> EvaluationResults:
    eps = [0.0, 0.1, 0.2]
    attacks = [
        AttackInfo("pgd_linf", "norm_ball", "linf", "PGD-L∞", eps),
        AttackInfo("fgsm", "norm_ball", "linf", "FGSM", eps),
        AttackInfo("autoattack", "norm_ball", "linf", "AutoAttack", [0.0, 0.2], auc_table=False),
    ]
    models = {}
    for name, drop in (("NT", 0.9), ("AFD", 0.3)):
        curves = {
            "pgd_linf": CurveRecord(
                "pgd_linf",
                "linf",
                eps,
                [0.98, 0.98 - drop / 2, 0.98 - drop],
                4,
                "PGD-L∞",
                ci_low=[0.5] * 3,
                ci_high=[1.0] * 3,
                auc=0.7,
            ),
            "fgsm": CurveRecord("fgsm", "linf", eps, [0.98, 0.9, 0.8], 4, "FGSM", auc=0.9),
            "autoattack": CurveRecord(
                "autoattack",
                "linf",
                [0.0, 0.2],
                [0.98, 0.5],
                4,
                "AutoAttack",
                breakdown={"apgd-ce": [0.98, 0.6], "apgd-t": [0.98, 0.5]},
            ),
        }
        checks = [
            CheckResult(
                "pgd_linf_not_beaten",
                name != "AFD",
                "details of the check",
                {"pgd_linf vs autoattack @ 0.2": {"n": 4, "failed": name == "AFD"}},
            ),
            CheckResult("monotone_in_eps", None, "n/a: survivors"),
        ]
        models[name] = ModelRecord(
            0.98, 4, f"{name}.ckpt", curves, checks, WorstCase(0.2, 0.4, 4, ["pgd_linf", "fgsm", "autoattack"])
        )
    return EvaluationResults(
        complete=True,
        dataset="digits",
        family="digits",
        table_eps=0.2,
        n_samples=4,
        test_set_size=360,
        seed=0,
        sweep_mode="survivors",
        device="cpu",
        checkpoints={m: f"{m}.ckpt" for m in models},
        attacks=attacks,
        models=models,
    )
