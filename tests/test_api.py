"""The library API: ``afd_lightning.recipe`` builds what the command line builds, constructors with the paper's
defaults, attacks given as plain objects, and ``afd_lightning.evaluate`` on any network."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import afd_lightning
from afd_lightning.api import _hydra_value, _strategy
from afd_lightning.attacks import AttackFactory
from afd_lightning.errors import ConfigError
from afd_lightning.methods import AFD, AdversarialTraining
from afd_lightning.methods.base import CallableAttack
from afd_lightning.nets import AdversarialDecoder, ImageClassifier, resnet5
from afd_lightning.train import build

from helpers.compose import compose_train


@pytest.mark.slow
def test_recipe_builds_what_the_command_line_builds(tmp_path):
    r = afd_lightning.recipe(
        "paper_digits_afd", seed=1, overrides=["dataset.batch_size=25"], output_dir=tmp_path, trainer__max_epochs=2
    )
    _, method, _ = build(
        compose_train(
            ["experiment=paper_digits_afd", "seed=1", "dataset.batch_size=25", "trainer.max_epochs=2"],
            tmp_path,
            fast=False,
        )
    )
    assert type(r.module) is AFD and type(r.datamodule).__name__ == "DigitsDataModule"
    assert r.datamodule.batch_size == 25 and r.config.seed == 1
    mine, theirs = r.module.state_dict(), method.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)  # same seed: same init
    assert dict(r.module.hparams)["method"] == dict(method.hparams)["method"]  # the recipe recorded for checkpoints
    kwargs = r.trainer_kwargs
    assert kwargs["max_epochs"] == 2 and kwargs["inference_mode"] is False and kwargs["strategy"] == "auto"
    assert kwargs["default_root_dir"] == str(tmp_path) and "_target_" not in kwargs
    trainer = r.trainer(accelerator="cpu", logger=False)
    assert trainer.max_epochs == 2 and not trainer.predict_loop.inference_mode
    assert r.trainer_arguments(devices=2)["strategy"] == "ddp_find_unused_parameters_true"  # AFD on two devices
    assert r.trainer_arguments(devices=2, strategy="ddp_spawn")["strategy"] == "ddp_spawn"


@pytest.mark.slow
def test_recipe_refuses_a_typo_with_a_did_you_mean():
    with pytest.raises(ConfigError, match=r"no option metod; did you mean method\?"):
        afd_lightning.recipe("paper_digits_afd", metod="at")
    with pytest.raises(ConfigError, match=r"did you mean experiment=paper_digits_afd\?"):
        afd_lightning.recipe("paper_digits_afdd")
    with pytest.raises(TypeError, match="list of strings"):
        afd_lightning.recipe(overrides="seed=1")


def test_keyword_values_reach_hydra_as_written():
    assert [_hydra_value(v) for v in (None, True, 2, 0.5, "a'b", [1, "x"])] == [
        "null",
        "true",
        "2",
        "0.5",
        "'a\\'b'",
        "[1,'x']",
    ]


def test_ddp_strategy_as_the_training_command_picks_it():
    model = resnet5(num_classes=10, stem_stride=1)
    afd, at = AFD(model), AdversarialTraining(model)
    assert _strategy({"devices": 1}, afd) == "auto"
    assert _strategy({"devices": 2}, afd) == "ddp_find_unused_parameters_true"
    assert _strategy({"devices": [0, 1]}, at) == "ddp"
    assert _strategy({"devices": 1, "num_nodes": 2}, at) == "ddp"
    assert _strategy({"devices": 2, "strategy": "fsdp"}, afd) == "fsdp"


def test_afd_defaults_are_the_papers_recipe():
    torch.manual_seed(0)
    model = resnet5(num_classes=10, stem_stride=1)
    afd = AFD(model, attack={"eps": 0.2, "steps": 10})
    optimizers = afd.configure_optimizers()  # no scheduler: constant rates, the paper's MNIST recipe
    assert len(optimizers) == 3
    for opt, lr in zip(optimizers, (0.1, 0.1, 0.5)):  # Table A2: LR_EDc, LR_Da, LR_E
        (group,) = opt.param_groups
        assert isinstance(opt, torch.optim.SGD) and group["lr"] == lr
        assert group["momentum"] == 0.9 and group["weight_decay"] == 1e-4  # Appendix 8.1 (MNIST), Table A2
    da = afd.discriminator  # Sec. 3.2: three layers, LeakyReLU 0.2, 200 units for MNIST's ResNet5 (its embedding)
    assert isinstance(da, AdversarialDecoder) and da.num_hidden_layers == 3 and da.hidden_dim == 200 == model.embed_dim
    assert (afd.gan_loss, afd.cls_loss) == ("softplus", "clean")
    attack = afd.attack
    assert isinstance(attack, AttackFactory) and attack.name == "pgd_linf" and attack.rand_init is True
    assert attack.attack_cls.__name__ == "LinfPGDAttack" and attack.step_size == pytest.approx(
        0.05
    )  # 2.5 * eps / steps
    with pytest.raises(ConfigError, match="discriminator"):
        AFD(model, discriminator=None)
    with pytest.raises(ConfigError, match="give at least eps and steps"):
        AFD(model, attack={"eps": 0.2})
    baseline = AdversarialTraining(model, attack={"eps": 0.2, "steps": 10})
    (group,) = baseline.configure_optimizers().param_groups
    assert group["lr"] == 0.1 and group["momentum"] == 0.9 and group["weight_decay"] == 1e-4


def test_a_plain_attack_function_runs_under_the_attack_rules():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3))
    model = ImageClassifier(body, embed_dim=3, num_classes=2).train()
    seen = {}

    def sign_step(net, x, y):
        seen["training"], seen["grad"] = net.training, any(p.requires_grad for p in net.parameters())
        x = x.clone().requires_grad_(True)
        nn.functional.cross_entropy(net(x), y).backward()
        return (x + 0.1 * x.grad.sign()).clamp(0, 1)

    at = AdversarialTraining(model, attack=sign_step)
    assert isinstance(at.attack, CallableAttack)
    stats = model.encoder[1][2].running_mean.clone()
    x, y = torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 0, 1])
    x_adv = at.make_adversarial(x, y)
    assert seen == {"training": False, "grad": False} and model.training  # eval mode inside, train mode after
    assert torch.equal(model.encoder[1][2].running_mean, stats) and all(p.grad is None for p in model.parameters())
    assert not x_adv.requires_grad and (x_adv - x).abs().max() <= 0.1 + 1e-6


@pytest.mark.slow
def test_evaluate_any_network_in_one_call(tmp_path):
    import afd_lightning.evaluate as cli_module  # the afd-eval module is the package attribute: calling it evaluates

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))  # any nn.Module from [0, 1] images to logits
    results = afd_lightning.evaluate(
        {"linear": net},
        dataset="digits",
        suite="quick",
        n_samples=12,
        output_dir=tmp_path / "out",
        overrides=["suite.attacks.square.n_queries=20", "suite.attacks.apgd_ce.n_iter=5", "plots=false"],
    )
    assert afd_lightning.evaluate is cli_module and callable(cli_module)
    assert results.complete and results.dataset == "digits" == results.config["dataset"] and results.n_samples == 12
    assert results.table_eps == 0.2 and results.family == "digits" and results.checkpoints == {}
    record = results.models["linear"]
    assert set(record.attacks) == {"pgd_linf", "fgsm", "apgd_ce", "square"} and record.worst_case is not None
    assert 0 <= record.worst_case.accuracy <= record.clean_accuracy <= 1
    assert (tmp_path / "out" / "results.json").is_file() and (tmp_path / "out" / "COMPLETE").is_file()
    with pytest.raises(ConfigError, match=r"did you mean dataset=mnist\?"):
        afd_lightning.evaluate(net, dataset="mnsit")
    with pytest.raises(ConfigError, match="cannot take"):
        afd_lightning.evaluate(nn.Sequential(nn.Flatten(), nn.Linear(5, 10)), dataset="digits", attack="fgsm")


def test_importing_the_package_stays_cheap():
    code = (
        "import sys, afd_lightning\n"
        "print(sorted(m for m in ('torch', 'pytorch_lightning') if m in sys.modules))\n"
        "print(callable(afd_lightning.evaluate), afd_lightning.evaluate.__name__, afd_lightning.recipe.__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "True afd_lightning.evaluate afd_lightning.api"]


def test_the_paper_discriminator_has_the_papers_widths():
    """Sec. 3.2: Da's hidden layers have 200 units for MNIST (ResNet5) and 512 for CIFAR (ResNet18), as the config."""
    from afd_lightning.methods import AFD
    from afd_lightning.nets import resnet5, resnet18

    assert AFD(resnet5()).discriminator.hidden_dim == 200
    assert AFD(resnet18(num_classes=10)).discriminator.hidden_dim == 512
