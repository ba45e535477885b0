"""Figures of the evaluation report (AFD paper, Figures 2, 3, A1 and A6-A8) as PNG files.

Each function takes ``{model_name: result}`` (the outputs of :mod:`afd_lightning.evaluation.analysis.embedding`
or of the accuracy sweep), writes one PNG at ``path`` (parent folders are created) and returns
the path as a string.  Matplotlib runs on the Agg backend, and no figure is left open.

A model keeps its colour across every figure of a report: colours come from
:func:`model_colors` over the sorted model names unless ``colors`` is given; pass the same
``colors`` dict to every call when the figures show different subsets of models.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from afd_lightning.files.writer import save_figure  # noqa: E402

DPI = 120


def _palette(name: str) -> tuple[tuple[float, float, float], ...]:
    """The RGB colours of a qualitative colormap (tab10, tab20), which matplotlib types only loosely."""
    colors = cast(ListedColormap, plt.get_cmap(name)).colors
    return cast("tuple[tuple[float, float, float], ...]", colors)


def model_colors(names: Iterable[str]) -> dict[str, tuple]:
    """One ``tab10`` colour per model, assigned in sorted-name order (cycles after 10 models)."""
    palette = _palette("tab10")
    return {name: palette[i % len(palette)] for i, name in enumerate(sorted(set(names)))}


def _save(fig, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # bbox_inches="tight" keeps a figure-level legend placed outside the axes. A temporary file renamed
        # over path: a symlink planted at path is refused, never written through (afd_lightning.files.writer).
        save_figure(fig, path, dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return str(path)


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def _need(results: Mapping, what: str) -> None:
    if not results:
        raise ValueError(f"{what}: nothing to plot (empty results)")


def _failed_for(model_record, attack: str) -> list[str]:
    """Names of this model's failed checks whose failing items involve ``attack``."""
    out = []
    for c in model_record.checks:
        items = [k for k, v in c.numbers.items() if isinstance(v, dict) and v.get("failed")]
        if c.passed is False and any(
            attack == k or attack in k.replace(" vs ", " ").replace(" @ ", " ").split() for k in items
        ):
            out.append(c.name)
    return out


