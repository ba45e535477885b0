"""AFD (Algorithm 1 of Bashivan et al. 2021): which optimizer moves what, the exact losses and their order,
the GAN-loss variants, and the adversarial decoder Da."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, TensorDataset

from afd_lightning.errors import ConfigError
from afd_lightning.methods import AFD
from afd_lightning.methods.gan_losses import GAN_LOSSES, disc_accuracy, get_gan_loss
from afd_lightning.nets import AdversarialDecoder, ImageClassifier
from afd_lightning.train import bare_trainer, build

from helpers.compose import compose_train


def fast_trainer(batches: int) -> pl.Trainer:
    return bare_trainer(limit_train_batches=batches)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in module.named_parameters()}


def grads(module: nn.Module) -> dict[str, torch.Tensor | None]:
    return {k: None if p.grad is None else p.grad.detach().clone() for k, p in module.named_parameters()}


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def same_grads(a: dict, b: dict, names) -> bool:
    return all(
        (a[k] is None and b[k] is None) or (a[k] is not None and b[k] is not None and torch.equal(a[k], b[k]))
        for k in names
    )


# =========================================================================== the three optimizers (real config)
def build_afd(tmp_path, overrides=()):
    cfg = compose_train(["method=afd", "dataset.batch_size=16", *overrides], tmp_path)
    datamodule, method, _ = build(cfg)
    assert isinstance(method, AFD)
    return cfg, datamodule, method


def test_configure_optimizers_groups(tmp_path):
    cfg, _, method = build_afd(tmp_path)
    optimizers, schedulers = method.configure_optimizers()
    assert len(optimizers) == 3 and len(schedulers) == 3
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    enc = ids(method.model.encoder.parameters())
    cls = ids(method.model.classifier.parameters())
    disc = ids(method.discriminator.parameters())
    assert enc and cls and disc and not (enc & cls) and not (enc & disc) and not (cls & disc)
    groups = [ids(p for g in o.param_groups for p in g["params"]) for o in optimizers]
    assert groups == [enc | cls, disc, enc]
    # Table A2: LR_EDc 0.1, LR_Da 0.1, LR_E 0.5, weight decay 1e-4; momentum 0.9 (digits/MNIST, Appendix 8.1)
    for opt, lr in zip(optimizers, (0.1, 0.1, 0.5)):
        assert isinstance(opt, torch.optim.SGD)
        (group,) = opt.param_groups
        assert group["lr"] == pytest.approx(lr)
        assert group["momentum"] == pytest.approx(cfg.dataset.meta.momentum) == pytest.approx(0.9)
        assert group["weight_decay"] == pytest.approx(1e-4)
    for sched, opt in zip(schedulers, optimizers):
        assert isinstance(sched, torch.optim.lr_scheduler.MultiStepLR) and sched.optimizer is opt


@pytest.mark.slow
def test_each_optimizer_changes_exactly_its_own_parameters(tmp_path):
    _, datamodule, method = build_afd(tmp_path)
    names = {k for k, _ in method.named_parameters()}
    enc = {k for k in names if k.startswith("model.encoder.")}
    cls = {k for k in names if k.startswith("model.classifier.")}
    disc = {k for k in names if k.startswith("discriminator.")}
    assert enc and cls and disc and enc | cls | disc == names

    updates, attacks = [], []
    orig_update, orig_adv = method._update, method.make_adversarial

    def recording_update(optimizer, loss):
        before = snapshot(method)
        orig_update(optimizer, loss)
        updates.append(dict(optimizer=optimizer.optimizer, before=before, after=snapshot(method), grads=grads(method)))

    def recording_adversarial(x, y, **kwargs):
        before = grads(method)
        flags = {k: p.requires_grad for k, p in method.named_parameters()}
        params = snapshot(method)
        x_adv = orig_adv(x, y, **kwargs)
        attacks.append(
            dict(
                before=before,
                after=grads(method),
                flags=flags,
                flags_after={k: p.requires_grad for k, p in method.named_parameters()},
                params=params,
                params_after=snapshot(method),
                x=x.clone(),
                x_adv=x_adv,
            )
        )
        return x_adv

    method._update = recording_update
    method.make_adversarial = recording_adversarial
    trainer = fast_trainer(batches=2)
    trainer.fit(method, datamodule=datamodule)

    assert len(updates) == 6 and len(attacks) == 2
    for batch in range(2):
        u1, u2, u3 = updates[3 * batch : 3 * batch + 3]
        # each call went through the matching optimizer of configure_optimizers
        assert [u["optimizer"] for u in (u1, u2, u3)] == trainer.optimizers
        # 1. (E, Dc) step: every encoder and classifier parameter moves, Da does not
        assert changed(u1["before"], u1["after"]) == enc | cls
        # 2. Da step: only Da's parameters move
        assert changed(u2["before"], u2["after"]) == disc
        # 3. E step: only encoder parameters move (classifier and Da unchanged)
        assert changed(u3["before"], u3["after"]) == enc
        # no parameter moves between the updates (e.g. during the forward passes in between)
        assert not changed(u1["after"], u2["before"]) and not changed(u2["after"], u3["before"])

        # gradients: step 2 computes none for E / Dc (E's forward runs without a graph) ...
        assert all(u2["grads"][k] is not None for k in disc)
        assert same_grads(u1["grads"], u2["grads"], enc | cls)
        # ... and step 3 computes none for Da (nor for Dc): their grads are what steps 2 and 1 left
        assert same_grads(u2["grads"], u3["grads"], disc)
        assert same_grads(u1["grads"], u3["grads"], cls)
        assert all(u3["grads"][k] is not None for k in enc)
        assert not same_grads(u2["grads"], u3["grads"], enc)  # E did get fresh gradients from L_E

    # the attack touches no gradient, weight or requires_grad flag
    for i, rec in enumerate(attacks):
        if i == 0:
            assert all(g is None for g in rec["before"].values())
        else:  # the second batch's attack starts with the grads the first batch left: all non-None
            assert all(g is not None for g in rec["before"].values())
        assert same_grads(rec["before"], rec["after"], names)
        assert rec["flags"] == rec["flags_after"] and all(rec["flags"].values())
        assert not changed(rec["params"], rec["params_after"])
        eps = method.attack.eps
        assert (rec["x_adv"] - rec["x"]).abs().max() <= eps + 1e-6 and not torch.equal(rec["x_adv"], rec["x"])
    # the first batch's attack ran with the start-of-batch parameters (before any update)
    assert not changed(attacks[0]["params"], updates[0]["before"])
    assert not changed(attacks[1]["params"], updates[3]["before"])


@pytest.mark.parametrize("cls_loss", ["adv", "trades"])
@pytest.mark.slow
def test_cls_loss_variants_train_one_step(tmp_path, cls_loss):
    _, datamodule, method = build_afd(tmp_path, [f"method.cls_loss={cls_loss}"])
    assert method.cls_loss == cls_loss
    before = snapshot(method)
    trainer = fast_trainer(batches=1)
    trainer.fit(method, datamodule=datamodule)
    after = snapshot(method)
    assert changed(before, after) == set(before)  # E, Dc and Da all moved
    metrics = trainer.callback_metrics
    for key in ("train/loss_cls", "train/loss_disc", "train/loss_enc", "train/acc_clean", "train/acc_adv"):
        assert key in metrics and torch.isfinite(metrics[key])
    assert metrics["train/loss_cls"] > 0
    assert trainer.global_step == 3  # one per optimizer


# =========================================================================== Algorithm 1 by hand
class ProjectionStub(nn.Module):
    """Da(z, y) = tanh(z) . w + b + <e_y, z>: a discriminator whose output is one explicit formula."""

    def __init__(self, embed_dim: int, num_classes: int):
        super().__init__()
        g = torch.Generator().manual_seed(11)
        self.w = nn.Parameter(torch.randn(embed_dim, generator=g))
        self.b = nn.Parameter(torch.tensor(0.3))
        self.e = nn.Parameter(torch.randn(num_classes, embed_dim, generator=g))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z) @ self.w + self.b + (self.e[y] * z).sum(dim=1)


# Larger learning rates than Table A2 so that each update visibly moves the next loss.
LRS = (1.0, 0.5, 2.0)


def tiny_afd(cls_loss="clean", gan_loss="softplus", momentum=0.9):
    torch.manual_seed(0)
    model = ImageClassifier(nn.Sequential(nn.Flatten(), nn.Linear(2, 3)), embed_dim=3, num_classes=2)
    sgd = lambda lr: functools.partial(torch.optim.SGD, lr=lr, momentum=momentum, weight_decay=1e-4)  # noqa: E731
    method = AFD(
        model,
        discriminator=ProjectionStub(3, 2),
        optimizer_cls=sgd(LRS[0]),
        optimizer_disc=sgd(LRS[1]),
        optimizer_enc=sgd(LRS[2]),
        gan_loss=gan_loss,
        cls_loss=cls_loss,
        trades_beta=6.0,
    )
    return method


# fixed data: two batches of four 2-d "images" (B, 1, 1, 2), and the perturbation the "attack" returns
X = torch.tensor([[0.2, 0.9], [0.7, 0.1], [0.5, 0.5], [0.9, 0.8], [0.1, 0.3], [0.6, 0.2], [0.3, 0.7], [0.8, 0.6]]).view(
    8, 1, 1, 2
)
Y = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
DELTA = torch.tensor([[0.3, -0.3], [-0.3, 0.3], [0.3, 0.3], [-0.3, -0.3]]).view(4, 1, 1, 2)


def fixed_adversarial(x):
    return (x + DELTA).clamp(0, 1)


def softplus(t):
    return torch.log1p(torch.exp(t))


def expected_losses(cls_loss, gan_loss, p):
    """Algorithm 1's three losses as explicit formulas of the float64 parameter dict ``p``."""
    A, a, C, c, w, b, e = (p[k] for k in ("A", "a", "C", "c", "w", "b", "e"))

    def E(x):
        return x.reshape(-1, 2) @ A.T + a

    def Dc(z):
        return z @ C.T + c

    def Da(z, y):
        return torch.tanh(z) @ w + b + (e[y] * z).sum(dim=1)

    def ce(logits, y):
        return (torch.logsumexp(logits, dim=1) - logits[torch.arange(len(y)), y]).mean()

    def d_loss(d_clean, d_adv):
        if gan_loss == "softplus":
            return softplus(-d_clean).mean() + softplus(d_adv).mean()
        if gan_loss == "hinge":
            return torch.clamp(1 - d_clean, min=0).mean() + torch.clamp(1 + d_adv, min=0).mean()
        return d_adv.mean() - d_clean.mean()  # wgan

    def e_loss(d_adv):
        return softplus(-d_adv).mean() if gan_loss == "softplus" else -d_adv.mean()

    def l_edc(x, xa, y):
        if cls_loss == "clean":
            return ce(Dc(E(x)), y)
        if cls_loss == "adv":
            return ce(Dc(E(xa)), y)
        pc = torch.softmax(Dc(E(x)), dim=1)
        log_pa = torch.log_softmax(Dc(E(xa)), dim=1)
        kl = (pc * (torch.log(pc) - log_pa)).sum() / len(y)
        return ce(Dc(E(x)), y) + 6.0 * kl

    return (
        l_edc,
        lambda x, xa, y: d_loss(Da(E(x), y), Da(E(xa), y)),
        lambda x, xa, y: e_loss(Da(E(xa), y)),
    )


