"""Evaluation of trained checkpoints (``afd-eval`` / ``eval.py``), in layers that import only downward:

* :mod:`.report` -- the results schema (:class:`EvaluationResults`) and its tables, plots, W&B and writer;
* :mod:`.attacks` -- one module per attack family over one base class;
* :mod:`.sweep` -- an attack swept over ε into an accuracy curve;
* :mod:`.checks` -- honesty checks (gradient masking, saturation) over the curves;
* :mod:`.analysis` -- embedding analyses and the AUC;
* :mod:`.suite` -- :func:`evaluate_models`, several models side by side;
* :mod:`.loading` and :mod:`.pipeline` -- checkpoints in, an output folder out (what ``eval.py`` runs).

The public entry points are importable from here::

    from afd_lightning.evaluation import EvaluationResults, evaluate_models
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["EvaluationResults", "evaluate_models"]

if TYPE_CHECKING:
    from afd_lightning.evaluation.report.schema import EvaluationResults
    from afd_lightning.evaluation.suite import evaluate_models


def __getattr__(name: str) -> Any:
    # Lazy, so that importing a light submodule (the schema) does not import torch and every attack library.
    if name == "EvaluationResults":
        from afd_lightning.evaluation.report.schema import EvaluationResults

        return EvaluationResults
    if name == "evaluate_models":
        from afd_lightning.evaluation.suite import evaluate_models

        return evaluate_models
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
