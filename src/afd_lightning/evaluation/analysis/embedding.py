"""Embedding and gradient analyses of a trained classifier (AFD paper, Figures 3, A1, A6-A8 and Table A5).

Every function takes an :class:`~afd_lightning.nets.base.ImageClassifier`-shaped model
(``model.encoder(x)`` is the embedding E(x), ``model(x)`` the logits; images in [0, 1], NCHW)
and returns plain Python numbers, lists and dicts that ``json.dumps`` writes as strict JSON
(no NaN or infinity: missing values are ``None``).

* The model runs in eval mode with its parameters frozen (:func:`attack_mode`); each module's
  ``training`` flag and each parameter's ``requires_grad`` are restored afterwards.
* Inputs may live on any device: they are moved batch by batch to the model's device, and
  every result is gathered on the CPU.
* ``perturb(model, x, y, eps) -> x_adv`` is supplied by the caller (e.g. an :class:`AttackFactory`
  for PGD-L∞ rebuilt at each eps, see :func:`perturb_with`).  It runs with gradients enabled.
  Passing ``seed`` makes random attack starts reproducible without touching the global RNG.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from typing import cast

import numpy as np
import torch
from torch import nn

from afd_lightning.attacks.factory import AttackFactory, attack_mode
from afd_lightning.nets.protocol import RobustClassifier

Perturb = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor]

# ||E(x)|| below this counts as zero: the normalised sensitivity divides by max(||E(x)||, NORM_FLOOR).
NORM_FLOOR = 1e-12


def perturb_with(factory: AttackFactory) -> Perturb:
    """A ``perturb(model, x, y, eps)`` callable from an attack recipe: the same attack at budget ``eps``.

    The step size keeps the recipe's ratio ``step_size / eps`` (e.g. 2.5 ε / steps stays so at every
    ε of a sweep); a recipe with eps == 0 or no step size keeps its step size as is.
    """

    def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        attack = copy.copy(factory)
        attack.eps = float(eps)
        if factory.step_size is not None and factory.eps > 0:
            attack.step_size = factory.step_size * float(eps) / factory.eps
        return attack(model, x, y)

    return perturb


def _model_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def _spans(n: int, batch_size: int) -> Iterator[slice]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's RNGs for the block and put their previous state back afterwards (no-op for None)."""
    if seed is None:
        yield
        return
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        # Only the generators forked above: torch.manual_seed would also reseed every other GPU.
        torch.default_generator.manual_seed(int(seed))
        for index in devices:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(int(seed))
        yield