def replay(method_init: AFD, cls_loss, gan_loss, momentum=0.9):
    """Algorithm 1 replayed in float64 with plain tensors and torch.optim.SGD (same hyperparameters)."""
    enc_lin, cls_lin, da = method_init.model.encoder[1][1], method_init.model.classifier, method_init.discriminator
    src = dict(A=enc_lin.weight, a=enc_lin.bias, C=cls_lin.weight, c=cls_lin.bias, w=da.w, b=da.b, e=da.e)
    p = {k: v.detach().double().clone().requires_grad_(True) for k, v in src.items()}
    sgd = lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=1e-4)  # noqa: E731
    opt1 = sgd([p["A"], p["a"], p["C"], p["c"]], LRS[0])
    opt2 = sgd([p["w"], p["b"], p["e"]], LRS[1])
    opt3 = sgd([p["A"], p["a"]], LRS[2])
    l1, l2, l3 = expected_losses(cls_loss, gan_loss, p)
    losses, wrong_order = [], []
    for i in range(2):
        x, y = X[4 * i : 4 * i + 4].double(), Y[4 * i : 4 * i + 4]
        xa = fixed_adversarial(x)
        start = {k: v.detach().clone() for k, v in p.items()}
        batch = []
        for opt, loss_fn in ((opt1, l1), (opt2, l2), (opt3, l3)):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(x, xa, y)
            loss.backward()
            opt.step()
            batch.append(loss.detach())
        losses.append(batch)
        # what L_Da and L_E would be with the start-of-batch parameters (the wrong order)
        with torch.no_grad():
            s1, s2, s3 = expected_losses(cls_loss, gan_loss, start)
            wrong_order.append((s2(x, xa, y), s3(x, xa, y)))
    return losses, wrong_order, {k: v.detach() for k, v in p.items()}