def plot_accuracy_vs_eps(results, path, colors: Mapping | None = None) -> str | None:
    """Accuracy against ε, one panel per swept attack, every model overlaid (Figure 2).

    ``results``: an :class:`~afd_lightning.evaluation.report.schema.EvaluationResults`.  Shaded bands are
    95% Wilson intervals; the PGD-L∞ panel carries AutoAttack (◆), the other single-ε L∞ attacks (+)
    and the worst case (★) as markers at the Table 1 ε; a curve whose checks failed is dashed and
    its panel names the failed checks.  Returns None when no attack was swept over two ε > 0.
    """
    swept = [a for a in results.attacks if sum(e > 0 for e in a.eps) >= 2]
    if not swept:
        return None
    models = results.models
    colors = dict(colors) if colors is not None else model_colors(models)
    rows, cols = _grid(len(swept))
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.6 * rows), squeeze=False)
    point_attacks = [a for a in results.attacks if a.norm == "linf" and a.kind != "transfer" and a not in swept]
    drawn: set[str] = set()  # what the figure shows: the legend lists only these (not an attack that did not run)
    for ax, a in zip(axes.flat, swept):
        failed_notes = []
        for model in sorted(models):
            c = models[model].attacks.get(a.name)
            if c is None:
                continue
            failed = _failed_for(models[model], a.name)
            ax.plot(
                c.eps,
                c.accuracy,
                marker="o",
                markersize=3.5,
                color=colors[model],
                label=model,
                linestyle="--" if failed else "-",
            )
            if c.ci_low and c.ci_high:
                ax.fill_between(c.eps, c.ci_low, c.ci_high, color=colors[model], alpha=0.15, linewidth=0)
                drawn.add("ci")
            drawn.update(["failed"] if failed else [])
            failed_notes += [f"{model}: {f}" for f in failed]
        n = {models[m].attacks[a.name].n_samples for m in models if a.name in models[m].attacks}
        if a.name == "pgd_linf":
            eps = results.table_eps
            for model in sorted(models):
                m = models[model]
                for pa in point_attacks:
                    acc = m.attacks[pa.name].accuracy_at(eps) if pa.name in m.attacks else None
                    if acc is not None:
                        drawn.add(pa.name)
                        ax.plot(
                            [eps],
                            [acc],
                            marker="D" if pa.name == "autoattack" else "P",
                            markersize=6,
                            color=colors[model],
                            markeredgecolor="black",
                            linestyle="",
                        )
                if m.worst_case is not None:
                    drawn.add("worst_case")
                    ax.plot(
                        [m.worst_case.eps],
                        [m.worst_case.accuracy],
                        marker="*",
                        markersize=11,
                        color=colors[model],
                        markeredgecolor="black",
                        linestyle="",
                    )
        title = f"{a.label} (n={'/'.join(str(k) for k in sorted(n))})"
        if failed_notes:  # wrapped: several models' failures must not run into the next panel
            title += "\n" + textwrap.fill("FAILED: " + ", ".join(failed_notes), width=60)
        ax.set_title(title, fontsize=9, color="firebrick" if failed_notes else "black")
        ax.set_xlabel("ε (perturbation budget)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(swept) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colors[m], marker="o", markersize=3.5, label=m) for m in sorted(models)]
    others = [pa.label or pa.name for pa in point_attacks if pa.name in drawn and pa.name != "autoattack"]
    marker: dict[str, Any] = {"color": "grey", "linestyle": "", "markeredgecolor": "black"}
    for shown, handle in (
        ("ci", Line2D([], [], color="grey", alpha=0.4, linewidth=6, label="95% Wilson interval")),
        ("failed", Line2D([], [], color="grey", linestyle="--", label="a check failed")),
        ("autoattack", Line2D([], [], marker="D", label="AutoAttack (Table 1 ε)", **marker)),
        ("others", Line2D([], [], marker="P", label=f"{', '.join(others)} (Table 1 ε)", **marker)),
        ("worst_case", Line2D([], [], marker="*", markersize=10, label="worst case (Table 1 ε)", **marker)),
    ):
        if shown in drawn or (shown == "others" and others):
            handles.append(handle)
    fig.suptitle(f"Robust accuracy against attack strength (n = {results.n_samples} test samples)")
    fig.tight_layout()
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return _save(fig, path)


def plot_embedding_sensitivity(
    results: Mapping[str, Mapping], path, error: str = "iqr", colors: Mapping | None = None
) -> str:
    """Median normalised embedding sensitivity against ε per model, with error bars (Figure A1).

    ``results = {model_name: embedding_sensitivity(...)}``.  ``error="iqr"`` draws the 25th-75th
    percentiles (default: they stay non-negative and suit a median); ``error="std"`` draws
    median ± standard deviation as in the paper.
    """
    _need(results, "plot_embedding_sensitivity")
    if error not in ("iqr", "std"):
        raise ValueError(f"error must be 'iqr' or 'std', got {error!r}")
    colors = dict(colors) if colors is not None else model_colors(results)
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for model in sorted(results):
        r = results[model]
        median = np.asarray(r["median"], dtype=float)
        yerr: list[np.ndarray] | np.ndarray
        if error == "iqr":
            yerr = [median - np.asarray(r["q25"], dtype=float), np.asarray(r["q75"], dtype=float) - median]
        else:
            yerr = np.asarray(r["std"], dtype=float)
        ax.errorbar(
            r["eps"], median, yerr=yerr, color=colors[model], marker="o", markersize=3.5, capsize=3, label=model
        )
    ax.set_title("Embedding sensitivity " + r"$\|E(x)-E(x')\|_2\,/\,\|E(x)\|_2$")
    ax.set_xlabel("ε (perturbation budget)")
    ax.set_ylabel("median normalised sensitivity")
    ax.grid(alpha=0.3)
    ax.legend(title="model (bars: " + ("25th-75th pct." if error == "iqr" else "± std") + ")")
    fig.tight_layout()
    return _save(fig, path)


def _as_array(matrix) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)


