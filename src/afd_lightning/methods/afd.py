"""Adversarial Feature Desensitization (AFD) as a LightningModule with manual optimisation."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from afd_lightning.attacks.factory import frozen
from afd_lightning.errors import ConfigError
from afd_lightning.methods.base import OptimizerFactory, RobustMethod, SchedulerFactory, kl_clean_to_adv, paper_sgd
from afd_lightning.methods.gan_losses import disc_accuracy, get_gan_loss
from afd_lightning.nets.discriminator import AdversarialDecoder

CLS_LOSSES = ("clean", "adv", "trades")


class AFD(RobustMethod):
    """AFD: Bashivan, Richards & Rish, "Adversarial Feature Desensitization", NeurIPS 2021, arXiv:2006.04621.

    Networks: encoder E_theta (``model.encoder``), linear category decoder Dc_phi
    (``model.classifier``), adversarial decoder Da_psi (``discriminator``, built here for E's
    embedding size).  Each batch follows Algorithm 1 in order, each update seeing the
    parameters left by the previous one:

    0. ``x' = attack(x)`` with the parameters at the start of the batch (PGD-L-inf by default);
    1. theta, phi <- minimise ``L_EDc = CE(Dc(E(x)), y)``                     (``optimizer_cls``);
    2. psi <- minimise ``L_Da = mean S(-Da(E(x), y)) + mean S(Da(E(x'), y))``  (``optimizer_disc``);
    3. theta <- minimise ``L_E = mean S(-Da(E(x'), y))``                      (``optimizer_enc``);

    S is softplus (``gan_loss="softplus"``; ``hinge`` and ``wgan`` are options, see gan_losses).
    ``cls_loss`` picks step 1's loss: ``clean`` (the paper), ``adv`` (CE on x', i.e. AFD + AT) or
    ``trades`` (CE(x) + trades_beta * KL(f(x) || f(x')), i.e. AFD + TRADES), the combinations the
    paper's discussion proposes.

    Work per batch: the attack; one E forward+backward (step 1); E(x), E(x') forward only with no
    graph (step 2); one E forward+backward with Da's parameters frozen (step 3).  ``train/acc_adv``
    is read from step 3's embedding of x' (theta after step 1) through Dc, with no extra E pass.

    Hyperparameters (the paper's recipe, conf/train/method/afd.yaml): SGD, lr_EDc 0.1, lr_Da 0.1,
    lr_E 0.5, weight decay 1e-4 (Table A2), momentum 0.9 (MNIST) / 0.8 (CIFAR) (Appendix 8.1); learning
    rates divided by 10 at the scheduler's milestones.  Each optimizer factory carries its own learning
    rate and weight decay: the authors' code puts weight decay on ``optimizer_cls`` only
    (``experiment=official_*_afd``).  ``trainer.global_step`` advances three times per batch (one per
    optimizer).

    Built from Python, ``AFD(model, attack={"eps": 0.3, "steps": 40})`` needs nothing else; the defaults are the
    paper's MNIST recipe:

    * ``optimizer_cls`` / ``optimizer_disc`` / ``optimizer_enc``: SGD with lr 0.1 / 0.1 / 0.5, momentum 0.9 and
      weight decay 1e-4 on all three (:func:`~afd_lightning.methods.base.paper_sgd`; for CIFAR's momentum 0.8 pass
      ``paper_sgd(lr, momentum=0.8)`` for each);
    * ``discriminator="paper"``: Da of Sec. 3.2, three spectrally normalised fully connected layers with
      LeakyReLU(0.2) and a projection on the label, as many hidden units as E's embedding (the paper's 200 for
      MNIST's ResNet5 and 512 for CIFAR's ResNet18 are those networks' embedding sizes);
    * ``scheduler=None``: constant learning rates (the paper's MNIST recipe; CIFAR divides them by 10 after
      epochs 350 and 700: pass ``functools.partial(torch.optim.lr_scheduler.MultiStepLR, milestones=[350, 700])``);
    * ``attack``: an :class:`~afd_lightning.attacks.AttackFactory`, a mapping of its settings (PGD-L∞ unless it
      names another class) or a function ``(model, x, y) -> x_adv``
      (:func:`~afd_lightning.methods.base.as_attack`).
    """

    short_name = "AFD"

    def __init__(
        self,
        model,
        attack=None,
        eval_attack=None,
        discriminator: Callable[..., nn.Module] | nn.Module | str | None = "paper",
        optimizer_cls: OptimizerFactory | None = None,
        optimizer_disc: OptimizerFactory | None = None,
        optimizer_enc: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        gan_loss: str = "softplus",
        cls_loss: str = "clean",
        trades_beta: float = 6.0,
        gradient_clip_val: float | None = None,
    ):
        # Table A2's learning rates (LR_EDc 0.1, LR_Da 0.1, LR_E 0.5) where no factory is given
        optimizer_cls = paper_sgd(0.1) if optimizer_cls is None else optimizer_cls
        optimizer_disc = paper_sgd(0.1) if optimizer_disc is None else optimizer_disc
        optimizer_enc = paper_sgd(0.5) if optimizer_enc is None else optimizer_enc
        super().__init__(model, attack, eval_attack, optimizer=optimizer_cls, scheduler=scheduler)
        self.automatic_optimization = False
        if discriminator is None:
            raise ConfigError("afd: a discriminator (adversarial decoder Da) must be configured")
        if isinstance(discriminator, str):
            if discriminator != "paper":
                raise ConfigError(f"afd: discriminator={discriminator!r}: 'paper' (Sec. 3.2), a module or a factory")
            discriminator = functools.partial(
                AdversarialDecoder, num_classes=model.num_classes, hidden_dim=model.embed_dim
            )
        if cls_loss not in CLS_LOSSES:
            raise ConfigError(f"method.cls_loss={cls_loss!r} is not one of {list(CLS_LOSSES)}")
        if gradient_clip_val is not None and not gradient_clip_val > 0:
            raise ConfigError(f"method.gradient_clip_val must be > 0 or null, got {gradient_clip_val}")
        # A ready nn.Module is used as is (modules are callable too, so test for them first);
        # anything else is a factory (the config's partial) taking the encoder's embedding size.
        self.discriminator = (
            discriminator if isinstance(discriminator, nn.Module) else discriminator(embed_dim=model.embed_dim)
        )
        self.disc_loss_fn, self.enc_loss_fn = get_gan_loss(gan_loss)
        self.gan_loss, self.cls_loss, self.trades_beta = gan_loss, cls_loss, float(trades_beta)
        self.gradient_clip_val = gradient_clip_val
        self.optimizer_factories = (optimizer_cls, optimizer_disc, optimizer_enc)

    def configure_optimizers(self):
        encoder, classifier = self.model.encoder, self.model.classifier
        groups = (
            itertools.chain(encoder.parameters(), classifier.parameters()),  # theta, phi
            self.discriminator.parameters(),  # psi
            encoder.parameters(),  # theta
        )
        optimizers = [self.make_optimizer(f, p) for f, p in zip(self.optimizer_factories, groups)]
        if self.scheduler_factory is None:
            return optimizers
        return optimizers, [self.scheduler_factory(o) for o in optimizers]

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.gradient_clip_val is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm")

    def _update(self, optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()

    def classification_loss(self, x, x_adv, y):
        """Step 1's loss and the clean logits it saw (None when it saw none)."""
        if self.cls_loss == "adv":
            return F.cross_entropy(self.model(x_adv), y), None
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        if self.cls_loss == "trades":
            loss = loss + self.trades_beta * kl_clean_to_adv(self.model(x_adv), F.softmax(logits, dim=1))
        return loss, logits

    def algorithm1(self, x: torch.Tensor, y: torch.Tensor, update: Callable[[int, torch.Tensor], None]) -> dict:
        """One batch of Algorithm 1: the three updates, in order, each through ``update(index, loss)``.

        ``index`` is the optimizer's place in :meth:`configure_optimizers` (0: E + Dc, 1: Da, 2: E).
        :meth:`training_step` passes Lightning's manual backward and optimizer step; a plain PyTorch loop
        (benchmarks/bench_train_step.py) passes ``loss.backward()`` and ``opt.step()``, so both run this one
        copy of the math. Returns what the step logs.
        """
        encoder, disc = self.model.encoder, self.discriminator

        x_adv = self.make_adversarial(x, y)

        # 1. theta, phi <- CE on clean inputs
        loss_cls, logits = self.classification_loss(x, x_adv, y)
        self.check_finite("loss_cls", loss_cls)
        update(0, loss_cls)

        # 2. psi <- tell clean from perturbed embeddings (no graph through E)
        with torch.no_grad():
            z_clean, z_adv = encoder(x), encoder(x_adv)
        d_clean, d_adv = disc(z_clean, y), disc(z_adv, y)
        loss_disc = self.disc_loss_fn(d_clean, d_adv)
        self.check_finite("loss_disc", loss_disc)
        update(1, loss_disc)

        # 3. theta <- fool Da on perturbed inputs (Da's parameter gradients not computed)
        z_adv = encoder(x_adv)
        with frozen(disc):
            loss_enc = self.enc_loss_fn(disc(z_adv, y))
        self.check_finite("loss_enc", loss_enc)
        update(2, loss_enc)
        return {
            "loss_cls": loss_cls,
            "loss_disc": loss_disc,
            "loss_enc": loss_enc,
            "logits": logits,
            "z_clean": z_clean,
            "z_adv": z_adv,
            "d_clean": d_clean,
            "d_adv": d_adv,
        }

    def training_step(self, batch, batch_idx):
        optimizers = self.optimizers()
        x, y = batch
        out = self.algorithm1(x, y, lambda i, loss: self._update(optimizers[i], loss))
        classifier = self.model.classifier
        d_clean, d_adv, logits = out["d_clean"], out["d_adv"], out["logits"]
        with torch.no_grad():
            logits_adv = classifier(out["z_adv"].detach())
            if logits is None:
                logits = classifier(out["z_clean"])
        acc_clean_d, acc_adv_d = disc_accuracy(d_clean.detach(), d_adv.detach())
        self.log_accuracy("train", "acc_clean", logits, y)
        self.log_accuracy("train", "acc_adv", logits_adv, y)
        self.log_scalars(
            "train",
            {
                "loss_cls": out["loss_cls"],
                "loss_disc": out["loss_disc"],
                "loss_enc": out["loss_enc"],
                "disc_out_clean": d_clean.mean(),
                "disc_out_adv": d_adv.mean(),
                "disc_acc_clean": acc_clean_d,
                "disc_acc_adv": acc_adv_d,
            },
            y.shape[0],
        )

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                raise ConfigError(
                    "method.scheduler: AFD steps its schedulers once an epoch without a metric, so ReduceLROnPlateau "
                    "(which needs one) cannot drive it; use an epoch schedule such as MultiStepLR"
                )
            scheduler.step()
