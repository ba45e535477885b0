"""autoattack.log says which samples its numbers count: our own per-stage lines on all samples given."""

from __future__ import annotations

import re

import torch
from torch import nn

from afd_lightning.evaluation.attacks import AutoAttackSweep


def test_autoattack_log_states_its_base(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 3, (6,))
    attack = AutoAttackSweep(
        "autoattack", "linf", [0.1], version="custom", attacks=["apgd-ce"], n_iter=2, log_dir=str(tmp_path)
    )
    attack.attack_once(model, x, y, 0.1)
    text = (tmp_path / "autoattack.log").read_text()
    assert "count only the samples each stage attacks" in text and "count all 6 samples given here" in text
    match = re.search(r"after apgd-ce: (\d+) of 6 samples robust", text)
    assert match and int(match.group(1)) == int(attack.last_stages["apgd-ce"].sum())
