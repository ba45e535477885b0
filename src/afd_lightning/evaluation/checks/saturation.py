"""Softmax saturation and vanishing input gradients: the symptom of gradient masking an audit found on AFD.

When p(y | x) is exactly 1.0 in float32, the cross-entropy loss is 0 and its input gradient is 0
or tiny, so cross-entropy PGD has nothing to follow and reports robustness the model may not have
(margin-loss and AutoAttack's DLR attacks do not saturate; see :mod:`.adaptive`).
"""

from __future__ import annotations

import torch
from torch import nn

from afd_lightning.attacks import attack_mode


def measure(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    correct: torch.Tensor,
    batch_size: int = 500,
    grad_threshold: float = 1e-8,
) -> tuple[dict, torch.Tensor]:
    """Counts over the clean-correct samples: p(y) == 1.0 in float32, and ‖∇ₓ CE‖₂ < ``grad_threshold``;
    and the per-sample mask (bool, n) of samples with either."""
    p_one = grad_below = saturated = 0
    idx = correct.nonzero().flatten()
    mask = torch.zeros(len(x), dtype=torch.bool)
    norms = []
    with attack_mode(model), torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        for i in range(0, len(idx), batch_size):
            b = idx[i : i + batch_size]
            xb = x[b].detach().float().clone().requires_grad_(True)
            logits = model(xb)
            p_y = logits.float().softmax(1).gather(1, y[b, None])[:, 0]
            loss = nn.functional.cross_entropy(logits, y[b], reduction="sum")
            (grad,) = torch.autograd.grad(loss, xb)
            g = grad.flatten(1).norm(dim=1)
            one, small = p_y.detach() == 1.0, g < grad_threshold
            p_one += int(one.sum())
            grad_below += int(small.sum())
            saturated += int((one | small).sum())
            mask[b.cpu()] = (one | small).cpu()
            norms.append(g.cpu())
    g = torch.cat(norms) if norms else torch.zeros(0)
    return (
        {
            "n_correct": int(len(idx)),
            "p_one": p_one,
            "grad_below": grad_below,
            "saturated": saturated,
            "grad_threshold": float(grad_threshold),
            "median_grad_norm": float(g.median()) if len(g) else None,
        },
        mask,
    )
