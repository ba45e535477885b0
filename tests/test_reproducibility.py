"""Same seed, same CPU run; and a short AFD run on digits learns something robust."""

from __future__ import annotations

import json

import pytest
import torch

from afd_lightning.run.loggers import resolve_wandb_mode
from afd_lightning.train import build, run


def _trained_state(cfg) -> dict[str, torch.Tensor]:
    datamodule, method, trainer = build(cfg)
    trainer.fit(method, datamodule=datamodule)
    return {k: v.detach().clone() for k, v in method.state_dict().items()}


@pytest.mark.slow
def test_same_seed_gives_identical_weights(train_cfg):
    overrides = ["+trainer.limit_train_batches=4", "+trainer.limit_val_batches=0", "callbacks=none"]
    a = _trained_state(train_cfg(overrides + ["seed=3"]))
    b = _trained_state(train_cfg(overrides + ["seed=3"]))
    c = _trained_state(train_cfg(overrides + ["seed=4"]))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


@pytest.mark.slow
def test_short_afd_run_beats_chance_clean_and_under_attack(train_cfg, tmp_path):
    # 6 epochs of the default job with its real PGD-10 training attack; PGD-5 at test time.
    cfg = train_cfg(
        [
            "trainer.max_epochs=6",
            "lr_milestones=[5]",
            "dataset.meta.train_attack_steps=10",
            "dataset.meta.eval_attack_steps=5",
            "dataset.meta.eval_attack_step_size=0.05",
        ]
    )
    metrics = run(cfg)
    assert metrics["test/acc_clean"] > 0.85
    assert metrics["test/acc_adv"] > 0.3  # chance is 0.1; natural training gets about 0
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["test/acc_adv"] == metrics["test/acc_adv"]


def test_wandb_mode_is_offline_without_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_wandb_mode("auto") == "offline"
    assert resolve_wandb_mode("disabled") == "disabled"
