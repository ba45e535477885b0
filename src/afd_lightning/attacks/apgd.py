"""APGD-CE (Croce & Hein 2020, arXiv:2003.01690) from the ``pyautoattack`` package, shaped like an advertorch attack.

The authors' public AFD code trains against AutoAttack's APGD-CE (``--attack_name aa_apgdce``,
utils.py ``get_attack``), not the paper's PGD. :class:`APGDCE` wraps ``pyautoattack``'s
``APGDAttack`` with advertorch's ``(predict, loss_fn=None, eps=..., nb_iter=...)`` constructor and
``perturb(x, y)`` method, so :class:`~afd_lightning.attacks.AttackFactory` builds and runs it under the
same rules as every other attack (eval mode, frozen parameters, float32; see factory.py).

``failed_samples`` says what a sample the attack does not fool comes back as:

* ``"clean"``: the clean input, as the authors' code does (AutoAttack's ``run_standard_evaluation``
  keeps the clean image for every sample that is already misclassified or that no restart fooled);
* ``"perturbed"``: the highest-loss point the search found (APGD's ``best_loss`` mode), for every
  sample, as PGD returns its last iterate.

APGD seeds the global torch generator at every call (``torch.random.manual_seed(self.seed)``). Here
it runs inside ``torch.random.fork_rng`` with a seed drawn from the run's own generator, so each
batch gets a different random start, the run stays reproducible from its seed, and the data order
and every other random draw of the run are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from afd_lightning.errors import ConfigError

FAILED_SAMPLES = ("clean", "perturbed")


class APGDCE:
    """APGD with the cross-entropy loss, L-inf budget ``eps``, ``nb_iter`` iterations, ``n_restarts`` restarts.

    Args:
        predict: the model (logits).
        loss_fn: must be None: APGD-CE optimises the cross-entropy (a custom loss, e.g. TRADES' KL, needs PGD).
        eps: L-inf budget, images in [0, 1].
        nb_iter: iterations per restart (the official code: 40 on MNIST, 20 on CIFAR).
        n_restarts: random restarts (AutoAttack's "standard" version, used by the official code: 1).
        failed_samples: ``"clean"`` (official code) or ``"perturbed"``; see the module docstring.
        rho: APGD's step-size decrease threshold (0.75, AutoAttack's value).
        clip_min, clip_max: must be 0 and 1 (APGD clips to [0, 1]).
    """

    def __init__(
        self,
        predict: Callable,
        loss_fn: Callable | None = None,
        eps: float = 8 / 255,
        nb_iter: int = 20,
        n_restarts: int = 1,
        failed_samples: str = "perturbed",
        rho: float = 0.75,
        clip_min: float = 0.0,
        clip_max: float = 1.0,
    ):
        if loss_fn is not None:
            raise ConfigError(
                "attack apgd_ce optimises the cross-entropy only and cannot take a custom loss "
                "(TRADES' KL attack, for one); use attack=pgd_linf for that method"
            )
        self.check_options(
            n_restarts=n_restarts, failed_samples=failed_samples, rho=rho, clip_min=clip_min, clip_max=clip_max
        )
        from pyautoattack.autopgd_base import APGDAttack

        self.predict = predict
        self.eps, self.nb_iter, self.n_restarts = float(eps), int(nb_iter), int(n_restarts)
        self.failed_samples = failed_samples
        self.clip_min, self.clip_max = 0.0, 1.0
        self.apgd = APGDAttack(
            predict,
            n_iter=self.nb_iter,
            norm="Linf",
            n_restarts=self.n_restarts,
            eps=self.eps,
            loss="ce",
            eot_iter=1,
            rho=float(rho),
            verbose=False,
        )

    @staticmethod
    def check_options(
        n_restarts: int = 1,
        failed_samples: str = "perturbed",
        rho: float = 0.75,
        clip_min: float = 0.0,
        clip_max: float = 1.0,
        **_,
    ) -> None:
        """Raise ConfigError for settings APGD-CE cannot run with (AttackFactory calls this up front)."""
        if failed_samples not in FAILED_SAMPLES:
            raise ConfigError(f"attack apgd_ce: failed_samples={failed_samples!r} is not one of {list(FAILED_SAMPLES)}")
        if (float(clip_min), float(clip_max)) != (0.0, 1.0):
            raise ConfigError(
                f"attack apgd_ce works on images in [0, 1] only, got clip_min={clip_min}, clip_max={clip_max}"
            )
        if int(n_restarts) < 1:
            raise ConfigError(f"attack apgd_ce: n_restarts must be >= 1, got {n_restarts}")
        if not 0 < float(rho) < 1:
            raise ConfigError(f"attack apgd_ce: rho must be in (0, 1), got {rho}")

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y is None or y.dtype != torch.long:
            raise ConfigError("attack apgd_ce needs integer class labels y")
        seed = int(torch.randint(0, 2**31 - 1, (), device="cpu"))
        devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()] if x.is_cuda else []
        with torch.random.fork_rng(devices=devices):
            self.apgd.seed = seed
            self.apgd.device = x.device
            if self.failed_samples == "perturbed":
                torch.manual_seed(seed)  # best_loss mode does not seed itself
            x_adv = self.apgd.perturb(x, y, best_loss=self.failed_samples == "perturbed")
        # APGD's float arithmetic can land a hair outside the ball; project exactly.
        x_adv = torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp(0.0, 1.0)
        return x_adv.detach()

    def __repr__(self) -> str:
        return f"APGDCE(eps={self.eps:.6g}, nb_iter={self.nb_iter}, n_restarts={self.n_restarts}, failed_samples={self.failed_samples})"