def fit_recording_losses(method):
    """Two batches of X with a fixed perturbation; returns (each loss handed to an optimizer, in order; the trainer)."""
    seen = []
    orig_update = method._update

    def recording_update(optimizer, loss):
        seen.append(loss.detach().double().clone())
        orig_update(optimizer, loss)

    method._update = recording_update
    method.make_adversarial = lambda x, y, **kw: fixed_adversarial(x)
    loader = DataLoader(TensorDataset(X, Y), batch_size=4, shuffle=False)
    trainer = fast_trainer(batches=2)
    trainer.fit(method, train_dataloaders=loader)
    return seen, trainer


@pytest.mark.parametrize(
    "cls_loss, gan_loss",
    [("clean", "softplus"), ("adv", "softplus"), ("trades", "softplus"), ("clean", "hinge"), ("clean", "wgan")],
)
@pytest.mark.slow
def test_losses_and_updates_follow_algorithm_1(cls_loss, gan_loss):
    method = tiny_afd(cls_loss, gan_loss)
    expected, wrong_order, final = replay(copy.deepcopy(method), cls_loss, gan_loss)

    seen, trainer = fit_recording_losses(method)

    assert len(seen) == 6
    for i in range(2):
        for j, name in enumerate(("L_EDc", "L_Da", "L_E")):
            got, want = seen[3 * i + j], expected[i][j]
            assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6), (i, name)
        # the order matters here: with start-of-batch parameters L_Da / L_E would be different numbers
        assert abs(wrong_order[i][0] - expected[i][1]) > 1e-3
        assert abs(wrong_order[i][1] - expected[i][2]) > 1e-3

    # the parameters after two batches match the float64 replay
    enc_lin, cls_lin, da = method.model.encoder[1][1], method.model.classifier, method.discriminator
    got = dict(A=enc_lin.weight, a=enc_lin.bias, C=cls_lin.weight, c=cls_lin.bias, w=da.w, b=da.b, e=da.e)
    for k, v in got.items():
        torch.testing.assert_close(v.detach().double(), final[k], rtol=1e-4, atol=1e-5, msg=k)

    # the logged epoch values are the batch means of the same losses
    metrics = trainer.callback_metrics
    for j, key in enumerate(("train/loss_cls", "train/loss_disc", "train/loss_enc")):
        want = (expected[0][j] + expected[1][j]) / 2
        assert metrics[key].item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6), key


