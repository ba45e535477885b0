"""Long runs: bit-exact resume after a SIGKILL, a checkpoint on SIGTERM, batch-interval checkpoints,
checkpoints that cannot run code and fail clearly, AFD's discriminator-collapse warning, and the
cluster launcher config.

The kill/resume tests drive ``train.py`` in subprocesses (a real signal to a real process). A
test callback (``helpers.reliability.PauseAt``) writes a marker file at a chosen training batch and
waits there, so the signal lands at a known point inside the epoch.
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import afd_lightning
from afd_lightning import train as train_mod
from afd_lightning.callbacks import DiscriminatorHealth, PreemptionCheckpoint
from afd_lightning.config.paths import config_dir
from afd_lightning.store.checkpoint import CheckpointError, load_checkpoint

from helpers.compose import FAST, compose_train
from helpers.reliability import FailAt, Interrupted, finish, pause_at, start, wait_for

BATCHES, EPOCHS = 3, 3
# Three short epochs with the learning rates divided at epoch 2, so the schedulers matter too.
SMALL = [
    *FAST,
    f"+trainer.limit_train_batches={BATCHES}",
    f"trainer.max_epochs={EPOCHS}",
    "lr_milestones=[2]",
    "test_after_fit=false",
]
STEPS_PER_BATCH = {"afd": 3, "trades": 1}


def assert_same_training_state(expected: Path, got: Path) -> None:
    """Weights (E, Dc, Da, BatchNorm buffers), every optimizer's state, schedulers and counters: equal."""
    a, b = load_checkpoint(expected), load_checkpoint(got)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    differ = [k for k, v in a["state_dict"].items() if not torch.equal(v, b["state_dict"][k])]
    assert not differ, f"{len(differ)} tensors differ from the uninterrupted run, e.g. {differ[:4]}"
    assert len(a["optimizer_states"]) == len(b["optimizer_states"])
    for i, (oa, ob) in enumerate(zip(a["optimizer_states"], b["optimizer_states"])):
        assert oa["state"].keys() == ob["state"].keys(), i
        for idx, state in oa["state"].items():
            assert torch.equal(state["momentum_buffer"], ob["state"][idx]["momentum_buffer"]), (i, idx)
    assert a["lr_schedulers"] == b["lr_schedulers"]


def fit(cfg, *callbacks) -> None:
    """``trainer.fit`` of the run ``cfg`` describes, with extra callbacks (no test, no metrics.json)."""
    datamodule, method, trainer = train_mod.build(cfg)
    trainer.callbacks[:0] = list(callbacks)
    trainer.fit(method, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))


class References:
    """Uninterrupted runs, one per method, made in this process on first use and shared by the tests.

    In-process through ``train.run`` (what ``train.py`` calls): a train.py process would add only its start-up
    (imports: most of its CPU time); the interrupted and the resumed runs stay real train.py processes.
    """

    def __init__(self, root: Path):
        self.root, self.done = root, {}

    def last(self, method: str) -> Path:
        if method not in self.done:
            run_dir = self.root / method
            train_mod.run(compose_train([f"method={method}", *SMALL], run_dir, fast=False))
            self.done[method] = run_dir / "checkpoints" / "last.ckpt"
        return self.done[method]


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    return References(tmp_path_factory.mktemp("reference"))


# ------------------------------------------------------------------- 1. SIGKILL, then resume
@pytest.mark.slow
@pytest.mark.parametrize("method", ["afd", "trades"])
def test_sigkill_mid_epoch_then_resume_is_bit_exact(method, tmp_path, references):
    killed, marker = tmp_path / "killed", tmp_path / "paused"
    log = tmp_path / "killed.log"
    proc = start([f"method={method}", *SMALL, f"hydra.run.dir={killed}", *pause_at(1, 1, marker)], log)
    wait_for(marker, proc, log)
    os.kill(proc.pid, signal.SIGKILL)  # during the second epoch, one batch into it
    assert proc.wait(timeout=60) == -signal.SIGKILL
    last = killed / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(last)
    assert saved["epoch"] == 0 and saved["global_step"] == STEPS_PER_BATCH[method] * BATCHES

    resumed = tmp_path / "resumed"
    finish(
        start([f"method={method}", *SMALL, f"hydra.run.dir={resumed}", f"ckpt_path={last}"], tmp_path / "resumed.log"),
        tmp_path / "resumed.log",
    )
    final = resumed / "checkpoints" / "last.ckpt"
    assert load_checkpoint(final)["global_step"] == STEPS_PER_BATCH[method] * BATCHES * EPOCHS
    assert_same_training_state(references.last(method), final)


