"""What a network must offer to be trained by NT, AT, TRADES, MATCH and AFD and to be evaluated.

Any ``nn.Module`` with these members works; it need not subclass anything of ours
(:class:`~afd_lightning.nets.ImageClassifier` is one way to get them). docs/byon.md shows a network
from the user's own package.

* ``encoder``: an ``nn.Module``, images in [0, 1] (NCHW) -> flat embedding ``(N, embed_dim)``
  (E; AFD's three optimizers, MATCH, the embedding attack and the Table A5 analysis use it);
* ``classifier``: an ``nn.Module``, embedding -> logits ``(N, num_classes)`` (Dc; AFD step 1);
* ``embed_dim``: int, the embedding size (AFD builds its adversarial decoder Da with it);
* ``num_classes``: int (the accuracy metrics);
* ``forward(x)``: the logits, equal to ``classifier(encoder(x))`` (every attack and the evaluation);
* ``forward_with_embedding(x)``: ``(embedding, logits)`` from one encoder pass (MATCH).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from afd_lightning.errors import ConfigError

# Each member, with what it is for: the error message lists every one that is missing or wrong.
MEMBERS = {
    "encoder": "nn.Module: images in [0, 1] -> embedding (N, embed_dim)",
    "classifier": "nn.Module: embedding -> logits (N, num_classes)",
    "embed_dim": "int > 0: size of the embedding",
    "num_classes": "int > 0: number of categories",
    "forward_with_embedding": "method: x -> (embedding, logits) from one encoder pass",
}


@runtime_checkable
class RobustClassifier(Protocol):
    """The interface of every network this package trains and evaluates (see the module docstring)."""

    encoder: nn.Module
    classifier: nn.Module
    embed_dim: int
    num_classes: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def interface_problems(model) -> list[str]:
    """Every member of :class:`RobustClassifier` that ``model`` lacks or has of the wrong kind (empty: fits)."""
    problems = []
    if not isinstance(model, nn.Module):
        problems.append(f"the network itself must be a torch.nn.Module, got {type(model).__name__}")
    for name, what in MEMBERS.items():
        value = getattr(model, name, None)
        if value is None:
            problems.append(f"{name} (missing; {what})")
        elif name in ("encoder", "classifier") and not isinstance(value, nn.Module):
            problems.append(f"{name} is a {type(value).__name__} ({what})")
        elif name in ("embed_dim", "num_classes") and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            problems.append(f"{name} is {value!r} ({what})")
        elif name == "forward_with_embedding" and not callable(value):
            problems.append(f"{name} is not callable ({what})")
    return problems


def check_network(model, target: str | None = None) -> None:
    """Refuse, once at build time, a network that lacks members of :class:`RobustClassifier`, listing them all."""
    problems = interface_problems(model)
    if problems:
        name = target or f"{type(model).__module__}.{type(model).__qualname__}"
        raise ConfigError(
            f"the network {name} does not have what training and evaluation need: "
            + "; ".join(problems)
            + ". Give it these members, or wrap its body in afd_lightning.nets.ImageClassifier(body, embed_dim, "
            "num_classes) (docs/byon.md)."
        )


def check_arguments(cfg: dict, group: str = "model") -> None:
    """Refuse config keys the ``_target_`` does not take, naming them (and the closest real argument).

    A dataset's default model config carries its network's own keys (ResNet5's ``stem_stride``); a
    ``model._target_=...`` override keeps them, so another network would fail deep inside with a
    TypeError. Callables taking ``**kwargs`` accept anything.
    """
    from afd_lightning.config.suggest import did_you_mean, signature_keys

    target = cfg.get("_target_")
    found = signature_keys(target) if isinstance(target, str) else None
    if found is None or found[1]:
        return  # instantiate reports a target it cannot import in its own words; **kwargs takes anything
    taken = found[0]
    unknown = [k for k in cfg if not k.startswith("_") and k not in taken]
    if unknown:
        hints = "; ".join(did_you_mean(f"{group}.{k}", k, taken) for k in unknown)
        raise ConfigError(
            f"{target} takes no argument {', '.join(unknown)} ({hints}). Its arguments: {', '.join(taken)}. "
            f"Keys of another network's config stay when only {group}._target_ is changed: put your network's "
            f"config in a {group}/ file of your own and pick it with {group}=<name> (docs/byon.md)."
        )