# =========================================================================== GAN losses and options
D_CLEAN = torch.tensor([0.5, -2.0, 3.0])
D_ADV = torch.tensor([-0.5, 2.0, -0.6])


def test_gan_loss_formulas_by_hand():
    sp = lambda t: math.log1p(math.exp(t))  # noqa: E731
    d_loss, e_loss = get_gan_loss("softplus")
    want = (sp(-0.5) + sp(2.0) + sp(-3.0)) / 3 + (sp(-0.5) + sp(2.0) + sp(-0.6)) / 3
    assert d_loss(D_CLEAN, D_ADV).item() == pytest.approx(want, rel=1e-6)
    assert e_loss(D_ADV).item() == pytest.approx((sp(0.5) + sp(-2.0) + sp(0.6)) / 3, rel=1e-6)

    d_loss, e_loss = get_gan_loss("hinge")
    # relu(1 - d_clean) = [0.5, 3, 0] -> 7/6;  relu(1 + d_adv) = [0.5, 3, 0.4] -> 1.3
    assert d_loss(D_CLEAN, D_ADV).item() == pytest.approx(7 / 6 + 1.3, rel=1e-6)
    assert e_loss(D_ADV).item() == pytest.approx(-0.3, rel=1e-6)

    d_loss, e_loss = get_gan_loss("wgan")
    # mean d_adv - mean d_clean = 0.3 - 0.5
    assert d_loss(D_CLEAN, D_ADV).item() == pytest.approx(-0.2, rel=1e-6)
    assert e_loss(D_ADV).item() == pytest.approx(-0.3, rel=1e-6)

    acc_clean, acc_adv = disc_accuracy(D_CLEAN, D_ADV)
    assert acc_clean.item() == pytest.approx(2 / 3) and acc_adv.item() == pytest.approx(2 / 3)
    assert set(GAN_LOSSES) == {"softplus", "hinge", "wgan"}


