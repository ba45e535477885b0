"""LightningModules, one per training method (config group ``method=``)."""

from afd_lightning.methods.afd import AFD
from afd_lightning.methods.base import RobustMethod
from afd_lightning.methods.baselines import TRADES, AdversarialTraining, EmbeddingMatching, NaturalTraining

__all__ = ["AFD", "TRADES", "AdversarialTraining", "EmbeddingMatching", "NaturalTraining", "RobustMethod"]
