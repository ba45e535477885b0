"""Embedding sensitivity, sparsity, class-gradient matrix and t-SNE against hand-checked cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from afd_lightning.attacks.factory import AttackFactory
from afd_lightning.evaluation.analysis.embedding import (
    NORM_FLOOR,
    class_gradient_matrix,
    embedding_sensitivity,
    embedding_sparsity,
    perturb_with,
    tsne_embeddings,
)
from afd_lightning.nets import resnet5
from afd_lightning.nets.base import ImageClassifier


def tiny_resnet5() -> ImageClassifier:
    torch.manual_seed(0)
    return resnet5(1, 10, stem_stride=1, width=8, block_width=8, embed_dim=16)


def digits(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.images[:n] / 16.0, dtype=torch.float32).unsqueeze(1)
    return x, torch.tensor(d.target[:n])


def linear_model(weight: torch.Tensor, num_classes: int = 2) -> ImageClassifier:
    """E(x) = weight @ flatten(x): an embedding computable by hand."""
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(weight)
    return ImageClassifier(nn.Sequential(nn.Flatten(), lin), weight.shape[0], num_classes)


PGD = perturb_with(AttackFactory("advertorch.attacks.LinfPGDAttack", eps=0.1, steps=3, step_size=0.05))


def shift_first_pixel(model, x, y, eps):
    """x' = x + eps on pixel 0 of every image."""
    x_adv = x.clone()
    x_adv.view(len(x), -1)[:, 0] += eps
    return x_adv


def strict_json(result) -> dict:
    return json.loads(json.dumps(result, allow_nan=False))


# --- embedding sensitivity ---------------------------------------------------------------


def test_sensitivity_is_zero_at_eps0_and_grows_with_eps():
    model = tiny_resnet5()
    x, y = digits(8)
    r = strict_json(embedding_sensitivity(model, x, y, PGD, [0.0, 0.05, 0.3], batch_size=4))
    assert r["eps"] == [0.0, 0.05, 0.3] and r["n"] == 8 and r["zero_norm"] == 0
    for key in ("median", "q25", "q75", "mean", "std"):
        assert r[key][0] == 0.0
    assert 0.0 < r["median"][1] <= r["median"][2]
    assert all(q25 <= m <= q75 for q25, m, q75 in zip(r["q25"], r["median"], r["q75"]))


def test_sensitivity_matches_hand_computation():
    # E(x) = [x0 + x1, x2 - x3]; shifting x0 by eps moves E by exactly [eps, 0].
    model = linear_model(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]))
    x = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.75, 0.25]]).view(2, 1, 2, 2)
    # ||E|| = 1 and sqrt(0.5): sensitivities 0.1 and 0.1 / sqrt(0.5)
    s = np.array([0.1, 0.1 / math.sqrt(0.5)])
    r = embedding_sensitivity(model, x, torch.zeros(2, dtype=torch.long), shift_first_pixel, [0.1])
    assert r["median"][0] == pytest.approx(s.mean())
    assert r["mean"][0] == pytest.approx(s.mean())
    assert r["std"][0] == pytest.approx(s.std())
    assert r["q25"][0] == pytest.approx(s[0] + 0.25 * (s[1] - s[0]))
    assert r["q75"][0] == pytest.approx(s[0] + 0.75 * (s[1] - s[0]))


def test_sensitivity_guards_zero_norm_embeddings():
    model = linear_model(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]))
    x = torch.zeros(3, 1, 2, 2)
    r = strict_json(embedding_sensitivity(model, x, torch.zeros(3, dtype=torch.long), shift_first_pixel, [0.1]))
    assert r["zero_norm"] == 3
    assert r["median"][0] == pytest.approx(0.1 / NORM_FLOOR)


