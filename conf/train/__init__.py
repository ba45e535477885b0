"""Training configs (Hydra root: train.yaml), found as pkg://afd_lightning.conf.train."""
