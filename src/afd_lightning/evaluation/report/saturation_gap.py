"""Does saturation explain the PGD − AutoAttack gap?  One point per evaluated run, one colour per recipe.

Written by ``afd-summarize`` (``gap_vs_saturation.png``) from the per-run fields of ``results.json``
(:class:`~afd_lightning.evaluation.report.schema.ModelRecord`: ``p_one_fraction``, ``grad_below_fraction``,
``pgd_aa_gap``).  Left: the share of evaluated samples with p(y) = 1.0 in float32; right: the share with
an input gradient below 1e-8; up: how many points PGD-L∞ overstates the robust accuracy AutoAttack leaves.
If cross-entropy PGD fails where the softmax saturates, the points rise to the right.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from afd_lightning.files.escape import one_line
from afd_lightning.files.writer import save_figure

PANELS = (("p_one", "samples with p(y) = 1.0 in float32 (%)"), ("grad_below", "samples with ‖∇ₓ CE‖₂ < 1e-8 (%)"))


def points(runs: Sequence) -> dict[str, list[tuple[float, float, float]]]:
    """``{recipe: [(p_one %, grad_below %, gap points), ...]}`` over the runs that have all three values."""
    out: dict[str, list[tuple[float, float, float]]] = {}
    for run in runs:
        v = run.values
        if all(k in v for k in ("p_one", "grad_below", "pgd_aa_gap")):
            out.setdefault(run.recipe, []).append((v["p_one"], v["grad_below"], v["pgd_aa_gap"]))
    return out


def plot_gap_vs_saturation(runs: Sequence, path: str | Path) -> str | None:
    """Scatter the PGD − AA gap of each run against its saturation; None (nothing written) without such runs."""
    data = points(runs)
    if not data:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colors = plt.get_cmap("tab20" if len(data) > 10 else "tab10")
    try:
        for k, (recipe, pts) in enumerate(sorted(data.items())):
            for ax, (column, label) in zip(axes, PANELS):
                i = 0 if column == "p_one" else 1
                ax.scatter(
                    [p[i] for p in pts],
                    [p[2] for p in pts],
                    color=colors(k % colors.N),
                    label=one_line(recipe, 60),
                    s=28,
                )
                ax.set_xlabel(label)
        axes[0].set_ylabel("PGD-L∞ − AutoAttack accuracy (points)")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.axhline(0, color="grey", lw=0.8)
        n = sum(len(p) for p in data.values())
        fig.suptitle(f"PGD − AA gap against softmax saturation, {n} runs (one point per run)")
        fig.legend(*axes[0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
        fig.tight_layout()
        save_figure(fig, path, dpi=120, bbox_inches="tight")  # no-follow: a link in its place is refused
    finally:
        plt.close(fig)
    return str(path)
