"""AutoAttack (Croce & Hein 2020, arXiv:2003.01690) through the authors' package ``pyautoattack``.

Its attacks run one after another on the samples still standing (as ``run_standard_evaluation``
does), so that the accuracy after each of them -- APGD-CE, APGD-T, FAB-T, Square for the standard
version -- is recorded per sample (``last_stages``, the breakdown in tables.md and results.json).
AutoAttack's own log (its checks for randomness, gradient masking and the like, and its progress)
goes to ``<output_dir>/autoattack.log`` rather than being silenced.

Each sample's attack reads only that sample (APGD's step size, FAB's and Square's searches are per sample), so a
curve can run over image shards in several processes (``independent_samples``; evaluation/parallel.py): the
random draws depend on the shard's samples and seed, which do not depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from afd_lightning.errors import ConfigError
from afd_lightning.evaluation.attacks.base import EvalAttack
from afd_lightning.files.writer import NoFollowFileHandler

LOGGER = "auto-attack"  # pyautoattack's logger name
log = logging.getLogger(__name__)
VERSIONS = ("standard", "plus", "rand", "custom")
ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")


@contextlib.contextmanager
def log_to(path: Path | None, header: str):
    """AutoAttack's DEBUG log appended to ``path`` for the block (nothing when ``path`` is None)."""
    logger = logging.getLogger(LOGGER)
    if path is None:
        old = logger.level
        logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            logger.setLevel(old)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = NoFollowFileHandler(path, mode="a")  # a symlink planted at path is refused, not appended through
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    old, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # the console keeps our progress bar; the file gets everything
    try:
        logger.debug("=== %s", header)
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(old)
        logger.propagate = propagate


class AutoAttackSweep(EvalAttack):
    """AutoAttack at each ε of ``eps`` (usually just the Table 1 ε).

    Args:
        version: ``standard`` (default: APGD-CE, APGD-T, FAB-T, Square), ``plus``, ``rand``, or
            ``custom`` with ``attacks`` (e.g. ``[apgd-ce]`` for the quick suite).
        attacks: the attacks of a ``custom`` version, in order.
        n_iter, n_restarts: override APGD's iterations / restarts (None: the version's own).
        n_queries: override Square's query budget (None: the version's own, 5000).
        **options: :class:`EvalAttack`'s options (``gradient_free`` for ``attacks=[square]``, ``label``...;
            ``auc_table`` off by default); no ``restarts``: use ``n_restarts``.
        seed: AutoAttack's seed.
        log_dir: where ``autoattack.log`` goes (eval.py sets its output directory); None: not logged.
    """

    kind = "norm_ball"
    independent_samples = True  # shardable over processes (evaluation/parallel.py)

    def __init__(
        self,
        name: str,
        norm: str,
        eps: Sequence[float],
        version: str = "standard",
        attacks: Sequence[str] | None = None,
        n_iter: int | None = None,
        n_restarts: int | None = None,
        n_queries: int | None = None,
        seed: int = 0,
        log_dir: str | None = None,
        **options,
    ):
        if options.get("restarts", 1) != 1:
            raise ConfigError(f"attack {name}: AutoAttack takes n_restarts (APGD's own restarts), not restarts")
        options.setdefault("auc_table", False)
        super().__init__(name, norm, eps, **{**options, "iterative": True})
        if version not in VERSIONS:
            raise ConfigError(f"attack {name}: version must be one of {', '.join(VERSIONS)}, got {version!r}")
        if (version == "custom") != bool(attacks):
            raise ConfigError(
                f"attack {name}: give attacks=[...] (from {', '.join(ATTACKS)}) exactly when "
                f"version=custom (got version={version!r}, attacks={attacks!r})"
            )
        bad = [a for a in attacks or [] if a not in ATTACKS]
        if bad:
            raise ConfigError(f"attack {name}: unknown AutoAttack attacks {bad}; choose from {', '.join(ATTACKS)}")
        self.version, self.seed = version, int(seed)
        self.attacks = list(attacks) if attacks else None
        self.n_iter, self.n_restarts, self.n_queries = n_iter, n_restarts, n_queries
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.log_context = ""
        self.stage_names = self._build(torch.nn.Identity(), 0.1).attacks_to_run
        self.last_stages: dict[str, torch.Tensor] = {}

    def describe(self) -> dict:
        return {
            **super().describe(),
            "library": "pyautoattack",
            "version": self.version,
            "stages": list(self.stage_names),
            "n_iter": self.n_iter,
            "n_restarts": self.n_restarts,
            "n_queries": self.n_queries,
        }

    def _build(self, model, eps, device="cpu"):
        from pyautoattack import AutoAttack

        norm = {"linf": "Linf", "l2": "L2", "l1": "L1"}[self.norm]
        aa = AutoAttack(
            model, eps=eps, norm=norm, version=self.version, attacks=self.attacks, seed=self.seed, device=device
        )
        if self.n_iter is not None:
            aa.apgd.n_iter = aa.apgd_targeted.n_iter = aa.fab.n_iter = int(self.n_iter)
        if self.n_restarts is not None:
            aa.apgd.n_restarts = int(self.n_restarts)
        if self.n_queries is not None:
            aa.square.n_queries = int(self.n_queries)
        return aa

    def attack_once(self, model, x, y, eps):
        """AutoAttack's adversarial examples; ``last_stages[a]``: robust after attack ``a`` and all before it."""
        x_adv = x.detach().float().clone()
        alive = torch.ones(len(x), dtype=torch.bool, device=x.device)
        self.last_stages = {}
        log_path = None if self.log_dir is None else self.log_dir / "autoattack.log"
        with log_to(log_path, f"{self.log_context} {self.name} eps={eps:g} n={len(x)}"):
            aa = self._build(model, eps, x.device)
            with torch.no_grad():
                alive &= model(x_adv).argmax(1) == y
            aa_log = logging.getLogger(LOGGER)  # our own lines in AutoAttack's log say which samples they count
            aa_log.debug(
                "afd-lightning: AutoAttack's own 'robust accuracy' lines below count only the samples each stage "
                "attacks (those no earlier stage broke); afd-lightning's lines count all %d samples given here, "
                "%d of them correctly classified before attacking. Table 1's AA column divides by all evaluated "
                "test samples (n_samples).",
                len(x),
                int(alive.sum()),
            )
            for stage in self.stage_names:
                idx = alive.nonzero().flatten()
                if len(idx):
                    log.info("%s %s eps=%g: %s on %d samples", self.log_context, self.name, eps, stage, len(idx))
                    aa.attacks_to_run = [stage]  # one at a time, on the survivors, to record each one's effect
                    adv, _ = aa.run_standard_evaluation(x[idx].float(), y[idx], batch_size=len(idx))
                    with torch.no_grad():
                        broken = model(adv).argmax(1) != y[idx]
                    x_adv[idx[broken]] = adv[broken].detach()
                    alive[idx[broken]] = False
                self.last_stages[stage] = alive.clone()
                aa_log.debug(
                    "afd-lightning: after %s: %d of %d samples robust (%.2f%% of the samples given here)",
                    stage,
                    int(alive.sum()),
                    len(x),
                    100.0 * float(alive.float().mean()) if len(x) else 0.0,
                )
        return x_adv.detach()
