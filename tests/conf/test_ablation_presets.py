"""Every preset under conf/train/experiment/ (ablations included) composes and resolves; each ablation
changes paper_digits_afd in exactly the ingredient its name says; `make ablate` runs all of them."""

from __future__ import annotations

import functools
import re
import subprocess

import pytest
from omegaconf import OmegaConf

from helpers.compose import CONF, REPO, compose_train

EXPERIMENTS = sorted(
    str(p.relative_to(CONF / "experiment").with_suffix("")) for p in (CONF / "experiment").rglob("*.yaml")
)
ABLATIONS = sorted(p for p in EXPERIMENTS if p.startswith("ablation/"))

# ablation -> the leaves of the resolved config it changes (relative to paper_digits_afd)
CHANGES = {
    "ablation/digits_afd_apgd_clean": {"attack"},
    "ablation/digits_afd_norm_embedding": {"model.normalize_embedding"},
    "ablation/digits_afd_wgan": {"method.gan_loss"},
    "ablation/digits_afd_da2_xavier": {"method.discriminator.num_hidden_layers", "method.discriminator.init"},
    "ablation/digits_afd_wd_edc_only": {"method.optimizer_disc.weight_decay", "method.optimizer_enc.weight_decay"},
    "ablation/digits_afd_lr_da": {"method.optimizer_disc.lr"},
    "ablation/digits_afd_batch128_long": {
        "dataset.batch_size",
        "trainer.max_epochs",
        "lr_milestones",
        "method.scheduler.milestones",
    },
    "ablation/digits_afd_cls_adv": {"method.cls_loss"},
    "ablation/digits_afd_cls_trades": {"method.cls_loss"},
    "ablation/digits_afd_da_narrow": {"method.discriminator.hidden_dim"},
    "ablation/digits_afd_da_wide": {"method.discriminator.hidden_dim"},
    "ablation/digits_afd_lr_e_low": {"method.optimizer_enc.lr"},
    "ablation/digits_afd_lr_e_high": {"method.optimizer_enc.lr"},
}


def _drop_run_paths(node):
    """The config without what only a running Hydra job resolves (output paths)."""
    if isinstance(node, dict):
        return {k: _drop_run_paths(v) for k, v in node.items() if k not in ("paths", "hydra") and _keep(v)}
    return node


def _keep(value) -> bool:
    return not (isinstance(value, str) and ("${hydra:" in value or "${paths." in value))


@functools.cache  # each preset composed once per session (the checks below read copies)
def _resolved(preset: str) -> dict:
    cfg = compose_train([f"experiment={preset}"], fast=False)
    plain = _drop_run_paths(OmegaConf.to_container(cfg, resolve=False))
    return OmegaConf.to_container(OmegaConf.create(plain), resolve=True)


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out |= _leaves(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: node}


def test_ablation_list_is_complete():
    assert set(ABLATIONS) == set(CHANGES) and len(ABLATIONS) >= 10


@pytest.mark.parametrize("preset", EXPERIMENTS)
@pytest.mark.slow
def test_every_experiment_composes_and_resolves(preset):
    cfg = _resolved(preset)
    assert cfg["method"]["_target_"] and cfg["dataset"]["meta"]["eps"] > 0


@pytest.mark.parametrize("preset", ABLATIONS)
@pytest.mark.slow
def test_ablation_changes_one_ingredient(preset):
    base, mine = _leaves(_resolved("paper_digits_afd")), _leaves(_resolved(preset))
    changed = {k for k in base.keys() | mine.keys() if base.get(k) != mine.get(k)}
    expected = CHANGES[preset]
    # every changed leaf lies under an expected key, and every expected key changed
    assert all(any(k == e or k.startswith(e + ".") for e in expected) for k in changed), sorted(changed)
    assert all(any(k == e or k.startswith(e + ".") for k in changed) for e in expected), sorted(changed)


@pytest.mark.parametrize("preset", ABLATIONS)
def test_ablation_values_cite_a_source(preset):
    lines = (CONF / "experiment" / f"{preset}.yaml").read_text().splitlines()
    assert lines[0] == "# @package _global_" and lines[1].startswith("# Ablation")
    for i, line in enumerate(lines):
        code = line.split("#")[0].rstrip()
        if not line.startswith(("#", "defaults:", "  - ")) and re.fullmatch(r"\s*[\w.]+:\s*\S.*", code):
            assert "#" in line or lines[i - 1].lstrip().startswith("#"), f"{preset}.yaml:{i + 1}: {line!r}"


def test_make_ablate_runs_every_ablation_through_reproduce():
    out = subprocess.run(
        ["make", "-s", "--eval", "print-ablate: ; @echo $(ABLATE_PRESETS) $(ABLATE_DIR)", "print-ablate"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    listed, folder = out.stdout.split()
    presets = listed.split(",")
    assert presets[:2] == ["paper_digits_afd", "official_digits_afd"] and sorted(presets[2:]) == ABLATIONS
    assert folder == "logs/ablate"
    recipe = (REPO / "Makefile").read_text().split("\nablate:", 1)[1].split("\n\n", 1)[0]
    assert "$(MAKE) reproduce REPRO_PRESETS=$(ABLATE_PRESETS) REPRO_DIR=$(ABLATE_DIR)" in recipe
