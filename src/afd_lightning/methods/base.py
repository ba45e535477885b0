"""What every training method shares: the networks, attacks, accuracy metrics and their logging."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, cast

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import WandbLogger
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from afd_lightning.attacks import AttackFactory, attack_mode
from afd_lightning.callbacks.finite import check_finite_model, checkpoint_note
from afd_lightning.errors import ConfigError, NonFiniteLossError
from afd_lightning.methods.epoch_means import EpochMeans
from afd_lightning.nets.base import ImageClassifier

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]

PGD_LINF = "advertorch.attacks.LinfPGDAttack"  # the paper's training attack (Sec. 3.2)


def paper_sgd(lr: float, momentum: float = 0.9, weight_decay: float = 1e-4) -> OptimizerFactory:
    """The paper's optimizer as a factory taking the parameters: SGD with momentum 0.9 (Appendix 8.1, MNIST; 0.8 for
    CIFAR) and weight decay 1e-4 (Table A2), as ``conf/train/optimizer/sgd.yaml`` builds it."""
    return functools.partial(torch.optim.SGD, lr=lr, momentum=momentum, weight_decay=weight_decay)


class CallableAttack:
    """A plain attack function ``fn(model, x, y) -> x_adv`` run under :class:`AttackFactory`'s rules.

    The model is in eval mode with frozen parameters while ``fn`` runs (BatchNorm statistics and parameter
    gradients untouched), gradients are on and autocast off (float32), and the result is detached, so an
    attack from another library (or one's own) trains exactly as the configured ones do.
    """

    def __init__(self, fn: Callable[..., torch.Tensor]):
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)

    def __repr__(self) -> str:
        return f"CallableAttack({self.fn!r})"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:
        with attack_mode(model), torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            return self.fn(model, x.detach().float(), y, **kwargs).detach()


def as_attack(attack, role: str = "attack"):
    """An attack the methods can call, from what a script passes (the configs always pass an AttackFactory).

    * an :class:`AttackFactory` or None: as it is;
    * a mapping of :class:`AttackFactory` settings, e.g. ``{"eps": 0.3, "steps": 40, "step_size": 0.01}``: PGD-L∞
      with a random start (the paper's training attack) unless ``attack_cls`` names another advertorch class (by
      import path or the class itself); ``step_size`` defaults to ``2.5 * eps / steps`` (Madry et al.'s rule,
      which ``conf/train/dataset/digits.yaml`` follows);
    * any other callable ``attack(model, x, y) -> x_adv``: wrapped in :class:`CallableAttack`.
    """
    if attack is None or isinstance(attack, (AttackFactory, CallableAttack)):
        return attack
    if isinstance(attack, Mapping):
        settings = dict(attack)
        if "eps" not in settings or "steps" not in settings:
            raise ConfigError(
                f"{role}={settings!r}: give at least eps and steps, e.g. {{'eps': 0.3, 'steps': 40}} (PGD-L∞)"
            )
        cls = settings.pop("attack_cls", PGD_LINF)
        if isinstance(cls, type):
            cls = f"{cls.__module__}.{cls.__qualname__}"
        if cls == PGD_LINF:
            settings.setdefault("name", "pgd_linf")
            settings.setdefault("rand_init", True)
        if settings["steps"] is not None and settings.get("step_size") is None:
            settings["step_size"] = 2.5 * float(settings["eps"]) / int(settings["steps"])
        try:
            return AttackFactory(attack_cls=cls, **settings)
        except TypeError as err:
            raise ConfigError(f"{role}={dict(attack)!r}: {err}") from None
    if callable(attack):
        return CallableAttack(attack)
    raise TypeError(
        f"{role} must be an AttackFactory, a mapping of its settings or a function (model, x, y) -> x_adv, "
        f"not {type(attack).__name__}"
    )


class RobustMethod(pl.LightningModule):
    """Base for NT, AT, TRADES, MATCH and AFD.

    Each subclass names itself in ``short_name`` (the evaluation's and ``afd-summarize``'s label).

    Args:
        model: an :class:`~afd_lightning.nets.ImageClassifier` (``encoder`` E and ``classifier`` Dc).
        attack: the training-time attack (used by every method but NT): an
            :class:`~afd_lightning.attacks.AttackFactory`, a mapping of its settings (``{"eps": 0.3, "steps": 40}``:
            PGD-L∞, the paper's training attack) or a function ``(model, x, y) -> x_adv`` (see :func:`as_attack`).
        eval_attack: the attack behind ``val/acc_adv`` and ``test/acc_adv`` (the dataset's threat model), given
            the same ways; None: those metrics are not computed.
        optimizer: partial optimizer factory taking the parameters. Default: the paper's, SGD with lr 0.1,
            momentum 0.9 and weight decay 1e-4 (:func:`paper_sgd`; ``conf/train/method/at.yaml``).
        scheduler: partial LR-scheduler factory taking the optimizer, or None (constant learning rates).
    """

    short_name: str = ""

    def __init__(
        self,
        model: ImageClassifier,
        attack: AttackFactory | Mapping | Callable | None = None,
        eval_attack: AttackFactory | Mapping | Callable | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ):
        super().__init__()
        if not hasattr(model, "encoder") or not hasattr(model, "classifier"):
            raise TypeError("model must expose .encoder (x -> embedding) and .classifier (linear decoder)")
        self.model = model
        self.attack = as_attack(attack, "attack")
        self.eval_attack = as_attack(eval_attack, "eval_attack")
        self.optimizer_factory = paper_sgd(0.1) if optimizer is None else optimizer
        self.scheduler_factory = scheduler
        num_classes = model.num_classes
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{kind}": MulticlassAccuracy(num_classes=num_classes, average="micro")
                for stage in ("val", "test")
                for kind in ("acc_clean", "acc_adv")
            }
        )
        self.train_means = EpochMeans()  # train/ metrics: summed on the device, logged once per epoch

    @property
    def run_config(self) -> dict | None:
        """The run's resolved config: the hyperparameters train.py records (afd_lightning.config.run_config)."""
        return dict(self.hparams) or None

    @classmethod
    def load_from_checkpoint(
        cls, checkpoint_path, map_location=None, hparams_file=None, strict=None, weights_only=None, **kwargs
    ):
        """The method rebuilt from a checkpoint's stored config (allow-listed targets only) with its weights.

        The file is always read with ``weights_only=True``. ``kwargs`` replace built arguments (e.g.
        ``eval_attack=None``); see :func:`afd_lightning.methods.loading.load_method`.
        """
        from afd_lightning.methods.loading import load_method

        if hparams_file is not None:
            raise TypeError("hparams_file is not supported: the run config is read from the checkpoint itself")
        return load_method(cls, checkpoint_path, map_location=map_location, strict=strict, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # ----------------------------------------------------------------- helpers
    def check_finite(self, name: str, value: torch.Tensor) -> None:
        """Stop before a NaN/inf loss is used for an update (the last checkpoint stays good)."""
        if not torch.isfinite(value).all():
            raise NonFiniteLossError(
                f"train/{name} became {value.item()} at epoch {self.current_epoch}, global step "
                f"{self.global_step}. The update was not applied. {checkpoint_note(self._trainer)} "
                "Lower the learning rate(s) or check the data and the attack settings."
            )

    def log_accuracy(self, stage: str, kind: str, logits: torch.Tensor, y: torch.Tensor) -> None:
        if stage == "train":
            self.train_means.add_counts({kind: (logits.detach().argmax(dim=1) == y).sum()}, y.shape[0])
            return
        metric = cast(MulticlassAccuracy, self.metrics[f"{stage}_{kind}"])
        metric(logits.detach(), y)
        self.log(
            f"{stage}/{kind}", metric, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=y.shape[0]
        )

    def log_scalars(self, stage: str, values: dict[str, torch.Tensor], batch_size: int) -> None:
        if stage == "train":
            self.train_means.add_means(values, batch_size)
            return
        for key, value in values.items():
            self.log(
                f"{stage}/{key}",
                value.detach(),
                on_step=False,
                on_epoch=True,
                prog_bar=key.startswith("loss"),
                batch_size=batch_size,
            )

    # Callbacks' on_train_epoch_end (DiscriminatorHealth reads train/ metrics there) runs before the
    # module's: the means are logged at the epoch's last batch, or at its end if it was cut short.
    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if batch_idx + 1 >= self.trainer.num_training_batches:
            self.log_train_means()

    def on_train_epoch_end(self) -> None:
        self.log_train_means()

    def log_train_means(self) -> None:
        """Log the epoch means of the train/ metrics: the values ``self.log(..., on_epoch=True)`` per step gave."""
        if not self.train_means:
            return
        strategy = self.trainer.strategy
        means = self.train_means.compute(lambda t: strategy.reduce(t, reduce_op="sum"))
        self.train_means.reset()
        for key, value in means.items():
            self.log(f"train/{key}", value, on_step=False, on_epoch=True, prog_bar=key.startswith("loss"), batch_size=1)

    def make_adversarial(self, x: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:
        if self.attack is None:
            raise RuntimeError(f"{type(self).__name__} needs a training attack (attack=...)")
        if isinstance(self.attack, AttackFactory) and self.attack.warmup_epochs > 1:
            # ε warm-up: a function of the epoch, so an exact resume continues the ramp where it stopped
            kwargs.setdefault("epoch", self.current_epoch)
            self.log_scalars(
                "train", {"attack_eps": torch.tensor(self.attack.eps_at(kwargs["epoch"]), device=x.device)}, x.shape[0]
            )
        return self.attack(self.model, x, y, **kwargs)

    # ---------------------------------------------------------- evaluation
    def _evaluate(self, batch, stage: str) -> None:
        x, y = batch
        with torch.no_grad():
            self.log_accuracy(stage, "acc_clean", self.model(x), y)
        if self.eval_attack is not None:
            x_adv = self.eval_attack(self.model, x, y)
            with torch.no_grad():
                self.log_accuracy(stage, "acc_adv", self.model(x_adv), y)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    # ---------------------------------------------------------- optimisers
    def make_optimizer(self, factory: OptimizerFactory | None, params) -> torch.optim.Optimizer:
        if factory is None:
            raise RuntimeError(f"{type(self).__name__}: no optimizer configured")
        return factory(params=params)

    def configure_optimizers(self):
        optimizer = self.make_optimizer(self.optimizer_factory, self.model.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"},
        }

    # ---------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        check_finite_model(self, self._trainer)  # never write a checkpoint with NaN/inf weights or BatchNorm statistics
        # The run config travels once, as Lightning's hyper_parameters (afd_lightning.config.run_config).
        checkpoint["afd_lightning"] = {
            "method": type(self).__name__,
            "wandb_run_id": wandb_run_id(self.loggers),  # a resumed run continues this W&B run
        }
        record = getattr(self, "provenance", None)  # set by train.run: commit, threads (reused on resume), ...
        if record is not None:
            checkpoint["afd_lightning"]["provenance"] = record.snapshot()


def kl_clean_to_adv(logits_adv: torch.Tensor, p_clean: torch.Tensor, reduction: str = "batchmean") -> torch.Tensor:
    """KL(p_clean || softmax(logits_adv)), the TRADES regulariser."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), p_clean, reduction=reduction)


def wandb_run_id(loggers) -> str | None:
    """The id of the W&B run among ``loggers`` (stored in checkpoints so that a resume continues it)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            return logger.version
    return None
