"""End-to-end training on scikit-learn digits: every method, AFD's schedule, resuming, the CLI
(single run and multirun), bf16, DDP on two CPU processes, and stopping on a NaN loss.

Runs are kept short with ``+trainer.limit_train_batches`` (a few batches per epoch, 2-step attacks).
In-process runs go through the real ``afd_lightning.train.run``; test-only callbacks are added to the
trainer it builds by wrapping ``afd_lightning.train.build`` (see :func:`runner`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

import afd_lightning
from afd_lightning import train as train_mod
from afd_lightning.errors import ConfigError, NonFiniteLossError
from afd_lightning.store.checkpoint import load_checkpoint

from helpers import zygote
from helpers.compose import FAST, REPO, compose_train
from helpers.training import BlowUpLearningRate, Recorder, sha256

TRAIN_BATCHES = 4  # training batches per epoch in these runs (of 26 on digits)
SHORT = [f"+trainer.limit_train_batches={TRAIN_BATCHES}"]
FINAL = ("val/acc_clean", "val/acc_adv", "test/acc_clean", "test/acc_adv")
METHODS = ("nt", "at", "trades", "match", "afd")
AFD_LRS = (0.1, 0.1, 0.5)  # conf/train/method/afd.yaml: optimizer_cls, optimizer_disc, optimizer_enc
SUBPROCESS_TIMEOUT = 300


def read_metrics(path: Path) -> dict:
    assert path.is_file(), f"{path} was not written"
    return json.loads(path.read_text())


def assert_final_metrics(metrics: dict) -> None:
    for key in FINAL:
        assert key in metrics, f"{key} missing from {sorted(metrics)}"
        value = metrics[key]
        assert math.isfinite(value) and 0.0 <= value <= 1.0, f"{key}={value}"


def digits_test_images(n: int | None = None) -> torch.Tensor:
    from afd_lightning.data import DigitsDataModule

    datamodule = DigitsDataModule()
    datamodule.setup("test")
    x = datamodule.test_set.tensors[0]
    return x if n is None else x[:n]


def cli(args: list[str], env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HYDRA_FULL_ERROR="1", **(env_extra or {}))
    proc = zygote.run(["train.py", *args], cwd=REPO, env=env, timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 0, f"train.py {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-6000:]}"
    return proc


# ------------------------------------------------------------------- 1. every method, one epoch
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.slow
def test_one_epoch_per_method(method, tmp_path, runner):
    out = tmp_path / method
    torch.manual_seed(0)
    metrics, built = runner(compose_train([f"method={method}", *SHORT], out))

    written = read_metrics(out / "metrics.json")
    assert_final_metrics(written)
    assert written.pop("provenance")["seed"] == 0  # metrics.json also records how the numbers were made
    assert written == metrics  # run() returns what it wrote
    last, best = out / "checkpoints" / "last.ckpt", out / "checkpoints" / "best.ckpt"
    assert last.is_file() and best.is_file()

    # run() tested cfg.test_ckpt, loading its weights into the method; after one epoch best.ckpt and
    # last.ckpt hold the same weights, so the method's model is what last.ckpt must reproduce.
    classifier = afd_lightning.load_classifier(last)
    assert not classifier.training and not any(m.training for m in classifier.modules())
    trained = built["method"].model.eval()
    x = digits_test_images()
    with torch.no_grad():
        expected, got = trained(x), classifier(x)
    assert got.shape == (x.shape[0], 10)
    torch.testing.assert_close(got, expected)
    assert load_checkpoint(last)["afd_lightning"]["method"] == type(built["method"]).__name__


# ------------------------------------------------------------------- 2. AFD's three schedules
@pytest.mark.slow
def test_afd_scheduler_divides_every_lr_at_the_milestone(tmp_path, runner):
    recorder = Recorder()
    epochs = 2
    cfg = compose_train(["method=afd", "trainer.max_epochs=2", "lr_milestones=[1]", *SHORT], tmp_path / "run")
    assert tuple(cfg.method[k].lr for k in ("optimizer_cls", "optimizer_disc", "optimizer_enc")) == AFD_LRS
    _, built = runner(cfg, recorder)

    trainer = built["trainer"]
    assert trainer.num_training_batches == TRAIN_BATCHES
    assert [e for e, _ in recorder.epochs] == [0, 1]
    assert recorder.epochs[0][1] == pytest.approx(list(AFD_LRS))
    assert recorder.epochs[1][1] == pytest.approx([lr / 10 for lr in AFD_LRS])  # epoch 1 trains at lr / 10
    assert recorder.end["lrs"] == pytest.approx([0.01, 0.01, 0.05])
    # Manual optimisation: three optimizer steps (cls, disc, enc) per batch.
    assert recorder.end["global_step"] == 3 * TRAIN_BATCHES * epochs
    assert trainer.global_step == 3 * TRAIN_BATCHES * epochs


# ------------------------------------------------------------------------------- 3. resuming
@pytest.mark.slow
def test_afd_resume_restores_epoch_and_all_optimizers(tmp_path, runner):
    first, second = tmp_path / "first", tmp_path / "second"
    runner(compose_train(["method=afd", "trainer.max_epochs=1", "lr_milestones=[1]", *SHORT], first))
    last = first / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(last)
    assert saved["epoch"] == 0 and saved["global_step"] == 3 * TRAIN_BATCHES
    assert len(saved["optimizer_states"]) == 3 and len(saved["lr_schedulers"]) == 3

    recorder = Recorder()
    cfg = compose_train(
        ["method=afd", "trainer.max_epochs=2", "lr_milestones=[1]", f"ckpt_path={last}", *SHORT], second
    )
    metrics, _ = runner(cfg, recorder)
    assert_final_metrics(metrics)

    # The resumed trainer starts at epoch 1, one epoch's optimizer steps in, and runs only epoch 1.
    assert recorder.start["epoch"] == 1
    assert recorder.start["global_step"] == 3 * TRAIN_BATCHES
    assert [e for e, _ in recorder.epochs] == [1]
    assert recorder.end["global_step"] == 3 * TRAIN_BATCHES * 2
    with open(second / "csv" / "metrics.csv") as f:
        logged_epochs = {
            int(row["epoch"])
            for row in csv.DictReader(f)
            if any(v and k.startswith(("train/", "val/")) for k, v in row.items())
        }
    assert logged_epochs == {1}

    # Weights (E, Dc and Da) come from the checkpoint.
    for key, value in saved["state_dict"].items():
        assert torch.equal(recorder.start["state_dict"][key], value), key

    # All three optimizers: same momentum buffer for every parameter as in the first run's last.ckpt.
    for i, (restored, stored) in enumerate(zip(recorder.start["optimizer_states"], saved["optimizer_states"])):
        n_params = len(restored["param_groups"][0]["params"])
        assert n_params > 0
        assert sorted(restored["state"]) == sorted(stored["state"]) == list(range(n_params)), f"optimizer {i}"
        for idx, state in stored["state"].items():
            assert "momentum_buffer" in state and "momentum_buffer" in restored["state"][idx]
            assert torch.equal(restored["state"][idx]["momentum_buffer"], state["momentum_buffer"]), (i, idx)
            assert state["momentum_buffer"].abs().sum() > 0, (i, idx)  # really from training, not zeros

    # The schedule continues as if uninterrupted: epoch 1 (past milestone 1) trains at lr / 10.
    assert recorder.epochs[0][1] == pytest.approx([lr / 10 for lr in AFD_LRS])


@pytest.mark.slow
def test_resume_from_missing_checkpoint_is_a_config_error(tmp_path):
    missing = tmp_path / "nowhere" / "last.ckpt"
    cfg = compose_train([f"ckpt_path={missing}", *SHORT], tmp_path / "run")
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        train_mod.run(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------------------------------------ 4. the CLI
@pytest.mark.slow
def test_cli_multirun_two_methods(tmp_path):
    sweep = tmp_path / "sweep"
    cli(["-m", "method=nt,at", *FAST, *SHORT, f"hydra.sweep.dir={sweep}"])
    found = sorted(sweep.rglob("metrics.json"))
    assert len(found) == 2, found
    methods = set()
    for path in found:
        assert_final_metrics(read_metrics(path))
        assert (path.parent / "checkpoints" / "last.ckpt").is_file()
        overrides = (path.parent / ".hydra" / "overrides.yaml").read_text()
        methods.update(m for m in ("nt", "at") if f"method={m}" in overrides)
    assert methods == {"nt", "at"}


@pytest.mark.slow
def test_cli_single_run(tmp_path):
    run_dir = tmp_path / "run"
    cli([*FAST, *SHORT, f"hydra.run.dir={run_dir}"])
    assert_final_metrics(read_metrics(run_dir / "metrics.json"))
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()


# -------------------------------------------------------------------------------- 5. bf16
@pytest.mark.slow
def test_afd_bf16_mixed_on_cpu(tmp_path, runner):
    out = tmp_path / "run"
    metrics, built = runner(compose_train(["method=afd", "trainer.precision=bf16-mixed", *SHORT], out))
    assert str(built["trainer"].precision) == "bf16-mixed"
    assert_final_metrics(metrics)
    assert_final_metrics(read_metrics(out / "metrics.json"))
    for key, value in metrics.items():
        if isinstance(value, float):
            assert math.isfinite(value), key


@pytest.mark.slow
def test_attacks_run_in_float32_under_bf16_autocast(tmp_path):
    torch.manual_seed(0)
    _, method, _ = train_mod.build(compose_train(["method=afd"], tmp_path / "run"))
    x = digits_test_images(16)
    y = torch.arange(16) % 10
    seen: list[tuple[str, torch.dtype]] = []

    def hook(module, inputs, output):
        seen.extend(("in", t.dtype) for t in inputs if torch.is_tensor(t))
        seen.append(("out", output.dtype))

    handles = [m.register_forward_hook(hook) for m in method.model.modules() if not list(m.children())]
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            # Control: a plain forward under this autocast does compute in bf16 (so the hooks would see it).
            method.model(x)
            assert ("out", torch.bfloat16) in seen
            seen.clear()
            x_adv = method.attack(method.model, x, y)
            x_eval = method.eval_attack(method.model, x, y)
    finally:
        for h in handles:
            h.remove()
    assert seen, "the attack never ran the model"
    assert {dtype for _, dtype in seen} == {torch.float32}, sorted(set(seen), key=str)
    assert x_adv.dtype == torch.float32 and x_eval.dtype == torch.float32
    assert (x_adv - x).abs().max() <= method.attack.eps + 1e-6


# ------------------------------------------------------------------------ 6. DDP on 2 CPUs
@pytest.mark.slow
@pytest.mark.parametrize(("method", "find_unused"), [("afd", True), ("at", False)])
def test_ddp_two_cpu_processes_keep_ranks_in_sync(method, find_unused, tmp_path):
    run_dir, weights = tmp_path / "ddp", tmp_path / "weights"
    cli(
        [
            f"method={method}",
            *FAST,
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            *SHORT,
            f"hydra.run.dir={run_dir}",
            "+callbacks.save_weights._target_=helpers.ddp.SaveRankWeights",
            f"+callbacks.save_weights.out_dir={weights}",
        ],
        env_extra={"PYTHONPATH": str(REPO / "tests")},
    )
    assert_final_metrics(read_metrics(run_dir / "metrics.json"))
    for rank in (0, 1):
        info = json.loads((weights / f"rank{rank}.json").read_text())
        assert info["world_size"] == 2 and info["strategy"] == "DDPStrategy", info
        assert info["wrapper"] == "DistributedDataParallel", info
        # choose_strategy: AFD's partial losses need unused-parameter detection, AT does not.
        assert info["find_unused_parameters"] is find_unused, info
        steps_per_batch = 3 if method == "afd" else 1
        assert info["global_step"] == steps_per_batch * TRAIN_BATCHES, info

    final = [torch.load(weights / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    init = [torch.load(weights / f"init_rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert final[0].keys() == final[1].keys() == init[0].keys() and len(final[0]) > 0
    if method == "afd":
        assert any(k.startswith("discriminator.") for k in final[0])
    for name in final[0]:
        assert torch.equal(init[0][name], init[1][name]), f"{name} differs across ranks at start"
        assert torch.equal(final[0][name], final[1][name]), f"{name} differs across ranks after training"
        assert torch.isfinite(final[0][name]).all(), name
        assert not torch.equal(final[0][name], init[0][name]), f"{name} did not change in training"


# ---------------------------------------------------------------------------- 7. NaN losses
@pytest.mark.slow
def test_nan_in_first_epoch_stops_without_checkpoint(tmp_path, runner):
    out = tmp_path / "run"
    cfg = compose_train(["method=afd", "method.optimizer_cls.lr=1e30", "method.optimizer_enc.lr=1e30", *SHORT], out)
    with pytest.raises(NonFiniteLossError) as info:
        runner(cfg)
    message = str(info.value)
    match = re.search(r"train/(loss_\w+) became (\S+) at epoch 0, global step (\d+)", message)
    assert match, message
    assert match.group(1) in ("loss_cls", "loss_disc", "loss_enc")
    assert not math.isfinite(float(match.group(2)))
    assert 0 < int(match.group(3)) < 3 * TRAIN_BATCHES
    ckpt_dir = out / "checkpoints"
    assert not ckpt_dir.exists() or not any(ckpt_dir.iterdir()), list(ckpt_dir.iterdir())
    assert not (out / "metrics.json").exists()


@pytest.mark.slow
def test_nan_after_a_checkpoint_keeps_the_last_good_one(tmp_path, runner):
    out = tmp_path / "run"
    last, best = out / "checkpoints" / "last.ckpt", out / "checkpoints" / "best.ckpt"
    blow_up = BlowUpLearningRate(at_epoch=1, lr=1e30, ckpt=last)
    cfg = compose_train(["method=afd", "trainer.max_epochs=3", *SHORT], out)
    built: dict = {}
    with pytest.raises(NonFiniteLossError) as info:
        runner(cfg, blow_up, built=built)
    message = str(info.value)
    match = re.search(r"train/(loss_\w+) became (\S+) at epoch 1, global step (\d+)", message)
    assert match, message
    assert not math.isfinite(float(match.group(2)))
    step = int(match.group(3))
    assert 3 * TRAIN_BATCHES < step < 3 * TRAIN_BATCHES * 2  # within epoch 1
    assert built["trainer"].global_step == step  # the bad update was not applied

    # The epoch-0 checkpoints are untouched and still load.
    assert blow_up.ckpt_digest is not None and sha256(last) == blow_up.ckpt_digest
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]
    x = digits_test_images(32)
    for path in (last, best):
        assert load_checkpoint(path)["epoch"] == 0
        classifier = afd_lightning.load_classifier(path)
        with torch.no_grad():
            assert torch.isfinite(classifier(x)).all()
    assert not (out / "metrics.json").exists()
