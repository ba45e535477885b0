"""The Boundary attack's search (Brendel et al. 2018, *Decision-Based Adversarial Attacks*, arXiv:1712.04248) as
foolbox 3.3.4's ``BoundaryAttack.run`` performs it, with each sample stopped once its result is decided.

Step for step and draw for draw foolbox's algorithm, from adversarial starting points: each step draws one
Gaussian direction of the image's size (``torch.randn((D, 1))``, shared by the whole batch, so its shape does
not depend on how many samples are still attacked), makes it orthogonal to each sample's direction to its
original, takes a spherical step and a step towards the original, and keeps the candidate when it is
adversarial and closer. Every ``update_stats_every_k`` steps it also asks whether the spherical candidate is
adversarial, and it adapts each sample's two step sizes from the success rates of its last 100 spherical and
30 full candidates (foolbox's ``ArrayQueue``; NaN marks an empty slot).

What differs, with ``stop_at`` (an ε):

* a sample whose best adversarial example is within ``stop_at`` of its original leaves the attack: the model
  is no longer run on its candidates. Every other computation still runs on the whole batch, frozen rows
  included, in foolbox's order and shapes (the one matrix product, ``source_directions @ eta``, can round a row
  differently with another number of rows), so a sample still attacked computes exactly what it would have
  in foolbox: its candidates, its model outputs (if the model computes each row independently of the
  others) and its step sizes depend only on its own state and on the shared draw.
* foolbox stops the whole batch once every sample has converged (``source_step`` below
  ``source_step_convergance``). Once a sample has left, that test is not known for the whole batch, so the
  search runs on to ``steps``: a sample's best example only ever moves closer to its original, so running
  longer can only lower its norm.

With ``stop_at=None`` the result is foolbox's (tests/evaluation/attacks/test_boundary.py compares them bit for bit,
and with ``stop_at`` the undecided samples' results). One caveat is the hardware's, not the algorithm's: CPU and GPU
kernels may round a row differently in a batch of another size (the digits ResNet-5 on the project machine: 1 to 3 rows on
one thread, up to about 11 on two), so once few samples are left, a candidate within that rounding of the decision
boundary could be judged otherwise than in foolbox's full batch and its sample take another path. The tests use a
model that computes each row on its own; benchmarks/bench_eval_attacks.py compares both paths per sample on a
trained checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn

from afd_lightning.evaluation.attacks.base import perturbation_norm

# foolbox BoundaryAttack's arguments that the search takes (not init_attack, tensorboard)
SEARCH_ARGUMENTS = (
    "steps",
    "spherical_step",
    "source_step",
    "source_step_convergance",
    "step_adaptation",
    "update_stats_every_k",
)


class _SuccessQueue:
    """foolbox's ``ArrayQueue``: the last ``maxlen`` successes (1.0 / 0.0) of each sample, NaN where empty."""

    def __init__(self, maxlen: int, n: int, device: torch.device):
        self.data = torch.full((maxlen, n), float("nan"), dtype=torch.float64, device=device)
        self.next = 0

    def append(self, success: torch.Tensor) -> None:
        self.data[self.next] = success.to(torch.float64)
        self.next = (self.next + 1) % self.data.shape[0]

    def clear(self, rows: torch.Tensor) -> None:
        self.data[:, rows] = float("nan")

    def isfull(self) -> torch.Tensor:
        return ~torch.isnan(self.data).any(0)

    def mean(self) -> torch.Tensor:
        # read only where full (no NaN): a sum of 0s and 1s over a count, as numpy's nanmean computes it
        return torch.nanmean(self.data, 0)


def _l2(flat: torch.Tensor) -> torch.Tensor:
    """eagerpy's ``norms.l2(x, axis=-1)``: ``sqrt(sum(x ** 2))``, in that order."""
    return (flat**2).sum(-1).sqrt()


