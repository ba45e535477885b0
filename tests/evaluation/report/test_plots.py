"""Every report figure is written as a readable PNG, fed by the real analysis outputs for two models."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from afd_lightning.evaluation.analysis.embedding import class_gradient_matrix, embedding_sensitivity, tsne_embeddings
from afd_lightning.evaluation.report.plots import (
    model_colors,
    plot_accuracy_vs_eps,
    plot_class_gradient_matrix,
    plot_embedding_sensitivity,
    plot_tsne,
)
from afd_lightning.nets.base import ImageClassifier

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPS = [0.0, 0.1, 0.2]


def noise(model, x, y, eps):
    return (x + eps * torch.randn_like(x)).clamp(0, 1)


@pytest.fixture(scope="module")
def models_and_data():
    torch.manual_seed(0)
    models = {
        "NT": ImageClassifier(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU()), 8, 3),
        "AFD": ImageClassifier(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU()), 8, 3),
    }
    x = torch.rand(18, 1, 4, 4)
    y = torch.arange(18) % 3
    return models, x, y


def assert_png(path, tmp_path):
    path = str(path)
    assert path.startswith(str(tmp_path))
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    image = plt.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_model_colors_are_stable_and_distinct():
    a = model_colors(["TRADES", "AFD", "NT", "AT"])
    assert a == model_colors(["AT", "NT", "AFD", "TRADES"])
    assert len(set(a.values())) == 4


@pytest.mark.slow
def test_plot_accuracy_vs_eps_with_markers_and_failed_checks(tmp_path):
    from helpers.schema import tiny_results

    results = tiny_results()
    assert_png(plot_accuracy_vs_eps(results, tmp_path / "figs" / "accuracy.png"), tmp_path)
    results.attacks = [a for a in results.attacks if len(a.eps) <= 2]
    assert plot_accuracy_vs_eps(results, tmp_path / "none.png") is None  # nothing swept: no figure


@pytest.mark.parametrize("error", ["iqr", "std"])
@pytest.mark.slow
def test_plot_embedding_sensitivity(models_and_data, tmp_path, error):
    models, x, y = models_and_data
    results = {name: embedding_sensitivity(m, x, y, noise, EPS) for name, m in models.items()}
    assert_png(plot_embedding_sensitivity(results, tmp_path / f"sensitivity_{error}.png", error=error), tmp_path)


def test_gradient_matrix_marks_exact_zeros(models_and_data, tmp_path):
    models, x, y = models_and_data
    m = class_gradient_matrix(models["NT"], x, y, 3)
    m["mean_grad_norm"][0][1], m["log10_mean_grad_norm"][0][1] = 0.0, None
    path = plot_class_gradient_matrix({"NT": m}, tmp_path / "zeros.png")
    assert_png(path, tmp_path)
    red = plt.imread(path)[..., :3]
    # some pixels are firebrick (178, 34, 34), a colour viridis never uses
    assert ((abs(red[..., 0] - 178 / 255) < 0.03) & (red[..., 1] < 0.2) & (red[..., 2] < 0.2)).any()


@pytest.mark.slow
def test_plot_class_gradient_matrix(models_and_data, tmp_path):
    models, x, y = models_and_data
    results = {name: class_gradient_matrix(m, x, y, num_classes=3) for name, m in models.items()}
    assert_png(plot_class_gradient_matrix(results, tmp_path / "class_gradients.png"), tmp_path)


@pytest.mark.slow
def test_plot_tsne(models_and_data, tmp_path):
    models, x, y = models_and_data
    results = {name: tsne_embeddings(m, x, y, noise, EPS, n_samples=12, n_threads=1) for name, m in models.items()}
    assert_png(plot_tsne(results, tmp_path / "tsne.png"), tmp_path)


def test_empty_results_raise(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plot_tsne({}, tmp_path / "x.png")


def test_failed_checks_are_attributed_to_the_failing_attacks_only():
    from afd_lightning.evaluation.report.plots import _failed_for

    from helpers.schema import tiny_results

    afd = tiny_results().models["AFD"]
    assert _failed_for(afd, "pgd_linf") == ["pgd_linf_not_beaten"] and _failed_for(afd, "fgsm") == []
    afd.checks[0].numbers["pgd_linf vs autoattack @ 0.2"]["failed"] = False  # listed, but not failing
    assert _failed_for(afd, "pgd_linf") == []