def test_sensitivity_is_reproducible_with_a_seed_and_leaves_global_rng_alone():
    torch.manual_seed(0)
    model = ImageClassifier(nn.Flatten(), 64, 10)  # PGD starts at a random point: the seed must fix it
    x, y = digits(8)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = embedding_sensitivity(model, x, y, PGD, [0.1], seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    b = embedding_sensitivity(model, x, y, PGD, [0.1], seed=7)
    c = embedding_sensitivity(model, x, y, PGD, [0.1], seed=8)
    assert a == b and a != c


# --- sparsity -------------------------------------------------------------------------------


def test_sparsity_counts_known_dead_units_and_known_rank():
    # Units 0-3 copy the (positive) pixels; units 4-7 have a bias of -100 and never fire.
    lin = nn.Linear(4, 8)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[:4] = torch.eye(4)
        lin.bias.zero_()
        lin.bias[4:] = -100.0
    model = ImageClassifier(nn.Sequential(nn.Flatten(), lin, nn.ReLU()), 8, 2)
    # Pixels 0.5 + 0.2 (a u + b v) with orthogonal u, v: a rank-2 embedding, two equal-ish variances.
    g = torch.Generator().manual_seed(0)
    a, b = (torch.rand(64, 1, generator=g) * 2 - 1 for _ in range(2))
    u, v = torch.tensor([1.0, 1.0, -1.0, -1.0]) / 2, torch.tensor([1.0, -1.0, 1.0, -1.0]) / 2
    x = (0.5 + 0.2 * (a * u + b * v)).view(64, 1, 2, 2)
    r = strict_json(embedding_sparsity(model, x, batch_size=10))
    assert r == {"units": 4, "mean_units_per_sample": 4.0, "embed_dim": 8, "pca_dims": 2, "variance": 0.99, "n": 64}


def test_sparsity_on_resnet5_is_within_bounds():
    model = tiny_resnet5()
    x, _ = digits(24)
    r = embedding_sparsity(model, x, batch_size=7)
    assert r["embed_dim"] == 16
    assert 0 < r["units"] <= 16 and 0 < r["mean_units_per_sample"] <= r["units"]
    assert 1 <= r["pca_dims"] <= r["units"]


# --- class-gradient matrix -----------------------------------------------------------------


def test_class_gradient_matrix_matches_per_sample_jacobian():
    torch.manual_seed(0)
    model = ImageClassifier(nn.Flatten(), 4, 4)  # softmax(W x + b): linear softmax model
    x = torch.rand(6, 1, 2, 2)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    r = strict_json(class_gradient_matrix(model, x, y, num_classes=4, batch_size=4))

    def probs(xi):
        return model(xi.unsqueeze(0)).softmax(1)[0]

    norms = torch.stack([torch.autograd.functional.jacobian(probs, xi).flatten(1).norm(dim=1) for xi in x])
    # Analytic too: d p_j / dx = p_j (W_j - sum_k p_k W_k)
    W = model.classifier.weight.detach()
    p = model(x).softmax(1).detach()
    analytic = (p.unsqueeze(2) * (W.unsqueeze(0) - (p @ W).unsqueeze(1))).norm(dim=2)
    torch.testing.assert_close(norms, analytic, rtol=1e-5, atol=1e-7)
    assert r["num_classes"] == 4 and r["counts"] == [2, 2, 2, 0]
    for i in range(3):
        expected = norms[y == i].double().mean(0)
        assert r["mean_grad_norm"][i] == pytest.approx(expected.tolist(), rel=1e-5)
        assert r["log10_mean_grad_norm"][i] == pytest.approx(expected.log10().tolist(), rel=1e-5)
    assert r["mean_grad_norm"][3] == [None] * 4 and r["log10_mean_grad_norm"][3] == [None] * 4


def test_class_gradient_matrix_on_resnet5_is_per_sample_and_finite():
    model = tiny_resnet5()
    x, y = digits(12)
    full = class_gradient_matrix(model, x, y, num_classes=10, batch_size=128)
    small = class_gradient_matrix(model, x, y, num_classes=10, batch_size=5)
    m = np.array([[np.nan if v is None else v for v in row] for row in full["log10_mean_grad_norm"]])
    assert m.shape == (10, 10)
    present = np.array(full["counts"]) > 0
    assert np.isfinite(m[present]).all() and np.isnan(m[~present]).all()
    # BatchNorm in eval mode: samples do not interact, so batching cannot change the result.
    np.testing.assert_allclose(
        np.array(small["mean_grad_norm"], dtype=float)[present],
        np.array(full["mean_grad_norm"], dtype=float)[present],
        rtol=1e-4,
    )


def test_class_gradient_matrix_rejects_bad_labels_and_class_counts():
    model = ImageClassifier(nn.Flatten(), 4, 3)
    x = torch.rand(4, 1, 2, 2)
    with pytest.raises(ValueError, match="labels"):
        class_gradient_matrix(model, x, torch.tensor([0, 1, 2, 3]), num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        class_gradient_matrix(model, x, torch.tensor([0, 1, 2, 3]), num_classes=4)


# --- t-SNE ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_tsne_shapes_labels_and_determinism():
    model = tiny_resnet5()
    x, y = digits(30)
    kwargs = dict(n_samples=12, seed=3, perplexity=30, n_threads=1)
    r = strict_json(tsne_embeddings(model, x, y, PGD, [0.0, 0.1], **kwargs))
    assert r["eps"] == [0.0, 0.1] and len(r["maps"]) == 2
    idx = r["indices"]
    assert len(idx) == 12 == len(set(idx)) and idx == sorted(idx) and all(0 <= i < 30 for i in idx)
    labels = y[idx].tolist()
    clean, mixed = r["maps"]
    assert np.array(clean["coords"]).shape == (12, 2) and clean["labels"] == labels
    assert clean["perturbed"] == [False] * 12
    assert np.array(mixed["coords"]).shape == (24, 2) and mixed["labels"] == labels + labels
    assert mixed["perturbed"] == [False] * 12 + [True] * 12
    assert clean["perplexity"] < 30  # lowered for so few points
    assert np.isfinite(np.array(mixed["coords"])).all()
    assert tsne_embeddings(model, x, y, PGD, [0.0, 0.1], **kwargs) == r


# --- the model comes back as it went in -----------------------------------------------------

ANALYSES = {
    "sensitivity": lambda m, x, y: embedding_sensitivity(m, x, y, PGD, [0.0, 0.1], batch_size=8),
    "sparsity": lambda m, x, y: embedding_sparsity(m, x, batch_size=8),
    "class_gradient": lambda m, x, y: class_gradient_matrix(m, x, y, num_classes=10, batch_size=8),
    "tsne": lambda m, x, y: tsne_embeddings(m, x, y, PGD, [0.0, 0.1], n_samples=8, n_threads=1),
}


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_model_state_is_restored(name):
    model = tiny_resnet5()
    model.train()
    model.encoder[1][1].eval()  # a mixed state: one BatchNorm already in eval mode
    model.classifier.weight.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = digits(8)
    strict_json(ANALYSES[name](model, x, y))
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():  # BatchNorm running statistics included
        assert torch.equal(v, before[k]), k
