"""The checks are registered functions over one settings object: eval.yaml's ``checks.run`` names each one."""

from __future__ import annotations

import pytest
import torch
import yaml

from afd_lightning.config.paths import config_dir
from afd_lightning.errors import ConfigError
from afd_lightning.evaluation.attacks import NormBallAttack
from afd_lightning.evaluation.checks.checker import run_checks, settings_from_config
from afd_lightning.evaluation.checks.registry import CHECKS, Evidence, register
from afd_lightning.evaluation.checks.settings import CheckSettings
from afd_lightning.evaluation.report.schema import CheckResult
from afd_lightning.evaluation.sweep import Curve

EVAL_YAML = config_dir("eval") / "eval.yaml"


def _evidence() -> Evidence:
    n = 20
    robust = torch.ones(2, n, dtype=torch.bool)
    attack = NormBallAttack("pgd_linf", "linf", [0, 0.2], "advertorch.attacks.LinfPGDAttack", steps=2)
    curve = Curve("pgd_linf", "linf", [0.0, 0.2], robust, torch.arange(n))
    return Evidence(
        {"pgd_linf": curve}, {"pgd_linf": attack}, torch.arange(n) % 10, torch.ones(n, dtype=torch.bool), 64
    )


def test_eval_yaml_names_every_registered_check_in_order():
    block = yaml.safe_load(EVAL_YAML.read_text())["checks"]
    assert list(block["run"]) == list(CHECKS)  # adding a check is one function and this one key
    settings = settings_from_config(block)
    # the YAML's values are the dataclass's defaults: eval.py and the Python API judge alike
    assert settings == CheckSettings(run=tuple(CHECKS))
    checks, _ = run_checks(_evidence(), settings)
    assert [c.name for c in checks] == list(CHECKS)


def test_run_picks_and_orders_the_checks():
    settings = settings_from_config(
        {"run": {"no_saturation": True, "attack_self_test": True, "monotone_in_eps": False}}
    )
    assert settings.run == ("no_saturation", "attack_self_test")
    checks, _ = run_checks(_evidence(), settings)
    assert [c.name for c in checks] == ["no_saturation", "attack_self_test"]


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"zz": 2.0}, r"no option checks\.zz; did you mean checks\.z\?"),
        ({"min_gap": "big"}, r"checks\.min_gap='big' must be a finite number"),
        ({"z": True}, r"checks\.z=True must be a finite number"),
        ({"self_test_max": -0.1}, r"must be >= 0"),
        ({"correction": "bonferroni"}, r"holm, none"),
        ({"run": {"attack_self_tset": True}}, r"did you mean checks\.run\.attack_self_test\?"),
        ({"run": {"no_saturation": "yes"}}, r"must be true or false"),
        ({"run": ["no_saturation"]}, r"checks\.run must map each check's name"),
    ],
)
def test_a_wrong_checks_block_is_refused_in_one_line(block, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_config(block)


def test_a_new_check_is_one_function_and_a_failing_one_does_not_stop_the_others():
    @register
    def always_fails(ev: Evidence, s: CheckSettings) -> CheckResult:
        return CheckResult("always_fails", False, f"z is {s.z:g}, {len(ev.curves)} curve(s)")

    @register
    def crashes(ev: Evidence, s: CheckSettings) -> CheckResult:
        raise RuntimeError("boom")

    try:
        with pytest.raises(ValueError, match="registered twice"):
            register(always_fails)
        settings = settings_from_config({"z": 3, "run": {"crashes": True, "always_fails": True}})
        checks, _ = run_checks(_evidence(), settings)
        assert [(c.name, c.passed) for c in checks] == [("crashes", None), ("always_fails", False)]
        assert checks[0].details == "could not run: RuntimeError: boom"
        assert checks[1].details == "z is 3, 1 curve(s)"
    finally:
        CHECKS.pop("always_fails")
        CHECKS.pop("crashes")
