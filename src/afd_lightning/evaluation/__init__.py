"""Evaluation suite: attack sweeps, AUC, embedding analyses, plots and reports (used by eval.py)."""