def test_unknown_options_raise_config_error():
    with pytest.raises(ConfigError, match="gan_loss"):
        get_gan_loss("lsgan")
    with pytest.raises(ConfigError, match="gan_loss"):
        tiny_afd(gan_loss="lsgan")
    with pytest.raises(ConfigError, match="cls_loss"):
        tiny_afd(cls_loss="clean_and_adv")
    model = ImageClassifier(nn.Sequential(nn.Flatten(), nn.Linear(2, 3)), embed_dim=3, num_classes=2)
    with pytest.raises(ConfigError, match="discriminator"):
        AFD(model, discriminator=None)


def test_discriminator_factory_and_instance():
    """The config passes a partial(AdversarialDecoder, ...) taking embed_dim; a ready module is used as is."""
    model = ImageClassifier(nn.Sequential(nn.Flatten(), nn.Linear(2, 3)), embed_dim=3, num_classes=2)
    method = AFD(model, discriminator=functools.partial(AdversarialDecoder, num_classes=2, hidden_dim=5))
    assert isinstance(method.discriminator, AdversarialDecoder)
    assert method.discriminator.embed_dim == 3 and method.discriminator.hidden_dim == 5
    stub = ProjectionStub(3, 2)
    assert AFD(model, discriminator=stub).discriminator is stub