def _check_xy(x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    if x.dim() < 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    if y is not None and len(y) != len(x):
        raise ValueError(f"x and y differ in length: {len(x)} images, {len(y)} labels")


def _embed(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """E(x) for all of ``x`` as a (N, D) float32 CPU tensor; the model must already be in attack_mode."""
    device = _model_device(model)
    encoder = cast(RobustClassifier, model).encoder
    out = []
    with torch.no_grad(), torch.autocast(device.type, enabled=False):
        for s in _spans(len(x), batch_size):
            out.append(encoder(x[s].to(device).float()).flatten(1).float().cpu())
    return torch.cat(out)


def _perturb_all(model, x, y, perturb: Perturb, eps: float, batch_size: int) -> torch.Tensor:
    """``perturb`` over ``x`` in batches on the model's device; the result is gathered on the CPU."""
    device = _model_device(model)
    out = []
    with torch.enable_grad():
        for s in _spans(len(x), batch_size):
            xb, yb = x[s].to(device).float(), y[s].to(device)
            x_adv = perturb(model, xb, yb, eps)
            if x_adv.shape != xb.shape:
                raise ValueError(f"perturb returned shape {tuple(x_adv.shape)} for inputs of shape {tuple(xb.shape)}")
            out.append(x_adv.detach().float().cpu())
    return torch.cat(out)


def embedding_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    perturb: Perturb,
    eps_list: Sequence[float],
    batch_size: int = 256,
    seed: int | None = 0,
) -> dict:
    """Normalised embedding sensitivity ``||E(x) - E(x')||_2 / ||E(x)||_2`` per sample (Figure A1).

    ``x' = perturb(model, x, y, eps)`` for each eps; at eps == 0 ``x' = x`` without calling the
    attack, so the sensitivity is exactly 0.  A zero-norm embedding (e.g. every ReLU unit off)
    would make the ratio undefined: the denominator is ``max(||E(x)||, NORM_FLOOR)`` and
    ``zero_norm`` counts such samples so that a huge value can be traced back to them.

    The paper plots the median with standard-deviation error bars; the std of a heavy-tailed
    ratio can dwarf the median (and reach below 0), so both the quartiles (``q25``/``q75``,
    the default error bars in :func:`afd_lightning.evaluation.report.plots.plot_embedding_sensitivity`)
    and ``std`` are returned.

    Returns:
        ``{"eps": [...], "median": [...], "q25": [...], "q75": [...], "mean": [...], "std": [...],
        "n": N, "zero_norm": count}``; every list is aligned with ``eps`` (in the given order).
    """
    _check_xy(x, y)
    eps_list = [float(e) for e in eps_list]
    if not eps_list:
        raise ValueError("eps_list is empty")
    stats: dict[str, list[float]] = {k: [] for k in ("median", "q25", "q75", "mean", "std")}
    with attack_mode(model), _seeded(seed, _model_device(model)):
        z = _embed(model, x, batch_size).double()
        z_norm = z.norm(dim=1)
        for eps in eps_list:
            if eps == 0:
                s = torch.zeros_like(z_norm)
            else:
                z_adv = _embed(model, _perturb_all(model, x, y, perturb, eps, batch_size), batch_size).double()
                s = (z - z_adv).norm(dim=1) / z_norm.clamp_min(NORM_FLOOR)
            q25, median, q75 = np.percentile(s.numpy(), [25, 50, 75])
            stats["median"].append(float(median))
            stats["q25"].append(float(q25))
            stats["q75"].append(float(q75))
            stats["mean"].append(float(s.mean()))
            stats["std"].append(float(s.std(unbiased=False)))
    return {"eps": eps_list, **stats, "n": len(x), "zero_norm": int((z_norm < NORM_FLOOR).sum())}


def embedding_sparsity(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 256,
    variance: float = 0.99,
) -> dict:
    """How many embedding dimensions the model uses on ``x`` (Table A5).

    ``units``: embedding units that are non-zero for at least one sample ("Units");
    ``pca_dims``: the fewest principal components explaining at least ``variance`` of the
    embedding variance (``sklearn.decomposition.PCA(n_components=variance)``, "Dims").
    PCA can find at most ``min(N, D)`` components, so use many more samples than units
    (the paper uses the whole test set).  Constant embeddings (zero variance) give 0 dims.

    Returns:
        ``{"units": int, "mean_units_per_sample": float, "embed_dim": D, "pca_dims": int,
        "variance": variance, "n": N}``.
    """
    from sklearn.decomposition import PCA

    _check_xy(x)
    if not 0 < variance < 1:
        raise ValueError(f"variance must be a fraction strictly between 0 and 1, got {variance}")
    if len(x) < 2:
        raise ValueError("embedding_sparsity needs at least 2 samples for PCA")
    with attack_mode(model):
        z = _embed(model, x, batch_size)
    nonzero = z != 0
    z64 = z.double().numpy()
    if float(z64.var(axis=0).sum()) == 0.0:
        dims = 0
    else:
        dims = int(PCA(n_components=variance, svd_solver="full").fit(z64).n_components_)
    return {
        "units": int(nonzero.any(dim=0).sum()),
        "mean_units_per_sample": float(nonzero.sum(dim=1).double().mean()),
        "embed_dim": int(z.shape[1]),
        "pca_dims": dims,
        "variance": float(variance),
        "n": len(x),
    }


def class_gradient_matrix(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    batch_size: int = 128,
) -> dict:
    """``log10`` of the mean input-gradient norm of each class probability, per true class (Figure 3).

    Entry ``[i][j]`` is ``log10(mean over samples x of true class i of ||d softmax_j(model(x)) / dx||_2)``:
    rows are true (target) labels, columns output classes.  In eval mode samples do not interact,
    so the gradient of ``softmax[:, j].sum()`` with respect to the batch holds every per-sample
    gradient at once: one backward pass per class and batch.  Gradients run in float32.

    Returns:
        ``{"num_classes": K, "counts": [samples per true class], "mean_grad_norm": K x K,
        "log10_mean_grad_norm": K x K}``; rows of classes absent from ``y`` are ``None``
        throughout, as is the log of an exactly-zero mean.
    """
    _check_xy(x, y)
    k = int(num_classes)
    y_cpu = y.detach().long().cpu()
    if len(y_cpu) and (int(y_cpu.min()) < 0 or int(y_cpu.max()) >= k):
        raise ValueError(f"labels must lie in [0, {k}), got range [{int(y_cpu.min())}, {int(y_cpu.max())}]")
    device = _model_device(model)
    sums = torch.zeros(k, k, dtype=torch.float64)
    with attack_mode(model), torch.enable_grad(), torch.autocast(device.type, enabled=False):
        for s in _spans(len(x), batch_size):
            xb = x[s].to(device).float().detach().requires_grad_(True)
            probs = model(xb).float().softmax(dim=1)
            if probs.shape[1] != k:
                raise ValueError(f"num_classes={k} but the model outputs {probs.shape[1]} logits")
            norms = torch.empty(len(xb), k, dtype=torch.float64)
            for j in range(k):
                (grad,) = torch.autograd.grad(probs[:, j].sum(), xb, retain_graph=j < k - 1)
                norms[:, j] = grad.flatten(1).norm(dim=1).double().cpu()
            sums.index_add_(0, y_cpu[s], norms)
    counts = torch.bincount(y_cpu, minlength=k)
    mean: list[list[float | None]] = []
    log_mean: list[list[float | None]] = []
    for i in range(k):
        if counts[i] == 0:
            mean.append([None] * k)
            log_mean.append([None] * k)
            continue
        row = (sums[i] / counts[i]).tolist()
        mean.append(row)
        log_mean.append([math.log10(v) if v > 0 else None for v in row])
    return {"num_classes": k, "counts": counts.tolist(), "mean_grad_norm": mean, "log10_mean_grad_norm": log_mean}


def tsne_embeddings(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    perturb: Perturb,
    eps_list: Sequence[float],
    n_samples: int = 500,
    seed: int = 0,
    perplexity: float = 30.0,
    batch_size: int = 256,
    n_threads: int | None = None,
) -> dict:
    """2-D t-SNE of clean and perturbed embeddings, one map per eps (Figures A6-A8).

    ``n_samples`` images are drawn from ``x`` without replacement (seeded).  For eps == 0 the map
    holds the clean embeddings only; for eps > 0 ONE t-SNE is fitted on ``[clean; perturbed]``
    so both sets share a space and the drift of perturbed points away from their class clusters
    is visible.  Maps of different eps are separate fits: compare shapes, not coordinates.
    ``sklearn.manifold.TSNE(init="pca", random_state=seed)``; the perplexity is lowered to
    ``(points - 1) / 3`` when there are too few points for it (reported per map).
    ``n_threads`` caps the OpenMP threads of sklearn's Barnes-Hut t-SNE (None: torch's count, set by
    ``threads``).  On an oversubscribed machine its per-iteration thread barriers make even a
    40-point map take tens of seconds; ``n_threads=1`` takes a fraction of a second there.

    Returns:
        ``{"eps": [...], "indices": [chosen rows of x], "maps": [{"eps": e, "coords": [[u, v], ...],
        "labels": [...], "perturbed": [bool, ...], "perplexity": p}, ...]}`` with one map per eps in
        the given order; within a map the clean points come first, in ``indices`` order.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    _check_xy(x, y)
    eps_list = [float(e) for e in eps_list]
    if not eps_list:
        raise ValueError("eps_list is empty")
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(x), generator=g)[: min(int(n_samples), len(x))].sort().values
    if len(idx) < 2:
        raise ValueError("tsne_embeddings needs at least 2 samples")
    xs, ys = x[idx.to(x.device)], y[idx.to(y.device)]
    labels = ys.detach().long().cpu().tolist()
    maps = []
    with attack_mode(model), _seeded(seed, _model_device(model)):
        z = _embed(model, xs, batch_size)
        for eps in eps_list:
            if eps == 0:
                pts, perturbed = z, [False] * len(labels)
            else:
                z_adv = _embed(model, _perturb_all(model, xs, ys, perturb, eps, batch_size), batch_size)
                pts, perturbed = torch.cat([z, z_adv]), [False] * len(labels) + [True] * len(labels)
            p = float(min(perplexity, max(1.0, (len(pts) - 1) / 3)))
            tsne = TSNE(n_components=2, init="pca", random_state=int(seed), perplexity=p)
            with threadpool_limits(limits=n_threads or torch.get_num_threads(), user_api="openmp"):
                coords = tsne.fit_transform(pts.double().numpy())
            maps.append(
                {
                    "eps": eps,
                    "coords": coords.tolist(),
                    "labels": labels * (2 if eps else 1),
                    "perturbed": perturbed,
                    "perplexity": p,
                }
            )
    return {"eps": eps_list, "indices": idx.tolist(), "maps": maps}
