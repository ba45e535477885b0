"""The evaluation's figures and tables in W&B (offline unless an API key is configured)."""
from __future__ import annotations

from pathlib import Path

from afd_lightning.loggers import resolve_wandb_mode


def curve_rows(results: dict) -> list[list]:
    """One row per (model, attack, eps): the accuracy-vs-eps curves of results.json."""
    return [
        [model, attack, a["norm"], eps, acc]
        for model, entry in results["models"].items()
        for attack, a in entry["attacks"].items()
        for eps, acc in zip(a["eps"], a["accuracy"])
    ]


def log_evaluation(out_dir: Path, results: dict, project: str = "afd-lightning", mode: str = "auto", name=None) -> str:
    """Log every PNG, the curves, AUCs, checks and clean accuracies of one evaluation; returns the W&B mode used."""
    import wandb

    resolved = resolve_wandb_mode(mode)
    if resolved == "disabled":
        return resolved
    run = wandb.init(project=project, name=name, mode=resolved, dir=str(out_dir), job_type="eval",
                     config={"checkpoints": results.get("checkpoints"), "dataset": results.get("dataset"),
                             "n_samples": results.get("n_samples"), "seed": results.get("seed")})
    try:
        run.log({f"eval/{png.stem}": wandb.Image(str(png)) for png in sorted(Path(out_dir).glob("*.png"))})
        models = results["models"]
        run.log({
            "eval/curves": wandb.Table(columns=["model", "attack", "norm", "eps", "accuracy"], data=curve_rows(results)),
            "eval/auc": wandb.Table(
                columns=["model", "attack", "auc"],
                data=[[m, k, a.get("auc")] for m, e in models.items() for k, a in e["attacks"].items()],
            ),
            "eval/checks": wandb.Table(
                columns=["model", "check", "passed", "details"],
                data=[[m, c["name"], c["passed"], str(c.get("details", ""))] for m, e in models.items() for c in e["checks"]],
            ),
        })
        for model, entry in models.items():
            run.summary[f"{model}/acc_clean"] = entry["clean_accuracy"]
    finally:
        run.finish()
    return resolved
