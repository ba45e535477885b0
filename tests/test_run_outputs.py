"""What a run leaves in its directory: last.ckpt follows every epoch, best.ckpt the best val/acc_adv."""

from __future__ import annotations

import json

import pytest

from afd_lightning.store.checkpoint import load_checkpoint
from afd_lightning.train import run


@pytest.mark.slow
def test_last_checkpoint_is_the_final_epoch_even_when_best_stops_improving(train_cfg, tmp_path):
    # Natural training: val/acc_adv stays near 0, so best.ckpt stops changing early, but
    # last.ckpt must still be rewritten at the end of every epoch (it is what resume uses).
    cfg = train_cfg(["method=nt", "trainer.max_epochs=3", "+trainer.limit_train_batches=3"])
    metrics = run(cfg)
    ckpt_dir = tmp_path / "run" / "checkpoints"
    last = load_checkpoint(ckpt_dir / "last.ckpt")
    best = load_checkpoint(ckpt_dir / "best.ckpt")
    assert last["epoch"] == 2
    assert best["epoch"] <= last["epoch"]
    assert metrics["test/checkpoint"].endswith("last.ckpt")
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(written) >= {"val/acc_clean", "val/acc_adv", "test/acc_clean", "test/acc_adv"}


@pytest.mark.slow
def test_test_ckpt_best_evaluates_best_checkpoint(train_cfg):
    cfg = train_cfg(["method=nt", "trainer.max_epochs=2", "+trainer.limit_train_batches=3", "test_ckpt=best"])
    assert run(cfg)["test/checkpoint"].endswith("best.ckpt")
