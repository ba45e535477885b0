"""Evaluation attacks, one family per module over one base (:mod:`.base`), built by Hydra from ``conf/eval/attack/*.yaml``.

* :mod:`.base` -- :class:`EvalAttack` (name, norm, the ε list it is swept over; it owns the ε = 0 shortcut, the
  attack mode and the restarts) and :class:`MinNormAttack`;
* :mod:`.advertorch` -- ε-ball attacks over advertorch (FGSM, PGD-L∞/L2, MIM, SPSA), black-box transfer, DDN, C&W;
* :mod:`.foolbox` -- Foolbox's dense PGD-L1 and the paper-exact ε-ball attacks, DeepFool and Boundary;
* :mod:`.boundary` -- the Boundary attack's search (foolbox's, each sample stopped once decided);
* :mod:`.spsa` -- SPSA (advertorch's algorithm, cheaper: no wasted copies, each sample stopped once fooled);
* :mod:`.autoattack` -- AutoAttack (the ``pyautoattack`` package) swept over ε;
* :mod:`.adaptive` -- PGD with other losses (margin, DLR, embedding, targeted) for adaptive evaluation.
"""

from afd_lightning.evaluation.attacks.adaptive import AdaptivePGD
from afd_lightning.evaluation.attacks.advertorch import AdvertorchMinNorm, NormBallAttack, TransferAttack
from afd_lightning.evaluation.attacks.autoattack import AutoAttackSweep
from afd_lightning.evaluation.attacks.base import EvalAttack, MinNormAttack, perturbation_norm
from afd_lightning.evaluation.attacks.foolbox import FoolboxBoundary, FoolboxMinNorm, FoolboxNormBall
from afd_lightning.evaluation.attacks.spsa import SPSA

__all__ = [
    "AdaptivePGD",
    "AdvertorchMinNorm",
    "AutoAttackSweep",
    "EvalAttack",
    "FoolboxBoundary",
    "FoolboxMinNorm",
    "FoolboxNormBall",
    "MinNormAttack",
    "NormBallAttack",
    "SPSA",
    "TransferAttack",
    "perturbation_norm",
]
