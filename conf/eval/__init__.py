"""Evaluation configs (Hydra root: eval.yaml), found as pkg://afd_lightning.conf.eval."""
