"""Run the registered honesty checks on one model's evidence, in the order the settings give."""

from __future__ import annotations

from collections.abc import Mapping

from afd_lightning.evaluation.checks import model_checks  # noqa: F401  (registers the checks)
from afd_lightning.evaluation.checks.registry import CHECKS, Evidence
from afd_lightning.evaluation.checks.settings import CheckSettings
from afd_lightning.evaluation.report.schema import CheckResult


def settings_from_config(block: Mapping | None) -> CheckSettings:
    """The :class:`CheckSettings` of eval.yaml's ``checks:`` block, its names checked against the registry."""
    return CheckSettings.from_config(block, CHECKS)


def run_checks(ev: Evidence, settings: CheckSettings | None = None) -> tuple[list[CheckResult], list[CheckResult]]:
    """(the model checks, the attack diagnostics): every check ``settings.run`` names, in its order.

    The diagnostics are the comparisons across attack classes the checks set aside (``ev.diagnostics``).
    """
    settings = settings or CheckSettings()
    ev.diagnostics = []
    out = []
    for name in CHECKS if settings.run is None else settings.run:
        try:
            out.append(CHECKS[name](ev, settings))
        except Exception as err:  # a check must never take the evaluation down
            out.append(CheckResult(name, None, f"could not run: {type(err).__name__}: {err}"))
    return out, list(ev.diagnostics)
