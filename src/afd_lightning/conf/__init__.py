"""Training configs (Hydra root: train.yaml), shipped inside the package and found as pkg://afd_lightning.conf."""