def plot_class_gradient_matrix(results: Mapping[str, Mapping], path) -> str:
    """One heatmap per model of log10 mean ||∂softmax_j/∂x||, shared colour scale (Figure 3).

    ``results = {model_name: class_gradient_matrix(...)}``; rows are true classes, columns output
    classes.  Exactly-zero means (a saturated softmax: no gradient at all, not a "small" one) are
    drawn red and marked 0, never blended into the colour scale; classes absent from the data stay blank.
    """
    _need(results, "plot_class_gradient_matrix")
    models = sorted(results)
    mats = {m: _as_array(results[m]["log10_mean_grad_norm"]) for m in models}
    finite = np.concatenate([a[np.isfinite(a)] for a in mats.values()])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    rows, cols = _grid(len(models), max_cols=4)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols + 0.8, 3.4 * rows), squeeze=False)
    for ax, model in zip(axes.flat, models):
        a = mats[model]
        im = ax.imshow(np.ma.masked_invalid(a), vmin=vmin, vmax=vmax, cmap="viridis", interpolation="nearest")
        zeros = _as_array(results[model].get("mean_grad_norm") or [[None]]) == 0
        if zeros.shape == a.shape and zeros.any():
            ax.imshow(
                np.ma.masked_where(~zeros, np.ones_like(a)),
                cmap=ListedColormap(["firebrick"]),
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            for i, j in zip(*np.nonzero(zeros)):
                ax.text(j, i, "0", ha="center", va="center", fontsize=6, color="black")
        ax.set_title(model + (f" ({int(zeros.sum())} exact zeros, red)" if zeros.any() else ""), fontsize=9)
        ax.set_xlabel("output class j")
        ax.set_ylabel("true class i")
        k = a.shape[0]
        if k <= 20:
            ax.set_xticks(range(k))
            ax.set_yticks(range(k))
            ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(models) :]:
        ax.set_visible(False)
    fig.suptitle(r"$\log_{10}$ mean $\|\partial\,\mathrm{softmax}_j / \partial x\|_2$ over samples of class $i$")
    fig.tight_layout()
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.85, label=r"$\log_{10}$ gradient norm")
    return _save(fig, path)


def _class_colors(num_classes: int) -> np.ndarray:
    if num_classes <= 10:
        return np.asarray(_palette("tab10"))
    if num_classes <= 20:
        return np.asarray(_palette("tab20"))
    return plt.get_cmap("turbo")(np.linspace(0, 1, num_classes))


def plot_tsne(results: Mapping[str, Mapping], path) -> str:
    """t-SNE maps: rows are models, columns ε (clean first), points coloured by class (Figures A6-A8).

    ``results = {model_name: tsne_embeddings(...)}``; clean points are dots, perturbed points crosses.
    Columns are every ε found in ``results`` (sorted); a model lacking one has that cell marked.
    """
    _need(results, "plot_tsne")
    models = sorted(results)
    eps_cols = sorted({float(mp["eps"]) for m in models for mp in results[m]["maps"]})
    num_classes = 1 + max(max(mp["labels"], default=0) for m in models for mp in results[m]["maps"])
    palette = _class_colors(num_classes)
    fig, axes = plt.subplots(
        len(models), len(eps_cols), figsize=(3.0 * len(eps_cols), 3.0 * len(models)), squeeze=False
    )
    for r, model in enumerate(models):
        by_eps = {float(mp["eps"]): mp for mp in results[model]["maps"]}
        for c, eps in enumerate(eps_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("clean" if eps == 0 else f"clean + perturbed, ε={eps:g}", fontsize=9)
            if c == 0:
                ax.set_ylabel(model)
            mp = by_eps.get(eps)
            if mp is None:
                ax.text(0.5, 0.5, "not computed", ha="center", va="center", transform=ax.transAxes)
                continue
            xy = np.asarray(mp["coords"], dtype=float)
            lab = np.asarray(mp["labels"], dtype=int)
            adv = np.asarray(mp["perturbed"], dtype=bool)
            colour = palette[lab % len(palette)]
            ax.scatter(xy[~adv, 0], xy[~adv, 1], c=colour[~adv], s=6, marker="o", linewidths=0)
            ax.scatter(xy[adv, 0], xy[adv, 1], c=colour[adv], s=10, marker="x", linewidths=0.7)
    handles = [
        Line2D([], [], color="grey", marker="o", linestyle="", label="clean"),
        Line2D([], [], color="grey", marker="x", linestyle="", label="perturbed"),
    ]
    if num_classes <= 10:
        handles += [
            Line2D([], [], color=palette[k], marker="o", linestyle="", label=f"class {k}") for k in range(num_classes)
        ]
    fig.suptitle("t-SNE of embeddings (colour: class)")
    fig.tight_layout()
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return _save(fig, path)