# ------------------------------------------------------------------ 2. SIGTERM (preemption)
@pytest.mark.slow
def test_sigterm_saves_a_complete_checkpoint_that_resumes_exactly(tmp_path, references):
    run_dir, marker, log = tmp_path / "preempted", tmp_path / "paused", tmp_path / "preempted.log"
    proc = start(["method=afd", *SMALL, f"hydra.run.dir={run_dir}", *pause_at(1, 1, marker)], log)
    wait_for(marker, proc, log)
    os.kill(proc.pid, signal.SIGTERM)
    finish(proc, log, expect_ok=False)  # Lightning ends the run after the current batch
    assert not (run_dir / "metrics.json").exists(), "a preempted run must not test or report"

    last = run_dir / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(last)  # complete: loads with the safe loader
    assert saved["epoch"] == 1 and saved["global_step"] == 3 * (BATCHES + 2)  # mid-epoch, after batch 2
    assert saved["callbacks"]["ExactResume"]["batches_done"] == 2
    assert len(saved["optimizer_states"]) == 3 and len(saved["lr_schedulers"]) == 3
    with torch.no_grad():
        assert torch.isfinite(afd_lightning.load_classifier(last)(torch.rand(4, 1, 8, 8))).all()

    resumed = tmp_path / "resumed"
    finish(
        start(["method=afd", *SMALL, f"hydra.run.dir={resumed}", f"ckpt_path={last}"], tmp_path / "resumed.log"),
        tmp_path / "resumed.log",
    )
    assert_same_training_state(references.last("afd"), resumed / "checkpoints" / "last.ckpt")


def test_sigusr1_is_routed_to_the_sigterm_stop(monkeypatch):
    """Without a SLURM auto-requeue handler, SIGUSR1 (pre-timeout) stops the run like SIGTERM."""
    seen: list[int] = []
    previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    previous_usr1 = signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    callback = PreemptionCheckpoint(dirpath="unused")
    try:
        callback.on_train_start(trainer=None, pl_module=None)
        os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == [signal.SIGTERM]
        callback.teardown(trainer=None, pl_module=None, stage="fit")
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGUSR1, previous_usr1)


# ---------------------------------------------------- 3. checkpoints every n training batches
@pytest.mark.slow
def test_every_n_batches_counts_batches_not_global_steps(tmp_path):
    out = tmp_path / "run"
    cfg = compose_train(
        [
            "method=afd",
            "+trainer.limit_train_batches=5",
            "trainer.max_epochs=2",
            "callbacks.preemption.every_n_batches=2",
            "test_after_fit=false",
        ],
        out,
    )
    with pytest.raises(Interrupted):
        fit(cfg, FailAt(epoch=0, batch=3))
    saved = load_checkpoint(out / "checkpoints" / "last.ckpt")
    # Written after batch 2 (batch_idx 1) of epoch 0: AFD took 3 optimizer steps per batch.
    assert saved["epoch"] == 0 and saved["global_step"] == 3 * 2
    assert saved["callbacks"]["ExactResume"]["batches_done"] == 2


@pytest.mark.slow
def test_mid_epoch_checkpoint_resumes_exactly_in_process(tmp_path):
    common = [
        "method=afd",
        f"+trainer.limit_train_batches={BATCHES + 1}",
        "trainer.max_epochs=2",
        "callbacks.preemption.every_n_batches=2",
        "test_after_fit=false",
    ]
    straight = tmp_path / "straight"
    fit(compose_train(common, straight))
    crashed = tmp_path / "crashed"
    with pytest.raises(Interrupted):
        fit(compose_train(common, crashed), FailAt(epoch=1, batch=3))
    last = crashed / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["callbacks"]["ExactResume"]["batches_done"] == 2
    resumed = tmp_path / "resumed"
    fit(compose_train([*common, f"ckpt_path={last}"], resumed))
    assert_same_training_state(straight / "checkpoints" / "last.ckpt", resumed / "checkpoints" / "last.ckpt")


# --------------------------------------------------------------------- 4. safe checkpoints
def _run_config(overrides=()) -> dict:
    cfg = compose_train(list(overrides), Path("unused"))
    return OmegaConf.to_container(cfg, resolve=True)


def write_checkpoint(path: Path, config: dict, state_from: dict | None = None) -> Path:
    """A checkpoint as train.py writes it (weights under ``model.``, the run config under ``afd_lightning``)."""
    model_cfg = {k: v for k, v in config["model"].items() if k not in ("channels_last", "compile")}
    model = instantiate(state_from or model_cfg)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save(
        {"epoch": 0, "global_step": 0, "state_dict": state, "afd_lightning": {"config": config, "method": "AFD"}}, path
    )
    return path


