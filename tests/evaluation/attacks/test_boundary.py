"""Boundary (evaluation/attacks/boundary.py, FoolboxBoundary): foolbox's BoundaryAttack step for step, each
sample stopped once decided, never weaker at any eps of the sweep."""

from __future__ import annotations

import foolbox as fb
import pytest
import torch

from afd_lightning.errors import ConfigError
from afd_lightning.evaluation.attacks import FoolboxBoundary, perturbation_norm
from afd_lightning.evaluation.attacks.boundary import boundary_search
from afd_lightning.evaluation.sweep import run_curve

EPS = [0, 0.4, 1, 2]  # the smallest eps > 0 splits the tiny case's samples (asserted below)
BUDGET = dict(steps=300, update_stats_every_k=2)  # both success queues fill: the step sizes adapt


class RowByRow(torch.nn.Module):
    """A tiny CNN run on one image at a time: its outputs for a row do not depend on the other rows.

    CPU kernels may round a row differently in batches of other sizes (a batch of 1 here takes another
    path); with this model any difference between two runs comes from the attack, not from the kernels.
    """

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(6 * 64, 10)
        )
        self.rows = 0  # images evaluated

    def forward(self, x):
        self.rows += len(x)
        return torch.cat([self.net(x[i : i + 1]) for i in range(len(x))])


def _tiny(n=12):
    torch.manual_seed(0)
    model = RowByRow().eval()
    x = torch.rand(n, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)  # every sample clean-correct
    return model, x, y


def _start(model, x, y):
    torch.manual_seed(1)
    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0))
    _, start, ok = fb.attacks.LinearSearchBlendedUniformNoiseAttack(steps=50)(fmodel, x, y, epsilons=None)
    assert ok.all()
    return fmodel, start


@pytest.mark.parametrize("convergence", [1e-7, 0.008, 0.5])  # never, some samples, all at once (step 1)
@pytest.mark.slow
def test_without_a_stop_it_is_foolboxs_boundary_attack_bit_for_bit(convergence):
    model, x, y = _tiny()
    fmodel, start = _start(model, x, y)
    budget = dict(BUDGET, source_step_convergance=convergence)
    torch.manual_seed(2)
    _, expected, _ = fb.attacks.BoundaryAttack(**budget)(fmodel, x, y, epsilons=None, starting_points=start)
    state = torch.get_rng_state()
    torch.manual_seed(2)
    got = boundary_search(model, x, y, start, **budget)
    assert torch.equal(got, expected)
    assert torch.equal(torch.get_rng_state(), state)  # the same draws, as many
    if convergence < 0.5:
        assert not torch.equal(got, start)  # the search moved


@pytest.mark.slow
def test_early_stop_leaves_the_same_or_lower_accuracy_and_foolboxs_result_where_undecided():
    model, x, y = _tiny()
    correct = torch.ones(len(y), dtype=torch.bool)
    old = FoolboxBoundary("boundary", EPS, early_stop=False, n_samples=None, **BUDGET)
    new = FoolboxBoundary("boundary", EPS, n_samples=None, **BUDGET)
    assert new.early_stop and new.stop_at == 0.4
    model.rows = 0
    old_curve = run_curve(model, old, x, y, correct, seed=3)
    old_rows, model.rows = model.rows, 0
    new_curve = run_curve(model, new, x, y, correct, seed=3)
    assert old_curve.min_norms is not None and new_curve.min_norms is not None
    # per sample and eps: robust under the new attack only where robust under the old one
    assert not (new_curve.robust & ~old_curve.robust).any()
    assert all(n <= o for n, o in zip(new_curve.accuracy, old_curve.accuracy))
    # undecided samples: foolbox's norm exactly; decided ones: within the smallest eps > 0 both ways
    decided = new_curve.min_norms <= 0.4
    assert torch.equal(new_curve.min_norms[~decided], old_curve.min_norms[~decided])
    assert (old_curve.min_norms[decided] <= new_curve.min_norms[decided]).all()
    assert torch.equal(new_curve.robust, old_curve.robust)  # here even equal at every eps
    assert 0 < int(decided.sum()) < len(y)  # the tiny case is neither trivial nor hopeless
    assert model.rows < old_rows  # and the decided samples left the search


@pytest.mark.slow
def test_decided_samples_are_frozen_and_undecided_ones_follow_foolbox_inside_the_search():
    model, x, y = _tiny()
    _, start = _start(model, x, y)
    torch.manual_seed(4)
    full = boundary_search(model, x, y, start, **BUDGET)
    stop = float(perturbation_norm(full - x, "l2").median())
    torch.manual_seed(4)
    stopped = boundary_search(model, x, y, start, stop_at=stop, **BUDGET)
    norms = perturbation_norm(stopped - x, "l2")
    undecided = norms > stop
    assert torch.equal(stopped[undecided], full[undecided])
    assert (norms[~undecided] <= stop).all() and (~undecided).any() and undecided.any()
    with torch.no_grad():
        assert (model(stopped).argmax(1) != y).all()  # still adversarial


def test_options_are_checked():
    attack = FoolboxBoundary("boundary", [0, 0.5, 1], steps=10)
    assert attack.describe()["early_stop"] is True and attack.describe()["stop_at"] == attack.stop_at == 0.5
    assert FoolboxBoundary("boundary", [0], steps=10).stop_at is None  # nothing to stop at: foolbox's search
    with pytest.raises(ConfigError, match="early_stop=false"):
        FoolboxBoundary("boundary", [0, 1], tensorboard=None)
    FoolboxBoundary("boundary", [0, 1], tensorboard=False, early_stop=False)  # foolbox's own takes it
    with pytest.raises(ConfigError, match="does not take"):
        FoolboxBoundary("boundary", [0, 1], stepz=10)
