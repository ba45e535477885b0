"""The evaluation entry point: ``afd_lightning.evaluate.run(cfg)``; ``main`` is the Hydra CLI (eval.py, afd-eval).

Called, this module is the library's one-call evaluation: ``afd_lightning.evaluate(model, dataset="digits")`` is
:func:`afd_lightning.api.evaluate` (the package attribute ``evaluate`` is this module, so it answers calls).

One command evaluates one or several checkpoints with an attack suite on a seeded subset of their
test split, and writes results.json (schema: :mod:`afd_lightning.evaluation.report.schema`), tables in the
paper's formats, figures and the honesty checks into the run directory
(conf/eval/eval.yaml documents every option; the work is in
:mod:`afd_lightning.evaluation.pipeline`).
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import hydra
from omegaconf import DictConfig

import afd_lightning  # noqa: F401  (registers the config resolvers)
from afd_lightning.config.paths import EVAL_CONFIG_PATH
from afd_lightning.evaluation.report.schema import EvaluationResults
from afd_lightning.process.cli import run_cli
from afd_lightning.process.threads import set_threads


def run(cfg: DictConfig) -> EvaluationResults:
    """Evaluate ``cfg.ckpt_path`` (one or several checkpoints); the results are also written to results.json."""
    set_threads(cfg.get("threads", "auto"), cfg.get("dataset"))  # first: the CPU threads every later step runs with
    from afd_lightning.evaluation.pipeline import run as run_pipeline

    return run_pipeline(cfg)


@hydra.main(version_base="1.3", config_path=EVAL_CONFIG_PATH, config_name="eval")
def _hydra_main(cfg: DictConfig) -> None:
    from afd_lightning.evaluation.report.tables import summary

    results = run_cli(run, cfg)
    print("\n" + summary(results))
    print(f"results: {Path(str(cfg.output_dir)) / 'results.json'}")


def main() -> None:
    from afd_lightning.config.preflight import run as preflight

    preflight("eval")  # bad values and unknown keys answered before torch is imported, and no run dir made
    _hydra_main()


class _CallableModule(types.ModuleType):
    """This module's type: calling ``afd_lightning.evaluate(...)`` calls :func:`afd_lightning.api.evaluate`.

    Python binds a submodule to its package's attribute of the same name, so ``afd_lightning.evaluate`` is this
    module whenever it was imported (by ``afd-eval``, by a test): the one-call evaluation must be this object.
    The API module is looked up by name at call time; the two entry points stay independent of each other.
    """

    def __call__(self, *args, **kwargs):
        return importlib.import_module("afd_lightning.api").evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


if __name__ == "__main__":
    main()
