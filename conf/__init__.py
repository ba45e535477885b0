"""Hydra configs shipped with afd-lightning: ``train/`` (root train.yaml) and ``eval/`` (root eval.yaml).

Installed as the package ``afd_lightning.conf`` (pyproject ``[tool.setuptools.package-dir]``), so both an
editable install and a wheel find them as ``pkg://afd_lightning.conf.train`` and ``pkg://afd_lightning.conf.eval``.
"""