# =========================================================================== the adversarial decoder Da
def test_adversarial_decoder_structure():
    da = AdversarialDecoder(embed_dim=7, num_classes=4, hidden_dim=6)
    linears = [m for m in da.modules() if isinstance(m, nn.Linear)]
    embeddings = [m for m in da.modules() if isinstance(m, nn.Embedding)]
    assert len(linears) == 4 and len(embeddings) == 1  # three hidden layers + output layer; label embedding
    for m in linears + embeddings:
        assert parametrize.is_parametrized(m, "weight"), m
        assert type(m.parametrizations.weight[0]).__name__ == "_SpectralNorm"
    hidden = [m for m in da.features if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in hidden] == [(7, 6), (6, 6), (6, 6)]
    assert (da.linear.in_features, da.linear.out_features) == (6, 1)
    assert embeddings[0].weight.shape == (4, 6)
    acts = [m for m in da.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 3 and all(a.negative_slope == 0.2 for a in acts)
    # activation after each hidden layer: Linear, LeakyReLU, Linear, LeakyReLU, Linear, LeakyReLU
    assert [isinstance(m, nn.Linear) for m in da.features] == [True, False] * 3
    assert [isinstance(m, nn.LeakyReLU) for m in da.features] == [False, True] * 3

    z, y = torch.randn(5, 7), torch.tensor([0, 1, 2, 3, 1])
    assert da(z, y).shape == (5,)
    da.eval()
    # spectral norm: every normalised weight has largest singular value about 1
    for m in linears + embeddings:
        assert torch.linalg.matrix_norm(m.weight.detach(), ord=2) == pytest.approx(1.0, abs=0.05)


def test_adversarial_decoder_label_term_is_a_projection():
    torch.manual_seed(0)
    da = AdversarialDecoder(embed_dim=5, num_classes=3, hidden_dim=8).eval()  # eval: no power iteration
    z = torch.randn(6, 5)
    y1 = torch.tensor([0, 1, 2, 0, 1, 2])
    y2 = torch.tensor([1, 2, 0, 2, 0, 1])
    with torch.no_grad():
        h = da.features(z)
        emb = da.label_embedding.weight  # the spectrally normalised embedding
        d1, d2 = da(z, y1), da(z, y2)
        torch.testing.assert_close(d2 - d1, ((emb[y2] - emb[y1]) * h).sum(dim=1), rtol=1e-5, atol=1e-6)
        # and the whole output by hand: h from three LeakyReLU(0.2) layers, w . h + b + <embed(y), h>
        hand = z
        for lin in [m for m in da.features if isinstance(m, nn.Linear)]:
            hand = F.leaky_relu(hand @ lin.weight.T + lin.bias, 0.2)
        torch.testing.assert_close(hand, h)
        want = hand @ da.linear.weight[0] + da.linear.bias[0] + (emb[y1] * hand).sum(dim=1)
        torch.testing.assert_close(d1, want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(d1, d2)  # the label matters


def test_adversarial_decoder_rejects_bad_sizes():
    with pytest.raises(ValueError, match="hidden_dim"):
        AdversarialDecoder(embed_dim=4, num_classes=2, hidden_dim=0)


# =========================================================================== official-recipe options
@pytest.mark.parametrize(
    "dataset, model",
    [
        ("digits", "resnet5_digits"),
        ("mnist", "resnet5"),
        ("mnist", "lenet"),
        ("cifar10", "resnet18"),
        ("cifar10", "preact_resnet18"),
    ],
)
@pytest.mark.slow
def test_normalize_embedding_every_network(dataset, model):
    """model.normalize_embedding=true: unit-norm embeddings into Dc, same parameters and checkpoint keys."""
    from afd_lightning.nets.build import build_model

    plain_cfg = compose_train([f"dataset={dataset}", f"model={model}"], fast=False).model
    norm_cfg = compose_train(
        [f"dataset={dataset}", f"model={model}", "model.normalize_embedding=true"], fast=False
    ).model
    assert plain_cfg.normalize_embedding is False  # the paper's default
    torch.manual_seed(0)
    plain = build_model(plain_cfg)
    torch.manual_seed(0)
    normed = build_model(norm_cfg)
    assert normed.normalize_embedding and not plain.normalize_embedding
    assert plain.state_dict().keys() == normed.state_dict().keys()
    normed.load_state_dict(plain.state_dict())
    plain.eval(), normed.eval()
    size = 8 if dataset == "digits" else 28 if dataset == "mnist" else 32
    x = torch.rand(3, plain_cfg.in_channels, size, size)
    with torch.no_grad():
        z, logits = normed.forward_with_embedding(x)
        z_plain = plain.encoder(x)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(z, F.normalize(z_plain, dim=1))
    torch.testing.assert_close(logits, normed.classifier(z))


def test_wide_resnet_takes_normalize_embedding():
    from afd_lightning.nets import wide_resnet

    net = wide_resnet(3, 10, depth=10, widen_factor=1, normalize_embedding=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(net.encoder(torch.rand(2, 3, 32, 32)).norm(dim=1), torch.ones(2))


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_adversarial_decoder_depth_option(layers):
    da = AdversarialDecoder(embed_dim=7, num_classes=4, hidden_dim=6, num_hidden_layers=layers)
    hidden = [m for m in da.features if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in hidden] == [(7, 6)] + [(6, 6)] * (layers - 1)
    assert all(parametrize.is_parametrized(m, "weight") for m in hidden + [da.linear, da.label_embedding])
    assert da(torch.randn(5, 7), torch.tensor([0, 1, 2, 3, 1])).shape == (5,)
    with pytest.raises(ValueError, match="num_hidden_layers"):
        AdversarialDecoder(embed_dim=7, num_classes=4, num_hidden_layers=0)


def test_adversarial_decoder_xavier_init():
    """init=xavier: the output layer and label embedding start Xavier-uniform (official SNPDFC3._initialize)."""
    torch.manual_seed(0)
    default = AdversarialDecoder(embed_dim=64, num_classes=10, hidden_dim=64)
    torch.manual_seed(0)
    xavier = AdversarialDecoder(embed_dim=64, num_classes=10, hidden_dim=64, init="xavier")
    emb_default = default.label_embedding.parametrizations.weight.original
    emb_xavier = xavier.label_embedding.parametrizations.weight.original
    bound = math.sqrt(6 / (10 + 64))
    assert emb_xavier.abs().max() <= bound and emb_xavier.std() > bound / 3
    assert emb_default.abs().max() > 1.5  # PyTorch's N(0, 1) embedding
    out = xavier.linear.parametrizations.weight.original
    assert out.abs().max() <= math.sqrt(6 / (64 + 1))
    # hidden layers: PyTorch's default init, identical draws in both
    for a, b in zip(default.features, xavier.features):
        if isinstance(a, nn.Linear):
            assert torch.equal(a.parametrizations.weight.original, b.parametrizations.weight.original)
    with pytest.raises(ValueError, match="init"):
        AdversarialDecoder(embed_dim=4, num_classes=2, init="orthogonal")


# =========================================================================== Algorithm 1 with the real parts
# The replay above checks the order and the formulas with a stub Da and one weight decay. Here E has
# BatchNorm (train mode in every pass: running statistics move), Da is the real spectrally normalised
# AdversarialDecoder (its power iteration runs in each forward), each optimizer has its own weight decay,
# and the official recipe's variant normalises the embedding, has a 2-layer Da and the WGAN loss.
RECIPES = {
    # name: (normalize_embedding, Da hidden layers, Da init, gan_loss, weight decays of opt_cls/disc/enc)
    "paper": (False, 3, "default", "softplus", (0.05, 0.05, 0.05)),
    "official": (True, 2, "xavier", "wgan", (0.05, 0.0, 0.0)),
}


def bn_afd(recipe: str, momentum: float = 0.9):
    normalize, layers, init, gan_loss, wds = RECIPES[recipe]
    torch.manual_seed(0)
    body = nn.Sequential(nn.Flatten(), nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU())
    model = ImageClassifier(body, embed_dim=4, num_classes=2, normalize_embedding=normalize)
    sgd = lambda lr, wd: functools.partial(torch.optim.SGD, lr=lr, momentum=momentum, weight_decay=wd)  # noqa: E731
    return AFD(
        model,
        discriminator=AdversarialDecoder(4, 2, hidden_dim=5, num_hidden_layers=layers, init=init),
        optimizer_cls=sgd(LRS[0], wds[0]),
        optimizer_disc=sgd(LRS[1], wds[1]),
        optimizer_enc=sgd(LRS[2], wds[2]),
        gan_loss=gan_loss,
    )


def replay_real(method_init: AFD, recipe: str, wds=None, momentum: float = 0.9):
    """Algorithm 1 in float64 on copies of E's body, Dc and Da, with hand-written losses and normalisation."""
    normalize, _, _, gan_loss, recipe_wds = RECIPES[recipe]
    wds = recipe_wds if wds is None else wds
    m = copy.deepcopy(method_init).double().train()
    body, Dc, Da = m.model.encoder[1], m.model.classifier, m.discriminator
    enc_params = list(body.parameters())

    def E(x):
        z = body(x)
        return z / z.pow(2).sum(dim=1, keepdim=True).sqrt().clamp_min(1e-12) if normalize else z

    def ce(logits, y):
        return (torch.logsumexp(logits, dim=1) - logits[torch.arange(len(y)), y]).mean()

    if gan_loss == "softplus":
        d_loss = lambda dc, da: softplus(-dc).mean() + softplus(da).mean()  # noqa: E731
        e_loss = lambda da: softplus(-da).mean()  # noqa: E731
    else:  # wgan
        d_loss = lambda dc, da: da.mean() - dc.mean()  # noqa: E731
        e_loss = lambda da: -da.mean()  # noqa: E731
    sgd = lambda params, lr, wd: torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd)  # noqa: E731
    opt1 = sgd(enc_params + list(Dc.parameters()), LRS[0], wds[0])
    opt2 = sgd(Da.parameters(), LRS[1], wds[1])
    opt3 = sgd(enc_params, LRS[2], wds[2])
    losses = []
    for i in range(2):
        x, y = X[4 * i : 4 * i + 4].double(), Y[4 * i : 4 * i + 4]
        xa = fixed_adversarial(x)
        opt1.zero_grad(set_to_none=True)
        l1 = ce(Dc(E(x)), y)
        l1.backward()
        opt1.step()
        with torch.no_grad():
            zc, za = E(x), E(xa)
        opt2.zero_grad(set_to_none=True)
        l2 = d_loss(Da(zc, y), Da(za, y))
        l2.backward()
        opt2.step()
        opt3.zero_grad(set_to_none=True)
        l3 = e_loss(Da(E(xa), y))
        l3.backward()
        opt3.step()
        losses += [l1.detach(), l2.detach(), l3.detach()]
    return losses, {k: v.detach() for k, v in m.state_dict().items() if not k.startswith("metrics")}


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_algorithm_1_with_batchnorm_spectral_norm_and_per_optimizer_weight_decay(recipe):
    method = bn_afd(recipe)
    assert isinstance(method.model.encoder[1][2], nn.BatchNorm1d)
    assert method.model.normalize_embedding is RECIPES[recipe][0]
    assert method.discriminator.num_hidden_layers == RECIPES[recipe][1]
    expected, final = replay_real(copy.deepcopy(method), recipe)

    seen, trainer = fit_recording_losses(method)

    # each optimizer carries the weight decay the recipe gave it
    wds = [o.param_groups[0]["weight_decay"] for o in trainer.optimizers]
    assert wds == list(RECIPES[recipe][4])
    assert len(seen) == 6
    for j, (got, want) in enumerate(zip(seen, expected)):
        assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6), ("L_EDc", "L_Da", "L_E")[j % 3]
    # every parameter and buffer (BatchNorm running statistics, spectral norm's u and v) matches the replay
    state = {k: v for k, v in method.state_dict().items() if not k.startswith("metrics")}
    assert state.keys() == final.keys()
    assert state["model.encoder.1.2.num_batches_tracked"] == 8  # four E passes per batch, two batches
    for k, v in state.items():
        torch.testing.assert_close(v.double(), final[k].double(), rtol=1e-4, atol=1e-5, msg=k)

    # the weight decays matter at this tolerance: the other recipe's decays give different weights
    other = RECIPES["official" if recipe == "paper" else "paper"][4]
    _, wrong = replay_real(copy.deepcopy(bn_afd(recipe)), recipe, wds=other)
    moved = [
        k
        for k in final
        if final[k].is_floating_point() and not torch.allclose(final[k], wrong[k], rtol=1e-4, atol=1e-5)
    ]
    assert any(k.startswith("discriminator.") for k in moved) and any(k.startswith("model.encoder.") for k in moved)
