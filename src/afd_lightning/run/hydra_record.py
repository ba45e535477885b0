"""The run's ``.hydra/`` record (``config.yaml``, ``hydra.yaml``, ``overrides.yaml``), written by us, not by Hydra.

Hydra writes these three files into the output directory before the task runs, so a start that the
run-directory checks then refuse (another method resuming into a run, a run already there) used to
replace the old run's record with the refused command's: ``afd-summarize`` then labelled the old run
with the wrong method. ``conf/train/hydra/default.yaml`` turns Hydra's own writing off
(``hydra.output_subdir: null``) and :class:`afd_lightning.run.rundir.RunDirectory` calls :func:`write` once
its checks have passed; ``eval.py`` does the same (``conf/eval/eval.yaml``) once its output folder passed
the writer's checks (no linked ``eval/`` or output folder). The files hold what Hydra would have written (unresolved, as Hydra saves them),
each written whole through a temporary file, never through a symlink.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from afd_lightning.files.writer import refuse_symlink, write_text_atomic

SUBDIR = ".hydra"


def write(run_dir: Path, cfg: DictConfig) -> Path | None:
    """Write ``<run_dir>/.hydra/{config,hydra,overrides}.yaml`` for this Hydra job; None outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None  # called as a library (train.run(cfg) from Python): there is no Hydra record to keep
    hydra_cfg = HydraConfig.get()
    folder = refuse_symlink(Path(run_dir) / SUBDIR)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "config.yaml": cfg,
        "hydra.yaml": OmegaConf.create({"hydra": hydra_cfg}),
        "overrides.yaml": hydra_cfg.overrides.task,
    }
    for name, node in files.items():
        write_text_atomic(folder / name, OmegaConf.to_yaml(node, resolve=False))
    return folder
