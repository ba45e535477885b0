"""Attacks built from configs over advertorch (shimmed for current torch in afd_lightning.compat)."""
from afd_lightning.attacks.factory import AttackFactory, attack_mode, frozen

__all__ = ["AttackFactory", "attack_mode", "frozen"]
