"""The adversarial-decoder (Da) and encoder losses AFD can use.

``d_clean = Da(E(x), y)`` and ``d_adv = Da(E(x'), y)`` are raw logits ("clean" is the positive class).

* ``softplus`` (the paper, Eq. 5 and Algorithm 1, default):
  ``L_Da = mean S(-d_clean) + mean S(d_adv)``,  ``L_E = mean S(-d_adv)``.
* ``hinge`` (the hinge GAN loss of the projection-discriminator paper):
  ``L_Da = mean relu(1 - d_clean) + mean relu(1 + d_adv)``,  ``L_E = -mean d_adv``.
* ``wgan`` (the default of the authors' public code, not of the paper):
  ``L_Da = -mean d_clean + mean d_adv``,  ``L_E = -mean d_adv``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from afd_lightning.errors import ConfigError


def _softplus(d_clean, d_adv):
    return F.softplus(-d_clean).mean() + F.softplus(d_adv).mean()


def _softplus_enc(d_adv):
    return F.softplus(-d_adv).mean()


def _hinge(d_clean, d_adv):
    return F.relu(1.0 - d_clean).mean() + F.relu(1.0 + d_adv).mean()


def _wgan(d_clean, d_adv):
    return d_adv.mean() - d_clean.mean()


def _neg_mean(d_adv):
    return -d_adv.mean()


GAN_LOSSES = {
    "softplus": (_softplus, _softplus_enc),
    "hinge": (_hinge, _neg_mean),
    "wgan": (_wgan, _neg_mean),
}


def get_gan_loss(name: str):
    """``(disc_loss(d_clean, d_adv), enc_loss(d_adv))`` for ``name``; a clear error for unknown names."""
    try:
        return GAN_LOSSES[name]
    except KeyError:
        raise ConfigError(f"method.gan_loss={name!r} is not one of {sorted(GAN_LOSSES)}") from None


def disc_accuracy(d_clean: torch.Tensor, d_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fraction of clean embeddings Da calls clean (d > 0) and of perturbed ones it calls perturbed (d < 0)."""
    return (d_clean > 0).float().mean(), (d_adv < 0).float().mean()
