"""What an evaluation writes: the typed results schema (:mod:`.schema`, read by everything below), markdown tables
(:mod:`.tables`), figures (:mod:`.plots`), W&B (:mod:`.wandb_log`) and the output folder (:mod:`.writer`)."""

from afd_lightning.evaluation.report.schema import EvaluationResults

__all__ = ["EvaluationResults"]
