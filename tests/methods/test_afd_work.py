"""The AFD step does no wasted work: encoder passes per batch, and no graphs or gradients it does not need.

With a K-step attack, Algorithm 1 needs exactly: K encoder forward+backward passes for the attack
(input gradients only), one forward+backward for the (E, Dc) update, two forwards without a graph
for the Da update (E(x) and E(x'), each with its own train-mode BatchNorm statistics), and one
forward+backward for the E update.  Total: K + 4 forwards and K + 2 backwards through E.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from afd_lightning.methods import AFD
from afd_lightning.train import bare_trainer, build

from helpers.compose import compose_train


class EncoderPassCounter:
    """Records each encoder forward (did it build a graph?) and each backward through its output."""

    def __init__(self, encoder: torch.nn.Module):
        self.forwards: list[bool] = []
        self.backwards = 0
        self.handle = encoder.register_forward_hook(self._on_forward)

    def _on_forward(self, module, inputs, output):
        self.forwards.append(output.requires_grad)
        if output.requires_grad:
            output.register_hook(self._on_backward)

    def _on_backward(self, grad):
        self.backwards += 1

    def reset(self):
        self.forwards, self.backwards = [], 0


@pytest.mark.parametrize("attack_steps", [1, 3])
@pytest.mark.slow
def test_encoder_passes_per_afd_batch(tmp_path, attack_steps):
    cfg = compose_train(
        ["method=afd", "dataset.batch_size=8", f"dataset.meta.train_attack_steps={attack_steps}"], tmp_path
    )
    _, method, _ = build(cfg)
    assert isinstance(method, AFD)
    counter = EncoderPassCounter(method.model.encoder)
    per_batch: list[tuple[list[bool], int]] = []

    class PerBatch(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            counter.reset()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            per_batch.append((list(counter.forwards), counter.backwards))

    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    trainer = bare_trainer(callbacks=[PerBatch()])
    trainer.fit(method, DataLoader(TensorDataset(x, y), batch_size=8))

    k = attack_steps
    assert len(per_batch) == 2
    for forwards, backwards in per_batch:
        # attack (graph w.r.t. the input), step 1 (graph), step 2 (two forwards, no graph), step 3 (graph)
        assert forwards == [True] * k + [True] + [False, False] + [True]
        assert backwards == k + 2
    # three optimizer steps per batch
    assert trainer.global_step == 3 * len(per_batch)


# That Da's and Dc's parameters receive no gradient in step 3, and that no parameter receives one
# during the attack, is asserted in test_afd.py::test_each_optimizer_changes_exactly_its_own_parameters.