def _proposals(
    originals: torch.Tensor,
    perturbed: torch.Tensor,
    unnormalized_source_directions: torch.Tensor,
    source_directions: torch.Tensor,
    source_norms: torch.Tensor,
    spherical_steps: torch.Tensor,
    source_steps: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """foolbox's ``draw_proposals`` on (N, D) rows in [0, 1]: (candidates, spherical candidates)."""
    d = originals.shape[1]
    eta = torch.randn((d, 1), dtype=perturbed.dtype, device=perturbed.device) * 1.0 + 0.0  # eagerpy's normal
    eta = eta.T - torch.matmul(source_directions, eta) * source_directions
    norms = _l2(eta)
    eta = eta * (spherical_steps * source_norms / norms)[:, None]
    distances = ((spherical_steps**2 + 1).sqrt())[:, None]
    directions = eta - unnormalized_source_directions
    spherical_candidates = (originals + directions / distances).clamp(0.0, 1.0)
    new_source_directions = originals - spherical_candidates
    new_source_directions_norms = _l2(new_source_directions)
    lengths = source_steps * source_norms
    lengths = lengths + new_source_directions_norms - source_norms
    lengths = torch.maximum(lengths, torch.full_like(lengths, 0))
    lengths = lengths / new_source_directions_norms
    candidates = (spherical_candidates + lengths[:, None] * new_source_directions).clamp(0.0, 1.0)
    return candidates, spherical_candidates


@torch.no_grad()
def boundary_search(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    starting_points: torch.Tensor,
    *,
    steps: int = 25000,
    spherical_step: float = 1e-2,
    source_step: float = 1e-2,
    source_step_convergance: float = 1e-7,
    step_adaptation: float = 1.5,
    update_stats_every_k: int = 10,
    stop_at: float | None = None,
    norm: str = "l2",
) -> torch.Tensor:
    """The Boundary attack from adversarial ``starting_points`` on float32 ``x`` in [0, 1] (model in attack mode).

    Arguments as foolbox's ``BoundaryAttack``, plus ``stop_at``: a sample whose best example is within
    ``stop_at`` of its original (in ``norm``, as :func:`perturbation_norm` measures the result) leaves the
    search; None: foolbox's search exactly. Returns the best adversarial example of each sample.
    """
    n, shape = len(x), x.shape
    originals = x.flatten(1)
    best = starting_points.detach().float().flatten(1).clone()
    if not (model(best.view(shape)).argmax(-1) != y).all():
        raise ValueError("Boundary attack: every starting point must be adversarial")

    spherical_steps = torch.ones(n, dtype=x.dtype, device=x.device) * spherical_step
    source_steps = torch.ones(n, dtype=x.dtype, device=x.device) * source_step
    stats_spherical = _SuccessQueue(100, n, x.device)
    stats_step = _SuccessQueue(30, n, x.device)
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    if stop_at is not None:
        active &= perturbation_norm(best - originals, norm) > stop_at

    def is_adversarial(candidates: torch.Tensor) -> torch.Tensor:
        """Misclassified, for the samples still attacked (False for the others: their results are frozen)."""
        if active.all():
            return model(candidates.view(shape)).argmax(-1) != y
        adv = torch.zeros(n, dtype=torch.bool, device=x.device)
        idx = active.nonzero().flatten()
        adv[idx] = model(candidates[idx].view(len(idx), *shape[1:])).argmax(-1) != y[idx]
        return adv

    for step in range(1, steps + 1):
        if not active.any():
            break
        converged = source_steps < source_step_convergance
        if converged.all() and active.all():
            break  # foolbox's stop; only known while every sample is attacked (see the module docstring)

        unnormalized_source_directions = originals - best
        source_norms = _l2(unnormalized_source_directions)
        source_directions = unnormalized_source_directions / source_norms[:, None]
        check = step % update_stats_every_k == 0
        candidates, spherical_candidates = _proposals(
            originals,
            best,
            unnormalized_source_directions,
            source_directions,
            source_norms,
            spherical_steps,
            source_steps,
        )
        is_adv = is_adversarial(candidates)
        if check:
            stats_spherical.append(is_adversarial(spherical_candidates))
            stats_step.append(is_adv)

        closer = _l2(originals - candidates) < source_norms
        update = ~converged & is_adv & closer
        best = torch.where(update[:, None], candidates, best)
        if stop_at is not None and update.any():
            idx = update.nonzero().flatten()
            active[idx] &= perturbation_norm(best[idx] - originals[idx], norm) > stop_at

        if check:
            full = stats_spherical.isfull()
            if full.any():
                probs = stats_spherical.mean()
                up, down = (probs > 0.5) & full, (probs < 0.2) & full
                spherical_steps = torch.where(up, spherical_steps * step_adaptation, spherical_steps)
                source_steps = torch.where(up, source_steps * step_adaptation, source_steps)
                spherical_steps = torch.where(down, spherical_steps / step_adaptation, spherical_steps)
                source_steps = torch.where(down, source_steps / step_adaptation, source_steps)
                stats_spherical.clear(up | down)
            full = stats_step.isfull()
            if full.any():
                probs = stats_step.mean()
                up, down = (probs > 0.25) & full, (probs < 0.1) & full
                source_steps = torch.where(up, source_steps * step_adaptation, source_steps)
                source_steps = torch.where(down, source_steps / step_adaptation, source_steps)
                stats_step.clear(up | down)
    return best.view(shape)
