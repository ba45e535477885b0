"""The evaluation's figures and tables in W&B (offline unless an API key is configured), read from the typed results."""

from __future__ import annotations

from pathlib import Path

from afd_lightning.evaluation.report.schema import EvaluationResults
from afd_lightning.run.loggers import resolve_wandb_mode


def curve_rows(results: EvaluationResults) -> list[list]:
    """One row per (model, attack, eps): the accuracy-vs-eps curves of results.json."""
    return [
        [model, name, c.norm, eps, acc]
        for model, entry in results.models.items()
        for name, c in entry.attacks.items()
        for eps, acc in zip(c.eps, c.accuracy)
    ]


def check_rows(results: EvaluationResults) -> list[list]:
    return [[m, c.name, c.verdict, c.details] for m, e in results.models.items() for c in e.checks]


def log_evaluation(
    out_dir: Path, results: EvaluationResults, project: str = "afd-lightning", mode: str = "auto", name=None
) -> str:
    """Log every PNG, the curves, AUCs, checks and clean accuracies of one evaluation; returns the W&B mode used."""
    import wandb

    resolved = resolve_wandb_mode(mode)
    if resolved == "disabled":
        return resolved
    run = wandb.init(
        project=project,
        name=name,
        mode=resolved,
        dir=str(out_dir),
        job_type="eval",
        config={
            "checkpoints": results.checkpoints,
            "dataset": results.dataset,
            "n_samples": results.n_samples,
            "seed": results.seed,
            "schema_version": results.schema_version,
        },
    )
    try:
        run.log({f"eval/{png.stem}": wandb.Image(str(png)) for png in sorted(Path(out_dir).glob("*.png"))})
        models = results.models
        run.log(
            {
                "eval/curves": wandb.Table(
                    columns=["model", "attack", "norm", "eps", "accuracy"], data=curve_rows(results)
                ),
                "eval/auc": wandb.Table(
                    columns=["model", "attack", "auc"],
                    data=[[m, k, c.auc] for m, e in models.items() for k, c in e.attacks.items() if c.auc is not None],
                ),
                "eval/checks": wandb.Table(columns=["model", "check", "result", "details"], data=check_rows(results)),
            }
        )
        for model, entry in models.items():
            run.summary[f"{model}/acc_clean"] = entry.clean_accuracy
            if entry.worst_case is not None:
                run.summary[f"{model}/acc_worst_case"] = entry.worst_case.accuracy
    finally:
        run.finish()
    return resolved
