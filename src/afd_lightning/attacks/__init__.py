"""Attacks built from configs over advertorch (shimmed for current torch in afd_lightning.process.compat) and AutoAttack's APGD."""

from afd_lightning.attacks.apgd import APGDCE
from afd_lightning.attacks.factory import AttackFactory, attack_mode, frozen

__all__ = ["APGDCE", "AttackFactory", "attack_mode", "frozen"]
