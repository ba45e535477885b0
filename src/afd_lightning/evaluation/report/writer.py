"""Writing an evaluation's output directory so that nothing half-written looks finished.

While the evaluation runs, ``results.partial.json`` is rewritten after every attack.  At the end
``results.json``, ``tables.md``, ``curves.md`` and the PNGs are written (each to a temporary
name, then renamed), and ``COMPLETE`` is written last.  A directory without ``COMPLETE`` is an
unfinished (or failed) evaluation; a failure also leaves ``FAILED`` with the error message.
Outputs of an earlier evaluation in the same directory are moved to ``stale/`` at the start, so a
complete ``results.json`` never sits beside a new, interrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from afd_lightning.evaluation.report import tables
from afd_lightning.evaluation.report.schema import EvaluationResults
from afd_lightning.files.writer import refuse_symlink, refuse_symlinked_folders, write_text_atomic

log = logging.getLogger(__name__)

COMPLETE, FAILED, PARTIAL = "COMPLETE", "FAILED", "results.partial.json"
OUTPUTS = ("results.json", PARTIAL, "tables.md", "curves.md", "autoattack.log", "*.png")


def _clean(obj):
    """Strict JSON: NaN and infinities become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_text(path: Path, text: str) -> None:
    write_text_atomic(path, text)  # a fresh temporary file renamed over path; a symlink at path is refused


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(_clean(data), indent=2, allow_nan=False) + "\n")


def start(out_dir: Path) -> None:
    """Mark the directory unfinished: an old COMPLETE (or FAILED) goes first, earlier outputs move to stale/.

    The output folder, and the ``eval/`` folder above it in the default layout (``<run>/eval/<name>/``), must
    not be symbolic links: every file written there would land elsewhere. Refused before anything is written.
    """
    refuse_symlinked_folders(out_dir, *([out_dir.parent] if out_dir.parent.name == "eval" else []))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (COMPLETE, FAILED):
        (out_dir / name).unlink(missing_ok=True)
    old = [p for pattern in OUTPUTS for p in out_dir.glob(pattern)]
    if old:
        stale = refuse_symlink(out_dir / "stale")  # a planted link: a clear error, nothing moved through it
        shutil.rmtree(stale, ignore_errors=True)
        stale.mkdir()
        for p in old:
            os.replace(p, stale / p.name)
        log.warning("%s held outputs of an earlier evaluation: moved to %s", out_dir, stale)


def fail(out_dir: Path, err: BaseException) -> None:
    try:
        write_text(out_dir / FAILED, f"{type(err).__name__}: {err}\n")
    except OSError:
        pass


def plots(out_dir: Path, results: EvaluationResults) -> dict[str, str]:
    """The PNG figures of :mod:`afd_lightning.evaluation.report.plots`; a figure that fails is logged and skipped."""
    from afd_lightning.evaluation.report import plots as P

    models = results.models
    colors = P.model_colors(models)
    jobs: dict[str, Callable[[Path], object]] = {
        "accuracy_vs_eps.png": lambda p: P.plot_accuracy_vs_eps(results, p, colors=colors)
    }
    for key, fn, png in (
        ("sensitivity", "plot_embedding_sensitivity", "embedding_sensitivity.png"),
        ("gradient_matrix", "plot_class_gradient_matrix", "class_gradient_matrix.png"),
        ("tsne", "plot_tsne", "tsne.png"),
    ):
        data = {m: r.analyses[key] for m, r in models.items() if key in r.analyses and "error" not in r.analyses[key]}
        if data:
            kwargs = {"colors": colors} if key == "sensitivity" else {}

            def analysis_plot(p: Path, fn: str = fn, data: dict = data, kwargs: dict = kwargs) -> object:
                return getattr(P, fn)(data, p, **kwargs)

            jobs[png] = analysis_plot
    written = {}
    for png, job in jobs.items():
        try:
            if job(out_dir / png):
                written[png] = str(out_dir / png)
        except Exception as err:  # a figure must not lose the numbers
            log.warning("plot %s failed: %s: %s", png, type(err).__name__, err)
    return written


def finish(out_dir: Path, results: EvaluationResults, make_plots: bool = True) -> str:
    """Write the final files, then COMPLETE; returns the summary markdown."""
    if make_plots:
        results.plots = plots(out_dir, results)
    text = tables.summary(results)
    write_text(out_dir / "tables.md", text)
    write_text(out_dir / "curves.md", tables.curves_table(results) + "\n")
    write_json(out_dir / "results.json", results.to_json())
    (out_dir / PARTIAL).unlink(missing_ok=True)
    write_text(out_dir / COMPLETE, "results.json, tables.md, curves.md and the figures are complete\n")
    return text