@pytest.fixture(scope="module")
def digits_config() -> dict:
    return _run_config()


@pytest.fixture
def good_checkpoint(tmp_path, digits_config) -> Path:
    return write_checkpoint(tmp_path / "good.ckpt", digits_config)


class CreatesFile:
    """Unpickling this calls ``open(target, "w")``: code from the file, which a safe loader must refuse."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.slow
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, good_checkpoint):
    target = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    checkpoint = torch.load(good_checkpoint, weights_only=True)
    checkpoint["payload"] = CreatesFile(target)
    torch.save(checkpoint, evil)

    with pytest.raises(CheckpointError, match="not loaded") as info:
        load_checkpoint(evil)
    assert str(evil) in str(info.value) and "run code" in str(info.value)
    with pytest.raises(CheckpointError, match="not loaded"):
        afd_lightning.load_classifier(evil)
    with pytest.raises(CheckpointError, match="not loaded"):  # resuming checks the file first too
        train_mod.run(compose_train([f"ckpt_path={evil}"], tmp_path / "run"))
    assert not target.exists(), "unpickling ran code from the checkpoint"

    # Control: the payload is real, an unsafe load does create the file.
    torch.load(evil, weights_only=False)
    assert target.exists()


def test_truncated_checkpoint_names_the_file(tmp_path, good_checkpoint):
    data = good_checkpoint.read_bytes()
    for name, cut in (("half", len(data) // 2), ("header", 100), ("empty", 0)):
        broken = tmp_path / f"{name}.ckpt"
        broken.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
            afd_lightning.load_classifier(broken)
        assert str(broken) in str(info.value)


def test_corrupt_bytes_name_the_file(tmp_path, good_checkpoint):
    data = bytearray(good_checkpoint.read_bytes())
    garbage = bytes(range(256)) * 4
    for name, where in (("start", 0), ("end", len(data) - len(garbage))):  # zip header / zip directory
        corrupt = bytearray(data)
        corrupt[where : where + len(garbage)] = garbage
        path = tmp_path / f"{name}.ckpt"
        path.write_bytes(bytes(corrupt))
        with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)


def test_weights_of_another_architecture_are_refused_clearly(tmp_path, digits_config):
    lenet = _run_config(["model=lenet"])["model"]
    lenet = {k: v for k, v in lenet.items() if k not in ("channels_last", "compile")}
    path = write_checkpoint(tmp_path / "swapped.ckpt", digits_config, state_from=lenet)
    with pytest.raises(CheckpointError) as info:
        afd_lightning.load_classifier(path)
    message = str(info.value)
    assert str(path) in message and "does not match the network" in message
    assert "missing" in message and "unexpected" in message


def test_checkpoint_from_another_dataset_or_model_is_refused_when_expected(tmp_path, good_checkpoint):
    model = afd_lightning.load_classifier(good_checkpoint, expect_dataset="digits", expect_model="resnet5")
    assert not model.training
    with pytest.raises(CheckpointError, match=r"trained on dataset 'digits', not 'cifar10'") as info:
        afd_lightning.load_classifier(good_checkpoint, expect_dataset="cifar10")
    assert str(good_checkpoint) in str(info.value)
    with pytest.raises(CheckpointError, match="not resnet18"):
        afd_lightning.load_classifier(good_checkpoint, expect_model="resnet18")
    other = compose_train(["model=resnet5"], Path("unused")).model  # stem_stride 2, not 1
    with pytest.raises(CheckpointError, match=r"stem_stride: checkpoint 1, expected 2"):
        afd_lightning.load_classifier(good_checkpoint, expect_model=other)


def test_files_that_are_not_our_checkpoints(tmp_path, digits_config):
    plain = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint") as info:
        afd_lightning.load_classifier(plain)
    assert str(plain) in str(info.value)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(3)}, "epoch": 3}, foreign)
    with pytest.raises(CheckpointError, match="not written by afd-lightning") as info:
        afd_lightning.load_classifier(foreign)
    assert str(foreign) in str(info.value)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint at all\n")
    with pytest.raises(CheckpointError, match=str(text)):
        afd_lightning.load_classifier(text)


# ------------------------------------------------------------------ 5. AFD's game health
def feed(monitor: DiscriminatorHealth, series: list[tuple[float, float]]) -> list[bool]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flags = [
            monitor.update({"train/disc_acc_clean": c, "train/disc_acc_adv": a, "train/loss_disc": 1.386}, e)
            for e, (c, a) in enumerate(series)
        ]
    monitor.caught = [str(w.message) for w in caught if "discriminator collapsed" in str(w.message)]
    return flags


def test_collapse_at_chance_warns_after_patience_epochs():
    monitor = DiscriminatorHealth(patience=3, chance_margin=0.05, warmup_epochs=0)
    flags = feed(monitor, [(0.8, 0.7), (0.52, 0.5), (0.5, 0.49), (1.0, 0.0), (0.51, 0.5), (0.5, 0.5)])
    assert flags == [False, False, False, True, True, True]  # (1.0, 0.0): says "clean" for everything
    assert len(monitor.caught) == 1, monitor.caught  # one warning per episode
    assert "at chance" in monitor.caught[0] and "epoch 3" in monitor.caught[0] and "loss_disc" in monitor.caught[0]


def test_collapse_at_perfect_accuracy_and_recovery():
    monitor = DiscriminatorHealth(patience=2, perfect_above=0.99, warmup_epochs=0)
    flags = feed(monitor, [(1.0, 0.995), (1.0, 1.0), (0.9, 0.7), (1.0, 1.0), (0.999, 1.0)])
    assert flags == [False, True, False, False, True]
    assert len(monitor.caught) == 2 and all("at 100%" in m for m in monitor.caught)


def test_warmup_epochs_do_not_count():
    # The start of a healthy game (digits, 3 batches an epoch): Da at chance for five epochs, then separating.
    start = [(0.887, 0.113), (0.867, 0.133), (0.8, 0.14), (0.707, 0.287), (0.633, 0.453), (0.593, 0.653), (0.67, 0.73)]
    monitor = DiscriminatorHealth(patience=2, warmup_epochs=5)
    assert feed(monitor, start) == [False] * len(start) and not monitor.caught
    assert feed(DiscriminatorHealth(patience=2, warmup_epochs=0), start)[1] is True


def test_healthy_or_non_afd_metrics_never_warn():
    monitor = DiscriminatorHealth(patience=1, warmup_epochs=0)
    assert feed(monitor, [(0.9, 0.8), (0.7, 0.75), (0.95, 0.6)]) == [False] * 3
    assert monitor.update({"train/loss": 0.3}, 0) is False and not monitor.caught


@pytest.mark.slow
def test_real_run_with_frozen_discriminator_warns_and_logs_the_flag(tmp_path, runner):
    # Da's learning rate 0: it keeps its random start and cannot tell clean from perturbed embeddings.
    out = tmp_path / "run"
    cfg = compose_train(
        [
            "method=afd",
            "method.optimizer_disc.lr=0",
            "method.optimizer_disc.momentum=0",
            "method.optimizer_disc.weight_decay=0",
            "+trainer.limit_train_batches=3",
            "trainer.max_epochs=2",
            "callbacks.disc_health.patience=2",
            "callbacks.disc_health.chance_margin=0.1",
            "callbacks.disc_health.warmup_epochs=0",
            "test_after_fit=false",
        ],
        out,
    )
    with pytest.warns(UserWarning, match="AFD discriminator collapsed at epoch 1.*at chance"):
        _, built = runner(cfg)
    monitor = next(c for c in built["trainer"].callbacks if isinstance(c, DiscriminatorHealth))
    assert monitor.streak == 2 and monitor.state == "chance"
    import csv

    with open(out / "csv" / "metrics.csv") as f:
        flags = [float(r["train/disc_collapsed"]) for r in csv.DictReader(f) if r.get("train/disc_collapsed")]
    assert flags == [0.0, 1.0]


# ---------------------------------------------------------------------- 6. cluster configs
def test_submitit_launcher_configs_load_and_compose():
    launchers = config_dir("train") / "hydra" / "launcher"
    slurm = OmegaConf.load(launchers / "submitit_slurm.yaml")
    assert slurm._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert slurm.signal_delay_s > 0 and slurm.tasks_per_node == 1
    local = OmegaConf.load(launchers / "submitit_local.yaml")
    assert local._target_.endswith("submitit_launcher.LocalLauncher")

    from hydra import compose, initialize_config_dir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # schema-matching notice when the plugin is installed
        with initialize_config_dir(config_dir=str(config_dir("train")), version_base="1.3"):
            cfg = compose(
                config_name="train",
                return_hydra_config=True,
                overrides=["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu"],
            )
    assert cfg.hydra.launcher.partition == "gpu"
    assert cfg.hydra.launcher._target_ == slurm._target_
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "submitit_slurm"
