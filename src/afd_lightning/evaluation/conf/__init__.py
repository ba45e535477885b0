"""Evaluation configs (Hydra root: eval.yaml), shipped inside the package and found as pkg://afd_lightning.evaluation.conf."""
